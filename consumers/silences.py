"""Silences: a store and/or rule muted for a time window; kept as events on the silences topic."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Any


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

    def matches(self, store_id: str | None, rule: str, at_ms: int) -> bool:
        return (self.starts_at <= at_ms < self.ends_at
                and (self.store_id is None or self.store_id == store_id)
                and (self.rule is None or self.rule == rule))

    def describe(self) -> str:
        scope = " and ".join(part for part in (
            f"store {self.store_id}" if self.store_id else "", f"rule {self.rule}" if self.rule else "") if part)
        return f"{self.silence_id} ({scope or 'everything'})"


def silence_record(silence: Silence, action: str, at_ms: int) -> dict[str, Any]:
    """The event for the silences topic (schemas/silence.avsc)."""
    return {"silence_id": silence.silence_id, "action": action, "store_id": silence.store_id, "rule": silence.rule,
            "starts_at": silence.starts_at, "ends_at": silence.ends_at, "created_by": silence.created_by,
            "comment": silence.comment, "at": at_ms}


def new_silence(store_id: str | None, rule: str | None, starts_at: int, duration_s: float, created_by: str,
                comment: str | None) -> Silence:
    """A new silence; at least a store or a rule must be named (muting everything is a mistake)."""
    if not store_id and not rule:
        raise ValueError("a silence needs --store and/or --rule (muting every alert is not allowed)")
    if duration_s <= 0:
        raise ValueError("a silence needs a positive duration, e.g. --for 2h")
    return Silence(f"sil-{uuid.uuid4().hex[:10]}", store_id or None, rule or None, starts_at,
                   starts_at + int(duration_s * 1000), created_by, comment)


class SilenceBook:
    """The silences known from the topic, replayed in order: create adds, expire ends one now."""

    def __init__(self) -> None:
        self.silences: dict[str, Silence] = {}

    def apply(self, record: dict[str, Any]) -> None:
        silence = Silence(record["silence_id"], record["store_id"], record["rule"], record["starts_at"],
                          record["ends_at"], record["created_by"], record["comment"])
        if record["action"] == "expire":
            known = self.silences.get(silence.silence_id)
            if known is not None:
                self.silences[silence.silence_id] = replace(known, ends_at=min(known.ends_at, record["at"]))
            return
        self.silences[silence.silence_id] = silence

    def matching(self, store_id: str | None, rule: str, at_ms: int) -> Silence | None:
        for silence in self.silences.values():
            if silence.matches(store_id, rule, at_ms):
                return silence
        return None

    def active(self, at_ms: int) -> list[Silence]:
        return sorted((s for s in self.silences.values() if s.ends_at > at_ms), key=lambda s: s.starts_at)
