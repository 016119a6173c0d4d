"""`journey emit`, `journey tail`, `journey dlq list|replay`: events in and out of Kafka."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path
from typing import TextIO

import typer

from infra.base.config import Settings
from infra.base.errors import JourneyError
from infra.base.kafka import require_broker
from infra.cli import table as cli_table

dlq_app = typer.Typer(help="Dead letters: what could not be read, and why.", no_args_is_help=True)


def check_readable_file(file: Path) -> None:
    """A clear one-line error for a --file that is missing, a directory, or unreadable."""
    hint = "pass a JSON-lines file (one event per line) or pipe events on stdin"
    if file.is_dir():
        raise JourneyError(f"--file {file}: is a directory, not a file; {hint}")
    if not file.exists():
        raise JourneyError(f"--file {file}: no such file; {hint}")
    if not file.is_file():
        raise JourneyError(f"--file {file}: not a regular file; {hint}")
    if not os.access(file, os.R_OK):
        raise JourneyError(f"--file {file}: permission denied (cannot read it)")


def emit(
    file: Path | None = typer.Option(None, "--file", "-f", help="JSON-lines file (default: stdin)."),
    as_json: bool = typer.Option(False, "--json", help='Summary as {"accepted": N, "rejected": M}.'),
) -> None:
    """Validate JSON-lines touchpoints and produce the valid ones; rejects go to stderr."""
    from streams.emit_lines import emit_stream

    if file is not None:
        check_readable_file(file)
    settings = Settings.from_env()
    require_broker(settings)
    # surrogateescape: a line that is not UTF-8 is refused with a reason (and dead-lettered byte
    # for byte) instead of stopping the whole run with a decode error
    stream: TextIO = (open(file, encoding="utf-8", errors="surrogateescape") if file is not None  # noqa: SIM115
                      else io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="surrogateescape"))
    try:
        summary = emit_stream(settings, stream, on_reject=lambda n, r: typer.echo(f"line {n}: {r}", err=True))
    finally:
        if file is not None:
            stream.close()
    if as_json:
        typer.echo(json.dumps({"accepted": summary.accepted, "rejected": summary.rejected}))
    else:
        dead = f" (in {settings.topics.dlq} with their reasons)" if summary.rejected else ""
        typer.echo(f"accepted {summary.accepted}, rejected {summary.rejected}{dead}")
    if summary.rejected:
        raise typer.Exit(1)


def tail(
    topic: str = typer.Argument(..., help="touchpoints, incidents, alerts or touchpoints.dlq (configured names)."),
    from_beginning: bool = typer.Option(False, "--from-beginning", help="Start at the oldest record."),
    limit: int | None = typer.Option(None, "--limit", "-n", min=1, help="Stop after N records."),
    idle_timeout: float | None = typer.Option(None, "--idle-timeout", help="Stop after S seconds without records."),
) -> None:
    """Print decoded records of a topic as JSON lines (follows until Ctrl-C unless limited)."""
    from streams.topic_reader import follow

    settings = Settings.from_env()
    require_broker(settings)
    for line in follow(settings, topic, from_beginning=from_beginning, limit=limit, idle_timeout_s=idle_timeout):
        typer.echo(line)


@dlq_app.command("list")
def dlq_list(
    limit: int | None = typer.Option(None, "--limit", "-n", min=1, help="Show at most N dead letters."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines instead of a table."),
) -> None:
    """Show what is in the dead-letter topic and why."""
    from rich.console import Console

    from streams.dead_letters import read_dead_letters

    settings = Settings.from_env()
    require_broker(settings)
    letters = read_dead_letters(settings, limit=limit)
    if as_json:
        for letter in letters:
            typer.echo(json.dumps(letter.as_json()))
        return
    table = cli_table("offset", "reason", "from", "bytes", "preview")
    for letter in letters:
        table.add_row(str(letter.offset), letter.reason, letter.origin, str(len(letter.value)), letter.preview())
    Console().print(table)
    typer.echo(f"{len(letters)} dead letters in {settings.topics.dlq}")


@dlq_app.command("replay")
def dlq_replay(
    all_: bool = typer.Option(False, "--all", help="Re-send even those that still fail to decode."),
) -> None:
    """Re-send dead letters to the touchpoint topic after a fix (each one at most once)."""
    from streams.dead_letters import replay_dead_letters

    settings = Settings.from_env()
    require_broker(settings)
    result = replay_dead_letters(settings, include_still_bad=all_)
    typer.echo(f"replayed {result.replayed}, still bad {result.still_bad} (kept in {settings.topics.dlq})")


def register(app: typer.Typer) -> None:
    app.command()(emit)
    app.command()(tail)
    app.add_typer(dlq_app, name="dlq")
