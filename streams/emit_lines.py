"""`journey emit`'s core: JSON lines in, valid events produced, each reject reported by line."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from infra.config import Settings
from schemas.contract import ContractError, parse_json_line
from streams.emitter import TouchpointEmitter


@dataclass
class EmitSummary:
    """Counts of one `emit` run: accepted = acknowledged by the broker."""

    accepted: int = 0
    rejected: int = 0


def emit_lines(
    settings: Settings,
    lines: Iterable[str],
    on_reject: Callable[[int, str], None],
    emitter: TouchpointEmitter | None = None,
    source: str = "journey emit",
) -> EmitSummary:
    """Validate each line; produce the valid ones; call `on_reject(line_number, reason)` for others.

    Each rejected line also goes to the dead-letter topic (its bytes, the reason, the line
    number), like what the worker refuses. Blank lines are skipped (not counted). Raises
    `DeliveryError` if the broker did not acknowledge every accepted event, so "accepted" never
    counts an event that was not written.
    """
    summary = EmitSummary()
    own = emitter is None
    emitter = emitter or TouchpointEmitter(settings)
    try:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                event = parse_json_line(line)
            except ContractError as exc:
                summary.rejected += 1
                on_reject(number, str(exc))
                # surrogateescape: undecodable input bytes come back exactly as they were sent
                emitter.send_dead_letter(line.rstrip("\r\n").encode("utf-8", "surrogateescape"), str(exc),
                                         source, number)
                continue
            emitter.send(event)
            summary.accepted += 1
        emitter.flush()
    finally:
        if own:
            emitter.close()
    return summary
