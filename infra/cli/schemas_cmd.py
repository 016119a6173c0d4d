"""`journey schemas check`: is a changed schema backward/forward compatible with the last one?"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from fastavro import parse_schema
from fastavro.schema import SchemaParseException

from infra.base.errors import JourneyError
from schemas.compat import CompatResult, check_compatibility
from schemas.registry import get_registry, strip_logical_types

schemas_app = typer.Typer(help="Avro schemas of the touchpoint, incident and alert topics.", no_args_is_help=True)


def _load_candidate(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise JourneyError(f"{path}: no such schema file", exit_code=2)
    try:
        schema = json.loads(path.read_text())
    except ValueError as exc:
        raise JourneyError(f"{path}: not JSON ({exc})", exit_code=2) from None
    try:
        parse_schema(strip_logical_types(schema))
    except (SchemaParseException, KeyError, TypeError, ValueError) as exc:
        raise JourneyError(f"{path}: not a valid Avro schema ({exc})", exit_code=2) from None
    return schema  # type: ignore[no-any-return]


def _subject_for(schema: dict[str, Any], subject: str | None) -> str:
    registry = get_registry()
    if subject:
        registry.versions(subject)  # validates the name
        return subject
    name = str(schema.get("name", "")).lower()
    if name in registry.subjects():
        return name
    raise JourneyError(
        f"cannot tell the subject of record {schema.get('name')!r}: pass --subject "
        f"({', '.join(registry.subjects())})", exit_code=2,
    )


@schemas_app.command("check")
def check(
    file: Path | None = typer.Argument(None, help="Candidate .avsc (default: every registered subject)."),
    subject: str | None = typer.Option(None, "--subject", help="Subject of FILE (default: from its record name)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object instead of text."),
) -> None:
    """Exit 0 when compatible both ways, 1 when not (problems listed), 2 on bad input."""
    registry = get_registry()
    results: dict[str, tuple[str, CompatResult]] = {}
    if file is not None:
        candidate = _load_candidate(file)
        name = _subject_for(candidate, subject)
        latest = registry.latest(name)
        results[name] = (f"{file} vs v{latest.version}", check_compatibility(latest.raw, candidate))
    else:
        for name in registry.subjects():
            versions = registry.versions(name)
            if len(versions) < 2:
                results[name] = (f"v{versions[-1].version} (no earlier version)", CompatResult(True, True))
            else:
                prev, last = versions[-2], versions[-1]
                results[name] = (f"v{last.version} vs v{prev.version}", check_compatibility(prev.raw, last.raw))
    ok = all(r.backward and r.forward for _, r in results.values())
    if as_json:
        typer.echo(json.dumps({
            name: {"compared": what, "backward": r.backward, "forward": r.forward, "problems": r.problems}
            for name, (what, r) in results.items()
        }))
    else:
        for name, (what, r) in results.items():
            yes = {True: "yes", False: "NO"}
            typer.echo(f"{name:<11} {what:<28} backward: {yes[r.backward]:<4} forward: {yes[r.forward]}")
            for problem in r.problems:
                typer.echo(f"    - {problem}")
    if not ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(schemas_app, name="schemas")
