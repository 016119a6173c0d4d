"""`journey emit`'s core: JSON lines in, valid events produced, each reject reported by line."""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from infra.base.config import Settings
from streams.emit_parallel import emit_lines_parallel
from streams.emitter import TouchpointEmitter, delivery_error, fewer_gc_passes, take_line

if TYPE_CHECKING:
    from streams.emit_batches import BatchEmitter

    Emitter = TouchpointEmitter | BatchEmitter


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
    processes: int = 1,
    source: str = "journey emit",
    bulk: bool = False,
) -> EmitSummary:
    """Validate each line; produce the valid ones; call `on_reject(line_number, reason)` for others.

    Each rejected line also goes to the dead-letter topic (its bytes, the reason, the line
    number), like what the worker refuses. Blank lines are skipped (not counted). Raises
    `DeliveryError` if the broker did not acknowledge every accepted event, so "accepted" never
    counts an event that was not written.
    With `processes` > 1 the lines are split by journey over that many producer processes
    (`streams.emit_parallel`); rejects are then reported at the end, still in line order.
    `bulk`: all lines are there already (a file): events go out in chunks of record batches
    (`streams.emit_batches`) instead of one by one as they are read.
    """
    if processes > 1 and emitter is None:
        with fewer_gc_passes():
            accepted, rejected, failed = emit_lines_parallel(settings, lines, on_reject, processes, source)
        if failed:
            raise delivery_error(failed)
        return EmitSummary(accepted, rejected)
    summary = EmitSummary()
    own = emitter is None
    if emitter is None:
        emitter = new_emitter(settings, bulk)
    try:
        with fewer_gc_passes():
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                reason = take_line(emitter, number, line, source)
                if reason is None:
                    summary.accepted += 1
                else:
                    summary.rejected += 1
                    on_reject(number, reason)
        emitter.flush()
    finally:
        if own:
            emitter.close()
    return summary


def new_emitter(settings: Settings, bulk: bool) -> Emitter:
    """The producer for `journey emit`: batches in chunks for a file, one by one for a stream."""
    if bulk:
        from streams.emit_batches import BatchEmitter

        return BatchEmitter(settings)
    return TouchpointEmitter(settings)


def is_regular_file(stream: TextIO) -> bool:
    """True for a file on disk (all lines there already), False for a pipe or terminal."""
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError, io.UnsupportedOperation):
        return False


def emit_stream(settings: Settings, stream: TextIO, on_reject: Callable[[int, str], None]) -> EmitSummary:
    """What `journey emit` runs: a file uses `emit_processes` producers; a pipe or terminal one.

    Why not a pipe: lines may trickle in (`tail -f | journey emit`), and the file path hands
    events over in chunks; for a stream one producer sends each line as soon as it is read.
    """
    bulk = is_regular_file(stream)
    return emit_lines(settings, stream, on_reject, processes=settings.emit_processes if bulk else 1, bulk=bulk)
