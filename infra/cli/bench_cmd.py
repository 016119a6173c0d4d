"""`journey bench [--quick] [--json]`: every benchmark scenario, each next to its same-run baseline.

Each scenario is a script under `tests/bench/` that starts its own stack on free ports and
prints one JSON object; this command runs them one after another (never in parallel: they
would measure each other) and reports value, baseline, ratio and the target for this machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from infra.base.errors import JourneyError
from infra.cli import table as cli_table

REPO = Path(__file__).resolve().parents[2]

# scenario -> (module, full-run arguments, quick-run arguments)
SCENARIOS: dict[str, tuple[str, list[str], list[str]]] = {
    "emit": ("tests.bench.emit_bench", ["--events", "200000"], ["--events", "50000"]),
    "detect": ("tests.bench.detect_bench", ["--events", "200000", "--workers", "2"],
               ["--events", "50000", "--workers", "2"]),
    "alerts": ("tests.bench.alert_bench", ["--load", "5000", "--probes", "100"], ["--load", "5000", "--probes", "30"]),
    # the sink's drain rate needs several of its 50k-row batches
    "sink": ("tests.bench.sink_bench", ["--rows", "500000", "--incidents", "200"], ["--rows", "200000",
                                                                                    "--incidents", "50"]),
    "replay": ("tests.bench.detect_bench", ["--events", "1000000", "--workers", "2", "--figure",
                                            "replay_events_per_s"],
               ["--events", "100000", "--workers", "2", "--figure", "replay_events_per_s"]),
    # a month of history through `journey emit --file` to the last incident change in ClickHouse (issue 17)
    "backfill": ("tests.bench.backfill_bench", ["--events", "250000", "--workers", "2"],
                 ["--events", "50000", "--workers", "2"]),
    "memory": ("tests.bench.memory_bench", ["--journeys", "1000000"], ["--journeys", "100000"]),
    # a 10 s dashboard query beside the sink's drain and SELECT 1 (issue 20)
    "bi": ("tests.bench.bi_bench", ["--rows", "500000", "--bi-seconds", "10"],
           ["--rows", "200000", "--bi-seconds", "10"]),
    "collector": ("tests.bench.collector_bench", ["--batches", "1000", "--seconds", "20"],
                  ["--batches", "300", "--seconds", "10"]),
    # signed webhook deliveries through the collector, and `journey import` of a generated export
    "platforms": ("tests.bench.platform_bench", ["--deliveries", "10000", "--orders", "50000"],
                  ["--deliveries", "3000", "--orders", "10000"]),
}

# A scenario that hangs must not take the others' figures with it.
SCENARIO_TIMEOUT_S = {True: 900, False: 3600}

# figure -> (target, True when higher is better)
TARGETS: dict[str, tuple[float, bool]] = {
    "emit_events_per_s": (30_000, True), "detect_events_per_s": (25_000, True),
    "alert_latency_ms_p50": (float("inf"), False), "alert_latency_ms_p99": (200, False),
    "deadline_fire_ms_p99": (1000, False), "clickhouse_visible_ms_p50": (float("inf"), False),
    "clickhouse_visible_ms_p99": (2000, False), "sink_rows_per_s": (100_000, True),
    "replay_events_per_s": (25_000, True), "bytes_per_open_journey": (1024, False),
    "bi_select1_ms_p99": (100, False),
}


def _figures(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A scenario's JSON -> {figure: {value, baseline, ratio}} (alert latencies come as quantiles)."""
    if "alert_latency_ms" in raw:
        topic, base = raw["alert_latency_ms"], raw["alert_latency_ms"]["baseline_kafka_round_trip"]
        deadline = raw["deadline_fire_ms"]

        def fig(value: float | None, baseline: float | None) -> dict[str, Any]:
            ratio = round(value / baseline, 2) if value is not None and baseline else None
            return {"value": value, "baseline": baseline, "ratio": ratio,
                    "note": f"background {raw['background_events_per_s']} events/s; baseline: bare Kafka round trip"}
        return {"alert_latency_ms_p50": fig(topic["p50"], base["p50"]),
                "alert_latency_ms_p99": fig(topic["p99"], base["p99"]),
                "alert_webhook_latency_ms_p99": fig(raw["alert_webhook_latency_ms"]["p99"], base["p99"]),
                "deadline_fire_ms_p99": fig(deadline["p99"], base["p99"])}
    return {k: v for k, v in raw.items() if isinstance(v, dict) and "value" in v}


def run_scenario(name: str, quick: bool) -> dict[str, dict[str, Any]]:
    """Run one scenario script; JourneyError (with its last line of stderr) if it fails or hangs."""
    module, full, short = SCENARIOS[name]
    timeout = SCENARIO_TIMEOUT_S[quick]
    try:
        done = subprocess.run([sys.executable, "-m", module, *(short if quick else full)], cwd=REPO,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise JourneyError(f"benchmark {name} did not finish within {timeout} s ({module})") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise JourneyError(f"benchmark {name} failed ({module}): {last}")
    return _figures(json.loads(done.stdout.strip().splitlines()[-1]))


def bench(
    quick: bool = typer.Option(False, "--quick", help="Smaller runs (a few minutes in all)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object: figure -> value, baseline, ratio."),
    only: list[str] = typer.Option([], "--only", help=f"Run only these scenarios ({', '.join(SCENARIOS)})."),
) -> None:
    """Measure throughput, alert latency, ClickHouse visibility, replay and memory on this machine."""
    if not (REPO / "tests" / "bench").is_dir():
        raise JourneyError(f"benchmarks live in {REPO / 'tests' / 'bench'}: run from a clone of the repository")
    unknown = sorted(set(only) - set(SCENARIOS))
    if unknown:
        raise JourneyError(f"--only {', '.join(unknown)}: choose from {', '.join(SCENARIOS)}")
    console = Console(stderr=True, quiet=as_json)
    figures: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    for name in only or list(SCENARIOS):
        with console.status(f"benchmark {name}..."):
            try:
                figures.update(run_scenario(name, quick))
            except JourneyError as exc:  # report it with the others' figures, then exit 1
                failed[name] = str(exc)
        console.print(f"{name}: {'FAILED' if name in failed else 'done'}")
    for figure, data in figures.items():
        if figure == "failed_scenarios":
            continue
        target, higher = TARGETS.get(figure, (None, True))
        if target is not None and target != float("inf") and data["value"] is not None:
            data["target"] = target
            data["meets_target"] = data["value"] >= target if higher else data["value"] <= target
    if failed:
        figures["failed_scenarios"] = failed  # type: ignore[assignment]
    if as_json:
        typer.echo(json.dumps(figures))
        _exit_if_failed(failed)
        return
    title = "journey bench" + (" --quick" if quick else "")
    table = cli_table("figure", "value", "baseline", "ratio", "target", title=title)
    for figure, data in figures.items():
        if figure == "failed_scenarios":
            continue
        met = data.get("meets_target")
        mark = "" if met is None else ("[green]met[/]" if met else "[red]not met[/]")
        table.add_row(figure, str(data["value"]), str(data["baseline"]), str(data["ratio"]),
                      f"{data.get('target', '')} {mark}")
    Console().print(table)
    _exit_if_failed(failed)


def _exit_if_failed(failed: dict[str, str]) -> None:
    for reason in failed.values():
        typer.echo(f"journey: error: {reason}", err=True)
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(bench)
