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
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

MARK_PREFIX = b"W"  # internal-topic values: a mark alone starts with this, an envelope with b"E"
_MARK = struct.Struct(">iiq?")  # source partition, sources in all, watermark ms (-1: none yet), caught up


@dataclass(frozen=True)
class Mark:
    source: int
    sources: int
    watermark: int | None
    caught_up: bool

    def encode(self) -> bytes:
        wm = -1 if self.watermark is None else self.watermark
        return MARK_PREFIX + _MARK.pack(self.source, self.sources, wm, self.caught_up)

    @staticmethod
    def size() -> int:
        """Bytes of an encoded mark after its prefix."""
        return _MARK.size

    @classmethod
    def decode(cls, value: bytes) -> Mark:
        source, sources, wm, caught_up = _MARK.unpack(value[1:])
        return cls(source, sources, None if wm < 0 else wm, caught_up)


def is_mark(value: bytes) -> bool:
    return value[:1] == MARK_PREFIX


def record_time(event: dict[str, Any], received_at: int | None) -> int:
    """How far one source record moves its partition's mark: the event's time. (The one place
    that decides it; `received_at` is the source record's timestamp, ms, None when unknown.)"""
    return int(event["occurred_at"])


class SourceClocks:
    """Per source partition this worker reads: its newest event time and when that arrived."""

    def __init__(self) -> None:
        self._base: dict[int, tuple[int, int]] = {}  # partition -> (newest event time, wall ms then)

    def saw(self, partition: int, at: int, now_ms: int) -> None:
        base = self._base.get(partition)
        if base is None or at > base[0]:
            self._base[partition] = (at, now_ms)
        else:
            self._base[partition] = (base[0], now_ms)

    def forget(self, partition: int) -> None:
        self._base.pop(partition, None)

    def mark(self, partition: int, sources: int, caught_up: bool, now_ms: int) -> Mark:
        base = self._base.get(partition)
        if base is None:
            return Mark(partition, sources, None, caught_up)
        at, wall = base
        return Mark(partition, sources, at + max(0, now_ms - wall) if caught_up else at, caught_up)
