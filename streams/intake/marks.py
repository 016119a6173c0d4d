"""Event-time progress of source partitions, as intake reports it downstream (pure, no Kafka).

Intake reads the source topic (any partitioner, any partition count) and re-keys its events by
journey into the internal topic; one internal partition then interleaves every source partition
in arrival order. So that a deadline fires only once every source has got past it, intake sends
each internal partition a *mark* per source partition after each batch and on every tick:
(source partition, source partitions in all, watermark, caught up). The journeys stage takes the
low watermark of the marks (`streams.journeys.low_watermark`).

A source's watermark is the newest event time read from it; once it is caught up (nothing left
to read) it advances with the wall clock from there, so a spoon that never comes still fires on
time with no further event.

A source is *idle* (its data may have ended: downstream it then follows the topic, less the allowed
lateness) when it is caught up and either
- **ended**: the newest record read from it is a producer's end of data (`schemas.control`) and
  no producer that began there since intake started reading it is still open; any other record
  read after it (a touchpoint, a bad record, a begin) takes that back at once; or
- **silent**: no record for `JOURNEY_SOURCE_IDLE_S`, for producers without the signal. Silence
  also closes every session still open there (a producer killed before its end).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from schemas.control import BEGIN, is_control, parse

MARK_PREFIX = b"W"  # internal-topic values: a mark alone starts with this, an envelope with b"F" (b"E": older intakes)
_MARK = struct.Struct(">iiq??")  # source partition, sources in all, watermark ms (-1: none yet), caught up, idle
_MARK_V1 = struct.Struct(">iiq?")  # before `idle` (a mark still in the topic from an older intake)


@dataclass(frozen=True)
class Mark:
    source: int
    sources: int
    watermark: int | None
    caught_up: bool
    idle: bool = False  # caught up and no event for a while (JOURNEY_SOURCE_IDLE_S): its data may have ended

    def encode(self) -> bytes:
        wm = -1 if self.watermark is None else self.watermark
        return MARK_PREFIX + _MARK.pack(self.source, self.sources, wm, self.caught_up, self.idle)

    @staticmethod
    def size() -> int:
        """Bytes of an encoded mark after its prefix."""
        return _MARK.size

    @classmethod
    def decode(cls, value: bytes) -> Mark:
        if len(value) - 1 == _MARK_V1.size:
            source, sources, wm, caught_up = _MARK_V1.unpack(value[1:])
            return cls(source, sources, None if wm < 0 else wm, caught_up)
        source, sources, wm, caught_up, idle = _MARK.unpack(value[1:])
        return cls(source, sources, None if wm < 0 else wm, caught_up, idle)


def is_mark(value: bytes) -> bool:
    return value[:1] == MARK_PREFIX


class SourceClocks:
    """Per source partition this worker reads: its newest event time and when that arrived."""

    def __init__(self) -> None:
        self._base: dict[int, tuple[int, int]] = {}  # partition -> (newest event time, wall ms then)
        self._idle_from: dict[int, int] = {}  # partition -> wall ms of its last event (any time)
        self._open: dict[int, set[str]] = {}  # partition -> producer sessions begun and not ended
        self._ended: set[int] = set()  # partitions whose newest record read is an end of data

    def touched(self, partition: int) -> None:
        """A record that is no end of data was read from `partition` (after any control record of
        the same batch): whoever said "done" there, someone still writes."""
        self._ended.discard(partition)

    def begun(self, partition: int, session: str) -> None:
        """A producer's begin of data on `partition`."""
        self._open.setdefault(partition, set()).add(session)
        self._ended.discard(partition)

    def ended(self, partition: int, session: str, now_ms: int) -> None:
        """A producer's end of data on `partition`: ended unless another producer is still open.
        Counts as a record read now for the silence rule."""
        sessions = self._open.get(partition, set())
        sessions.discard(session)
        if sessions:
            self._ended.discard(partition)
        else:
            self._open.pop(partition, None)
            self._ended.add(partition)
        if partition in self._base:
            self._idle_from[partition] = now_ms

    def saw(self, partition: int, at: int, now_ms: int) -> None:
        """An event of time `at` read now. An older one (a backlog of history behind live traffic)
        leaves the base alone: restarting the wall-clock advance from the newest event time would,
        once caught up, hold the partition's clock back by the whole backlog's duration (every
        deadline late by that much; measured: a watermark stuck 18 s after a 60,000-event backlog)."""
        base = self._base.get(partition)
        if base is None or at > base[0]:
            self._base[partition] = (at, now_ms)
        else:
            self._idle_from[partition] = now_ms

    def forget(self, partition: int) -> None:
        self._base.pop(partition, None)
        self._idle_from.pop(partition, None)
        self._open.pop(partition, None)
        self._ended.discard(partition)

    def mark(self, partition: int, sources: int, caught_up: bool, now_ms: int,
             idle_after_ms: int | None = None) -> Mark:
        """`idle`: caught up, and ended or without a record for `idle_after_ms` of wall time (None:
        never by silence). See the module docstring."""
        base = self._base.get(partition)
        if base is None:
            return Mark(partition, sources, None, caught_up)
        at, wall = base
        last = max(wall, self._idle_from.get(partition, wall))
        silent = caught_up and idle_after_ms is not None and now_ms - last >= idle_after_ms
        if silent:
            self._open.pop(partition, None)  # whoever began and never ended has gone quiet too
        idle = caught_up and (silent or partition in self._ended)
        return Mark(partition, sources, at + max(0, now_ms - wall) if caught_up else at, caught_up, idle)


def take_controls(clocks: SourceClocks, messages: list[Any], now_ms: int) -> list[Any]:
    """The batch's messages without its control records, which go to `clocks` in offset order
    with every other record (so whether a partition ended is decided by its newest record).
    A malformed control record stays in: intake dead-letters it like any bad record."""
    if not any(is_control(m.value) for m in messages):
        for partition in {m.partition for m in messages}:
            clocks.touched(partition)
        return messages
    data = []
    for message in messages:
        control = parse(message.value) if is_control(message.value) else None
        if control is None:
            data.append(message)
            clocks.touched(message.partition)
        elif control.kind == BEGIN:
            clocks.begun(message.partition, control.session)
        else:
            clocks.ended(message.partition, control.session, now_ms)
    return data


def newest_is_end(values: list[bytes]) -> str | None:
    """The session of an end of data when it is the newest of `values` (offset order), else None:
    a restarted intake resumes a partition that had ended as ended."""
    if values and is_control(values[-1]):
        control = parse(values[-1])
        if control is not None and control.kind != BEGIN:
            return control.session
    return None
