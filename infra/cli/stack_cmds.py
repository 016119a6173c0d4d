"""`journey up`, `down`, `status`, `smoke`: the local stack's lifecycle."""

from __future__ import annotations

import json
import signal
import time

import typer
from rich.console import Console
from rich.table import Table

from infra.base.config import Settings
from infra.base.errors import JourneyError
from infra.cli import table as cli_table
from infra.local import stack

console = Console(stderr=False)


def up(
    detach: bool = typer.Option(False, "-d", "--detach", help="Return once every component is ready."),
) -> None:
    """Start the local stack (broker, ClickHouse endpoint, tracker services)."""
    settings = Settings.from_env()
    components = stack.plan(settings)
    stack.start(settings, components, echo=typer.echo)
    if detach:
        typer.echo(f"stack is up (state in {settings.home.resolve()}); stop it with `journey down`")
        return
    typer.echo("stack is up; press Ctrl-C to stop")
    _supervise(settings)


def _supervise(settings: Settings) -> None:
    """Foreground mode: wait for Ctrl-C/SIGTERM or a component dying, then stop everything."""
    stopping = False

    def _on_term(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _on_term)
    try:
        while not stopping:
            dead = stack.dead_children(settings)
            if dead:
                stack.stop(settings)
                raise JourneyError(
                    f"{', '.join(dead)} stopped unexpectedly; see {settings.home.resolve() / 'logs'}"
                )
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    stopped = stack.stop(settings)
    typer.echo(f"stopped: {', '.join(stopped) or 'nothing was running'}")


def down() -> None:
    """Stop a detached stack; nothing is left running."""
    settings = Settings.from_env()
    stopped = stack.stop(settings)
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "no stack was running")


def status(as_json: bool = typer.Option(False, "--json", help="One JSON object.")) -> None:
    """Each component's address and whether it answers. Exit 1 when one is down."""
    from infra.base.heartbeat import read_heartbeat
    from infra.local.restore import read_restart

    settings = Settings.from_env()
    components = stack.status(settings)
    pipeline = (read_heartbeat(settings, "notifier") or {}).get("health") or None
    restart = read_restart(settings) if any(comp["pid"] for comp in components) else None
    if as_json:
        typer.echo(json.dumps({"components": components, "pipeline": pipeline, "restart": restart}))
    else:
        table = cli_table("component", "address", "ok", "pid")
        for comp in components:
            ok = "[green]yes[/]" if comp["ok"] else "[red]no[/]"
            table.add_row(str(comp["name"]), str(comp["address"]), ok, str(comp["pid"] or "-"))
        console.print(table)
        if restart:
            console.print(_restart_line(restart))
        if pipeline:
            console.print(_pipeline_table(pipeline))
    problems = [p for p in (pipeline or {}).get("problems", {}).values() if p]
    if not all(comp["ok"] for comp in components) or problems:
        raise typer.Exit(1)


def _restart_line(restart: dict[str, object]) -> str:
    """When this stack started, after what, and what it put back into the embedded broker."""
    from infra.local.restore import describe

    at = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(int(restart["started_at"]) / 1000))  # type: ignore[call-overload]
    after = {"crash": "after a crash (stale pid files found)", "journey down": "after `journey down`"}.get(
        str(restart["after"]), str(restart["after"]))
    line = f"started {at} ({after})"
    restored = restart.get("restored")
    if isinstance(restored, dict):
        line += f"; restored from ClickHouse in {restart.get('took_s')} s: {describe(restored)}"
    elif not restart.get("reseeded"):
        line += "; external Kafka: nothing to restore"
    return line


def _pipeline_table(pipeline: dict[str, object]) -> Table:
    """The self-monitoring figures the notifier last measured."""
    table = cli_table("pipeline", "figure", title="pipeline health (measured by the notifier)")
    for label, key in (("worker consumer lag", "worker_lag"), ("sink lag", "sink_lag")):
        lag = pipeline.get(key)
        table.add_row(label, "no offsets committed yet" if lag is None else f"{lag} messages")
    table.add_row("dead letters / min", str(pipeline.get("dead_letters_per_min", "?")))
    for name, worker in (pipeline.get("workers") or {}).items():  # type: ignore[union-attr]
        lags = ", ".join(f"p{p}: {lag:.0f} s" for p, lag in sorted(worker["watermark_lag_s"].items()))
        table.add_row(f"{name} watermark lag", lags or "no partition has events yet")
        table.add_row(f"{name} pending deadlines", str(worker["pending_deadlines"]))
        late = ", ".join(f"p{p}: {n}" for p, n in sorted((worker.get("late_events") or {}).items()))
        table.add_row(f"{name} events later than the allowed lateness", late or "none")
        table.add_row(f"{name} incidents withdrawn", str(worker.get("withdrawn", 0)))
    busy = pipeline.get("busy") or {}
    for name, problem in (pipeline.get("problems") or {}).items():  # type: ignore[union-attr]
        state = f"[red]{problem}[/]" if problem else f"[yellow]{busy[name]}[/]" if name in busy else "[green]ok[/]"
        table.add_row(f"{name} status", state)
    return table


def smoke() -> None:
    """Bring the stack up, prove a Kafka round trip and a ClickHouse query, bring it down."""
    from infra.local.smoke import run_smoke

    run_smoke(Settings.from_env(), echo=typer.echo)


def register(app: typer.Typer) -> None:
    app.command()(up)
    app.command()(down)
    app.command()(status)
    app.command()(smoke)
