"""`journey demo`: the main job — a simulated day through the real stack, checked against truth."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console

from consumers import human
from infra.base.config import Settings
from infra.cli import table as cli_table


def demo(
    duration: float = typer.Option(60.0, "--duration", min=5, help="Wall-clock seconds to send traffic."),
    rate: float = typer.Option(150.0, "--rate", min=1, help="Touchpoints per second (average)."),
    speed: float = typer.Option(
        720.0, "--speed", min=1, help="Simulated seconds per real second (720: a 12-hour day in a minute)."
    ),
    seed: int = typer.Option(7, "--seed", help="Seed of the simulator (same seed, same day)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object at the end, no live view."),
) -> None:
    """Simulate stores and a web shop, detect failures live, report, and check against ground truth."""
    from infra.local import stack
    from streams.demo import clock_tolerance_s, run_demo, to_json

    console = Console(stderr=True, quiet=as_json)
    status = console.status("starting")
    status.start()

    def progress(kind: str, data: dict[str, Any]) -> None:
        if kind == "stack":
            console.print(data["line"])
        elif kind == "start":
            console.print(f"simulating {data['journeys']} journeys ({data['events']} touchpoints, "
                          f"{data['span_s'] / 3600:.1f} h of business) at {speed:g}x")
        elif kind == "sent":
            status.update(f"events sent {data['sent']}, incidents detected {data['incidents']}, "
                          f"alerts fired {data['alerts']}")
        elif kind == "wait":
            status.update(f"waiting for the last deadlines: {data['incidents']} incidents "
                          f"({data['expected']} failures injected), alerts fired {data['alerts']}")
        elif kind == "stopped":
            console.print(f"stopped: {', '.join(data['stopped'])}")

    settings = Settings.from_env()
    started_here = not stack.running(settings)
    try:
        if started_here:
            components = stack.plan(settings)
            for component in components:  # (frozen dataclasses; their env is a dict, read at spawn)
                component.env["JOURNEY_CLOCK_TOLERANCE_S"] = str(clock_tolerance_s(settings))
            # Not re-seeded: an earlier day's touchpoints (an earlier demo's closing visits are
            # 2 h ahead) would put the clock past this day, which would then arrive late.
            stack.start(settings, components, echo=lambda line: progress("stack", {"line": line}), reseed=False)
        try:
            result = run_demo(settings, duration, rate, speed, seed, progress)
        finally:
            if started_here:
                progress("stopped", {"stopped": stack.stop(settings)})
    finally:
        status.stop()
    if as_json:
        typer.echo(to_json(result))
    else:
        _print(result)
    if not result["ok"]:
        raise typer.Exit(1)


def _print(result: dict[str, Any]) -> None:
    out = Console()
    if not out.is_terminal:
        out = Console(width=140)  # logs and pipes: no terminal width to fit, keep the table readable
    table = cli_table("rule", "dimension", "incidents", "resolved", "compensated", "SLA breached",
                  "to acknowledge (median / 90%)", "to first response", "to resolve", title="Recovery report")
    for rule, row in result["by_rule"].items():
        def pq(name: str, row: dict[str, Any] = row) -> str:
            return f"{human.duration(row[name]['p50'])} / {human.duration(row[name]['p90'])}"
        table.add_row(rule, row["servqual"], str(row["incidents"]), str(row["resolved"]), str(row["compensated"]),
                      str(row["sla_breached"]), pq("time_to_acknowledge_s"), pq("time_to_first_response_s"),
                      pq("time_to_resolve_s"))
    out.print(table)
    ok = result["ok"]
    verdict = "[green]all injected failures detected, no false alarms, metrics match[/]" if ok else "[red]MISMATCH[/]"
    out.print(f"events {result['events']}, injected {result['injected_failures']}, detected {result['detected']}, "
              f"missed {result['missed']}, false alarms {result['false_alarms']}, "
              f"metric mismatches {result['metric_mismatches']}, counted twice {result['duplicate_incidents']}: "
              f"{verdict}")
    alerts = result["alerts"]
    out.print(f"alerts: {alerts.get('triggered', 0)} incidents paged, {alerts.get('escalated', 0)} escalations, "
              f"{alerts.get('acknowledged', 0)} acknowledged, {alerts.get('resolved', 0)} resolved; "
              f"{alerts.get('suppressed', 0)} recorded without paging (failed over an hour before the simulator "
              "sent them: the demo compresses the day)")
    truth = result["truth_metrics"]
    out.print("ground truth (median / 90%): " + ", ".join(
        f"{name.removeprefix('time_to_').removesuffix('_s').replace('_', ' ')} {human.duration(q['p50'])} / "
        f"{human.duration(q['p90'])}" for name, q in truth.items()))


def register(app: typer.Typer) -> None:
    app.command()(demo)
