"""What is kept of a journey dropped by expiry, so a late event of it is not a new journey (pure).

A late review, delivery or answer of an expired journey must not look like the customer's next
visit ("came back") or a first failure of a fresh journey. What that takes is the journey's first
event time (its start stays where it was) and whether it had an incident (feedback then belongs to
that incident, not a new one): one int per journey, `first_ms * 2 + had_incident`.

Tombstones live `life_ms` of event time after their journey expired, in one bucket per day of
their end, so dropping a day's worth is one dict freed (no heap entry per tombstone). Measured:
~150 B each (500k tombstones of 11-character ids, RSS), which is why only journeys that had an
incident leave one (`Detector._expire`).
"""

from __future__ import annotations

from typing import NamedTuple

DAY_MS = 86_400_000


class Tombstone(NamedTuple):
    """A tombstone as persisted in the journey table: partition, packed value, last day."""

    p: int
    packed: int  # first_ms * 2 + had_incident
    day: int  # dropped once the watermark passes the end of this day (event time)

    def to_state(self) -> dict[str, int]:
        return {"p": self.p, "t": self.packed, "d": self.day}


def pack(first: int, had_incident: bool) -> int:
    return first * 2 + had_incident


class Tombstones:
    """Tombstones of one partition, bucketed by the day they end."""

    __slots__ = ("life_ms", "days", "soonest")

    def __init__(self, life_ms: int) -> None:
        self.life_ms = life_ms
        self.days: dict[int, dict[str, int]] = {}
        self.soonest: int | None = None  # the earliest day held (a cheap "nothing to drop yet")

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self.days.values())

    def add(self, journey_id: str, first: int, had_incident: bool, expired_at: int) -> int:
        """Remember an expired journey; returns the day its tombstone ends."""
        day = (expired_at + self.life_ms) // DAY_MS
        self.put(journey_id, pack(first, had_incident), day)
        return day

    def put(self, journey_id: str, packed: int, day: int) -> None:
        self.days.setdefault(day, {})[journey_id] = packed
        self.soonest = day if self.soonest is None else min(self.soonest, day)

    def take(self, journey_id: str) -> tuple[int, bool] | None:
        """(first, had_incident) of an expired journey, removing its tombstone; None when unknown."""
        for bucket in self.days.values():
            packed = bucket.pop(journey_id, None)
            if packed is not None:
                return packed >> 1, bool(packed & 1)
        return None

    def expire(self, mark: int) -> list[str]:
        """Drop the tombstones whose day ended at or before `mark`; their journey ids."""
        if self.soonest is None or (self.soonest + 1) * DAY_MS > mark:
            return []
        gone: list[str] = []
        for day in [d for d in self.days if (d + 1) * DAY_MS <= mark]:
            gone += self.days.pop(day)
        self.soonest = min(self.days, default=None)
        return gone

    def find(self, journey_id: str) -> tuple[int, int] | None:
        """(packed, day) of a tombstone (its persisted form), or None."""
        for day, bucket in self.days.items():
            packed = bucket.get(journey_id)
            if packed is not None:
                return packed, day
        return None
