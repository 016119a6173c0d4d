"""`journey emit` on several cores: lines split by journey over producer processes.

One process spends ~15 µs per line parsing, validating and encoding and a few µs handing records
to its batch producer, all holding the GIL; with spare cores (JOURNEY_EMIT_PROCESSES, auto: one
per core beyond the first) more processes share that work.
Here the parent reads lines and routes each one by a hash of its journey id; it produces one
share itself and hands the others to worker processes; each share is validated, encoded and
produced by its own batch producer (`streams.emit_batches`, acks=all). One journey always goes
to the same worker, and a worker produces in file order, so each journey's events keep their order in their partition.
Lines without a readable journey id go to worker 0, which rejects them with the reason.
Rejects are reported by line number, in line order, once every worker is done.
"""

from __future__ import annotations

import json
import multiprocessing
import re
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from infra.base.config import Settings
from infra.base.errors import JourneyError
from schemas.control import new_session
from streams.emitter import fewer_gc_passes, take_line

CHUNK_LINES = 2000
_KEY = '"journey_id"'
_JOURNEY = re.compile(r'"journey_id"\s*:\s*"([^"]*)"')


@dataclass
class WorkerResult:
    """What one worker reports back when its input ends."""

    accepted: int = 0
    rejects: list[tuple[int, str]] = field(default_factory=list)
    begun: set[int] = field(default_factory=set)  # partitions written to (the parent ends the session there)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (event_id, error)
    error: str | None = None  # the worker could not run at all (broker unreachable, ...)


def route(line: str, workers: int) -> int:
    """The worker for a line: by its journey id, so one journey always goes to the same worker.

    The parent routes every line, so the usual line (one `"journey_id"` key, no escapes: then
    the match can only be that key and its whole value) is read with a regex, ~5x cheaper than
    `json.loads`; anything else is parsed.
    """
    journey: object = None
    if "\\" not in line and line.count(_KEY) == 1:
        match = _JOURNEY.search(line)
        journey = match.group(1) if match else None
    if journey is None:
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            return 0
        journey = obj.get("journey_id") if isinstance(obj, dict) else None
    if not isinstance(journey, str):
        return 0
    return zlib.crc32(journey.encode("utf-8", "surrogatepass")) % workers


class Share:
    """One process's share of the lines: validated, encoded and produced by its own emitter."""

    def __init__(self, settings: Settings, source: str, session: str, last: bool) -> None:
        """`last`: this share writes the session's end of data, once every other share is done."""
        from streams.emit_batches import BatchEmitter

        self.source = source
        self.result = WorkerResult()
        # JourneyError when the broker is unreachable
        self.emitter = BatchEmitter(settings, session=session, end_on_close=last)

    def add(self, number: int, line: str) -> None:
        reason = take_line(self.emitter, number, line, self.source)
        if reason is None:
            self.result.accepted += 1
        else:
            self.result.rejects.append((number, reason))

    def flush(self) -> None:
        """Wait for the broker's acknowledgements; record what it did not acknowledge."""
        from streams.emitter import DeliveryError

        try:
            self.emitter.flush()
        except DeliveryError:
            self.result.failed = list(self.emitter.report.failed)

    def finish(self, others: list[WorkerResult] | None = None) -> WorkerResult:
        """Flush and close. With `others` (the last share: theirs are all acknowledged), the
        session's end goes to every partition any share wrote to."""
        try:
            self.flush()
        finally:
            self.result.begun = set(self.emitter.begun)
            self.emitter.begun.update(*(r.begun for r in others or []))
            self.emitter.close()
        return self.result


def _work(settings: Settings, source: str, session: str, conn: Connection) -> None:
    """A worker process: its share of the lines arrives in chunks, then None; it reports back."""
    try:
        share = Share(settings, source, session, last=False)
        with fewer_gc_passes():
            while (chunk := conn.recv()) is not None:
                for number, line in chunk:
                    share.add(number, line)
        result = share.finish()
    except JourneyError as exc:
        result = WorkerResult(error=str(exc))
        while conn.recv() is not None:  # drain, so the parent never blocks on a full pipe
            pass
    conn.send(result)


def emit_lines_parallel(
    settings: Settings, lines: Iterable[str], on_reject: Callable[[int, str], None], processes: int,
    source: str = "journey emit",
) -> tuple[int, int, list[tuple[str, str]]]:
    """Route lines over `processes` producers; returns (accepted, rejected, delivery failures).

    This process takes share 0 itself (one interpreter fewer to start) and spawns the others.
    `on_reject(line_number, reason)` is called for each reject, in line order, at the end.
    Raises `JourneyError` if a worker could not run or died (then what it sent is unknown).
    """
    spawn = multiprocessing.get_context("spawn")  # not fork: kafka-python runs threads
    # One producer session for all (schemas.control): a share done early must not say "end" on a
    # partition another share has not begun yet; this process ends it once all have reported.
    session = new_session()
    pipes = [spawn.Pipe() for _ in range(processes - 1)]
    workers = [spawn.Process(target=_work, args=(settings, source, session, child), name=f"emit-{index + 1}",
                             daemon=True) for index, (_, child) in enumerate(pipes)]
    for worker, (_, child) in zip(workers, pipes, strict=True):
        worker.start()
        child.close()  # the worker holds its end now; if it dies, sending to it fails instead of blocking
    chunks: list[list[tuple[int, str]]] = [[] for _ in workers]
    own: Share | None = None
    try:
        own = Share(settings, source, session, last=True)
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            target = route(line, processes)
            if target == 0:
                own.add(number, line)
                continue
            chunk = chunks[target - 1]
            chunk.append((number, line))
            if len(chunk) >= CHUNK_LINES:
                pipes[target - 1][0].send(chunk)
                chunks[target - 1] = []
        for (parent, _), chunk in zip(pipes, chunks, strict=True):
            if chunk:
                parent.send(chunk)
            parent.send(None)
        own.flush()  # while the others finish theirs
        others: list[WorkerResult] = [parent.recv() for parent, _ in pipes]
        results = [own.finish(others), *others]
    except (EOFError, OSError):
        if own is not None:
            own.emitter.close()
        raise JourneyError("an emit worker process died: some lines may not have been sent; "
                           "re-run `journey emit` (repeated event ids change nothing)") from None
    finally:
        for parent, _ in pipes:
            try:
                parent.send(None)  # lets a worker still waiting for input end (after an error here)
            except OSError:
                pass
        for worker in workers:
            worker.join(timeout=30)
    errors = [r.error for r in results if r.error]
    if errors:
        raise JourneyError(errors[0])
    rejects = sorted(reject for r in results for reject in r.rejects)
    for number, reason in rejects:
        on_reject(number, reason)
    failed = [f for r in results for f in r.failed]
    return sum(r.accepted for r in results), len(rejects), failed
