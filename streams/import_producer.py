"""`journey import`'s Kafka side: an export's events produced in the order given (event time)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from infra.base.config import Settings
from streams.emitter import TouchpointEmitter, fewer_gc_passes

PROGRESS_EVERY = 1000


def produce_history(settings: Settings, events: Sequence[dict[str, Any]], advance: Callable[[int], None]) -> int:
    """Produce `events` in order (one producer: per partition the broker keeps that order), every
    one acknowledged before returning; `advance(n)` reports progress. DeliveryError otherwise."""
    with fewer_gc_passes(), TouchpointEmitter(settings) as emitter:
        for n, event in enumerate(events, 1):
            emitter.send(event)
            if n % PROGRESS_EVERY == 0:
                advance(PROGRESS_EVERY)
        emitter.flush()
    advance(len(events) % PROGRESS_EVERY)
    return len(events)
