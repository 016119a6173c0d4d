"""Store hours and business time: pure functions on epoch milliseconds (no I/O, no clock).

A store's calendar says when it is open: per weekday one interval in its local time zone,
minus holidays (whole local days). SLA clocks count only open time ("business time", as
Zendesk's business-hour SLAs do), and the notifier holds pages of channels that need the store
until it opens. A store without hours is always open, so business time equals calendar time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_DAYS = 400  # a search for the next opening gives up after this (a store closed for good)


@dataclass(frozen=True)
class StoreCalendar:
    """Opening hours of one store; `hours` None means open around the clock."""

    timezone: str = "UTC"
    hours: dict[int, tuple[int, int]] | None = None  # weekday (0 = Monday) -> (open_s, close_s) local
    holidays: frozenset[date] = field(default_factory=frozenset)

    @property
    def always_open(self) -> bool:
        return self.hours is None and not self.holidays

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


ALWAYS_OPEN = StoreCalendar()


def parse_clock(text: str) -> int:
    """'HH:MM' or 'HH:MM:SS' (24:00 allowed) -> seconds since midnight; ValueError otherwise."""
    parts = text.strip().split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts):
        raise ValueError(f"{text!r} is not a time of day (HH:MM)")
    h, m, s = (int(p) for p in (*parts, "0")[:3])
    if m > 59 or s > 59 or h > 24 or (h == 24 and (m or s)):
        raise ValueError(f"{text!r} is not a time of day (HH:MM)")
    return h * 3600 + m * 60 + s


def parse_interval(text: str) -> tuple[int, int]:
    """'10:00-22:00' -> (36000, 79200); the close must come after the open (same local day)."""
    if text.count("-") != 1:
        raise ValueError(f"{text!r} is not an interval like 10:00-22:00")
    start, end = (parse_clock(p) for p in text.split("-"))
    if end <= start:
        raise ValueError(f"{text!r}: the close must come after the open (same day; use 24:00 for midnight)")
    return start, end


def _intervals(cal: StoreCalendar, day: date) -> tuple[int, int] | None:
    """The store's open interval on a local day as epoch ms, or None when closed that day."""
    if day in cal.holidays:
        return None
    if cal.hours is None:
        span: tuple[int, int] | None = (0, 86_400)
    else:
        span = cal.hours.get(day.weekday())
    if span is None:
        return None
    # aware + timedelta is wall-clock arithmetic in the zone: a DST day keeps its local hours
    midnight = datetime.combine(day, time(0), tzinfo=cal.zone())
    return (int((midnight + timedelta(seconds=span[0])).timestamp() * 1000),
            int((midnight + timedelta(seconds=span[1])).timestamp() * 1000))


def _local_day(cal: StoreCalendar, at_ms: int) -> date:
    return datetime.fromtimestamp(at_ms / 1000, tz=cal.zone()).date()


def is_open(cal: StoreCalendar, at_ms: int) -> bool:
    """True when the store is open at `at_ms`."""
    if cal.always_open:
        return True
    span = _intervals(cal, _local_day(cal, at_ms))
    return span is not None and span[0] <= at_ms < span[1]


def next_opening(cal: StoreCalendar, at_ms: int) -> int | None:
    """`at_ms` when open, else when the store next opens (None: not within MAX_DAYS)."""
    if cal.always_open:
        return at_ms
    day = _local_day(cal, at_ms)
    for offset in range(MAX_DAYS):
        span = _intervals(cal, day + timedelta(days=offset))
        if span is not None and at_ms < span[1]:
            return max(at_ms, span[0])
    return None


def business_seconds(cal: StoreCalendar | None, start_ms: int, end_ms: int) -> float:
    """Open time between two instants, in seconds (calendar time for an always-open store)."""
    if end_ms <= start_ms:
        return 0.0
    if cal is None or cal.always_open:
        return (end_ms - start_ms) / 1000
    total = 0
    day, last = _local_day(cal, start_ms), _local_day(cal, end_ms)
    while day <= last:
        span = _intervals(cal, day)
        if span is not None:
            total += max(0, min(end_ms, span[1]) - max(start_ms, span[0]))
        day += timedelta(days=1)
    return total / 1000


def add_business_seconds(cal: StoreCalendar | None, start_ms: int, seconds: float) -> int:
    """The instant `seconds` of open time after `start_ms` (the SLA deadline in business time).

    A store that never opens again within MAX_DAYS gets the calendar deadline: an SLA must
    come due some day.
    """
    left = int(seconds * 1000)
    if cal is None or cal.always_open:
        return start_ms + left
    day = _local_day(cal, start_ms)
    for offset in range(MAX_DAYS):
        span = _intervals(cal, day + timedelta(days=offset))
        if span is None or span[1] <= start_ms:
            continue
        begin = max(start_ms, span[0])
        if begin + left <= span[1]:
            return begin + left
        left -= span[1] - begin
    return start_ms + int(seconds * 1000)


def local_clock(cal: StoreCalendar, at_ms: int) -> str:
    """'Mon 10:00 America/Los_Angeles': an instant as the store's staff read it."""
    local = datetime.fromtimestamp(at_ms / 1000, tz=cal.zone())
    return f"{WEEKDAYS[local.weekday()].title()} {local:%H:%M} {cal.timezone}"
