"""`journey import FILE.csv --mapping MAPPING.toml`: a shop's history, in event-time order, never paged."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from infra.base.config import Settings
from infra.base.kafka import require_broker

MAX_REFUSALS_SHOWN = 20


def import_(
    file: Path = typer.Argument(..., help="The CSV export (a header row, then one row per order, line or review)."),
    mapping: Path = typer.Option(..., "--mapping", "-m",
                                 help="TOML column mapping (infra/examples/orders_reviews.toml)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Read and check the file, produce nothing."),
    as_json: bool = typer.Option(False, "--json", help="The summary as one JSON object."),
    force: bool = typer.Option(False, "--force", help="Import even behind the topic's live event time "
                               "(its deadlines then fire before their fulfilments: false breaches)."),
) -> None:
    """Import history: map columns to touchpoints, sort them by event time, produce them (recorded, never paged)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from streams.emitter import fewer_gc_passes
    from streams.history_import import load_mapping, read_export
    from streams.import_producer import produce_history

    settings = Settings.from_env()
    spec = load_mapping(mapping)
    console = Console(stderr=True, quiet=as_json)
    started = time.monotonic()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as progress:
        reading = progress.add_task(f"reading {file.name}", total=None)
        with fewer_gc_passes():  # hundreds of thousands of event dicts: default GC passes cost ~10%
            plan = read_export(file, spec, on_row=lambda n: progress.update(reading, completed=n) if n % 1000 == 0
                               else None)
        progress.update(reading, completed=plan.rows, total=plan.rows)
        if not dry_run and plan.events:
            require_broker(settings)
            if not force:
                _refuse_behind_live_traffic(settings, plan.events[0]["occurred_at"])
            sending = progress.add_task("producing in event-time order", total=len(plan.events))
            produce_history(settings, plan.events, lambda n: progress.advance(sending, n))
    seconds = time.monotonic() - started
    summary = {
        "rows": plan.rows, "events": len(plan.events), "journeys": plan.journeys,
        "duplicate_events": plan.duplicates, "refused_rows": len(plan.refused),
        "refused": [{"line": line, "reason": reason} for line, reason in plan.refused],
        "first_event": plan.events[0]["occurred_at"] if plan.events else None,
        "last_event": plan.events[-1]["occurred_at"] if plan.events else None,
        "produced": 0 if dry_run else len(plan.events), "seconds": round(seconds, 2),
    }
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        _print_summary(summary, settings, dry_run)
    if plan.refused:
        raise typer.Exit(1)


def _refuse_behind_live_traffic(settings: Settings, first_event_ms: int) -> None:
    from infra.base.errors import JourneyError
    from streams.domain.config import load_detection_config
    from streams.import_guard import import_conflict, newest_event_times

    lateness_ms = int(load_detection_config(settings.rules_file).allowed_lateness_s * 1000)
    conflict = import_conflict(newest_event_times(settings), first_event_ms, lateness_ms)
    if conflict is not None:
        raise JourneyError(f"nothing imported: {conflict}")


def _print_summary(summary: dict[str, object], settings: Settings, dry_run: bool) -> None:
    from schemas.contract import iso_from_ms

    refused = summary["refused"]
    assert isinstance(refused, list)
    for item in refused[:MAX_REFUSALS_SHOWN]:
        typer.echo(f"line {item['line']}: {item['reason']}", err=True)
    if len(refused) > MAX_REFUSALS_SHOWN:
        typer.echo(f"... and {len(refused) - MAX_REFUSALS_SHOWN} more refused rows (--json lists them all)", err=True)
    span = ""
    if summary["first_event"] is not None:
        span = f", {iso_from_ms(summary['first_event'])} .. {iso_from_ms(summary['last_event'])}"  # type: ignore[arg-type]
    verb = "would produce" if dry_run else f"produced to {settings.topics.touchpoints}"
    typer.echo(f"{summary['rows']} rows: {verb} {summary['events']} events in {summary['journeys']} journeys"
               f"{span} ({summary['duplicate_events']} repeated events merged); {summary['refused_rows']} rows "
               f"refused; {summary['seconds']} s. Incidents from history are recorded, never paged.")


def register(app: typer.Typer) -> None:
    app.command("import")(import_)
