"""Silences: a store and/or rule muted for a time window; kept as events on the silences topic.

A recurring silence (a maintenance window) mutes only on some weekdays and/or between two times
of day, in the store's time zone, within its overall window.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from streams.domain.business_time import WEEKDAYS, parse_clock


@dataclass(frozen=True)
class Silence:
    """Incidents matching `store_id` and `rule` (None: any) page nobody in [starts_at, ends_at)."""

    silence_id: str
    store_id: str | None
    rule: str | None
    starts_at: int
    ends_at: int
    created_by: str
    comment: str | None = None
    weekdays: tuple[str, ...] = ()  # recurring: only these days (mon..sun; empty: every day) ...
    daily_from: str | None = None  # ... between these local times (HH:MM; None: all day)
    daily_to: str | None = None

    @property
    def recurring(self) -> bool:
        return bool(self.weekdays or self.daily_from)

    def matches(self, store_id: str | None, rule: str, at_ms: int, timezone: str = "UTC") -> bool:
        return (self.starts_at <= at_ms < self.ends_at
                and (self.store_id is None or self.store_id == store_id)
                and (self.rule is None or self.rule == rule)
                and self.window_end(at_ms, timezone) is not None)

    def window_end(self, at_ms: int, timezone: str = "UTC") -> int | None:
        """When the mute in force at `at_ms` ends (None: not muting then; ignores store and rule)."""
        if not self.starts_at <= at_ms < self.ends_at:
            return None
        if not self.recurring:
            return self.ends_at
        local = datetime.fromtimestamp(at_ms / 1000, tz=ZoneInfo(timezone))
        if self.weekdays and WEEKDAYS[local.weekday()] not in self.weekdays:
            return None
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        start = parse_clock(self.daily_from) if self.daily_from else 0
        end = parse_clock(self.daily_to) if self.daily_to else 86_400
        seconds = (local - midnight).total_seconds()
        if not start <= seconds < end:
            return None
        return min(self.ends_at, int((midnight + timedelta(seconds=end)).timestamp() * 1000))

    def describe(self) -> str:
        scope = " and ".join(part for part in (
            f"store {self.store_id}" if self.store_id else "", f"rule {self.rule}" if self.rule else "") if part)
        when = ""
        if self.recurring:
            days = ",".join(self.weekdays) or "daily"
            when = f", {days} {self.daily_from or '00:00'}-{self.daily_to or '24:00'} local"
        return f"{self.silence_id} ({scope or 'everything'}{when})"


def silence_record(silence: Silence, action: str, at_ms: int) -> dict[str, Any]:
    """The event for the silences topic (schemas/silence.avsc)."""
    return {"silence_id": silence.silence_id, "action": action, "store_id": silence.store_id, "rule": silence.rule,
            "starts_at": silence.starts_at, "ends_at": silence.ends_at, "created_by": silence.created_by,
            "comment": silence.comment, "at": at_ms, "weekdays": list(silence.weekdays),
            "daily_from": silence.daily_from, "daily_to": silence.daily_to}


def new_silence(store_id: str | None, rule: str | None, starts_at: int, duration_s: float, created_by: str,
                comment: str | None, weekdays: str | None = None, between: str | None = None) -> Silence:
    """A new silence; at least a store or a rule must be named (muting everything is a mistake).

    `weekdays` ("mon-fri", "sat,sun") and `between` ("02:00-04:00") make it recurring.
    """
    if not store_id and not rule:
        raise ValueError("a silence needs --store and/or --rule (muting every alert is not allowed)")
    if duration_s <= 0:
        raise ValueError("a silence needs a positive duration, e.g. --for 2h")
    daily_from = daily_to = None
    if between:
        daily_from, _, daily_to = between.partition("-")
        try:
            if parse_clock(daily_to) <= parse_clock(daily_from):
                raise ValueError
        except ValueError:
            raise ValueError(f"--between {between!r}: use HH:MM-HH:MM, the end after the start "
                             "(e.g. 02:00-04:00)") from None
    return Silence(f"sil-{uuid.uuid4().hex[:10]}", store_id or None, rule or None, starts_at,
                   starts_at + int(duration_s * 1000), created_by, comment, parse_weekdays(weekdays),
                   daily_from, daily_to)


def parse_weekdays(text: str | None) -> tuple[str, ...]:
    """'mon-fri' / 'sat,sun' / 'mon,wed-fri' -> ('mon', ...); ValueError naming a bad day."""
    days: list[str] = []
    for part in (text or "").lower().replace(" ", "").split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        if first not in WEEKDAYS or (last and last not in WEEKDAYS):
            raise ValueError(f"--weekdays {text!r}: days are {', '.join(WEEKDAYS)} (e.g. mon-fri or sat,sun)")
        i, j = WEEKDAYS.index(first), WEEKDAYS.index(last or first)
        days += [WEEKDAYS[k % 7] for k in range(i, j + 1 if j >= i else j + 8)]
    return tuple(d for d in WEEKDAYS if d in days)


class SilenceBook:
    """The silences known from the topic, replayed in order: create adds, expire ends one now."""

    def __init__(self) -> None:
        self.silences: dict[str, Silence] = {}

    def apply(self, record: dict[str, Any]) -> None:
        silence = Silence(record["silence_id"], record["store_id"], record["rule"], record["starts_at"],
                          record["ends_at"], record["created_by"], record["comment"],
                          tuple(record.get("weekdays") or ()), record.get("daily_from"), record.get("daily_to"))
        if record["action"] == "expire":
            known = self.silences.get(silence.silence_id)
            if known is not None:
                self.silences[silence.silence_id] = replace(known, ends_at=min(known.ends_at, record["at"]))
            return
        self.silences[silence.silence_id] = silence

    def matching(self, store_id: str | None, rule: str, at_ms: int, timezone: str = "UTC") -> Silence | None:
        """The silence muting a store's rule at `at_ms` (recurring ones in the store's `timezone`)."""
        for silence in self.silences.values():
            if silence.matches(store_id, rule, at_ms, timezone):
                return silence
        return None

    def active(self, at_ms: int) -> list[Silence]:
        return sorted((s for s in self.silences.values() if s.ends_at > at_ms), key=lambda s: s.starts_at)
