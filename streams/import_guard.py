"""Refuse to import history behind a partition's live event time (it would breach every imported order).

The worker fires every deadline of a partition at or before the partition's watermark (the
newest event time it has seen) before it applies the next event. History imported into a
partition whose watermark is already later (live traffic, an earlier newer import) therefore
fires each imported order's deadline before the order's own later rows arrive: every order
would breach, every checkout would be abandoned. `journey import` checks the newest event
time on each partition of the touchpoints topic first.
"""

from __future__ import annotations

import time

from kafka import TopicPartition

from infra.base.config import Settings
from infra.base.kafka import consumer
from infra.base.schema_registry import connect as connect_schema_registry
from schemas.codec import DecodeError, decode

LOOKBACK = 500  # records read back from each partition's end (the newest event times live there)
BUDGET_S = 10.0


def newest_event_times(settings: Settings) -> dict[int, int]:
    """Partition -> the newest `occurred_at` among its last records (empty partitions left out)."""
    connect_schema_registry(settings)  # events another producer wrote with an external registry's ids
    topic = settings.topics.touchpoints
    reader = consumer(settings, group_id=None, consumer_timeout_ms=1000)
    newest: dict[int, int] = {}
    try:
        partitions = sorted(reader.partitions_for_topic(topic) or ())
        assignment = [TopicPartition(topic, p) for p in partitions]
        if not assignment:
            return newest
        reader.assign(assignment)
        ends = reader.end_offsets(assignment)
        for tp in assignment:
            reader.seek(tp, max(0, ends[tp] - LOOKBACK))
        # Tansu reports the end as the last batch's base offset + 1: read until a poll is empty
        deadline = time.monotonic() + BUDGET_S
        while time.monotonic() < deadline:
            batch = reader.poll(timeout_ms=500)
            if not batch:
                break
            for tp, messages in batch.items():
                for message in messages:
                    try:
                        at = decode(message.value, "touchpoint")["occurred_at"]
                    except DecodeError:
                        continue
                    newest[tp.partition] = max(newest.get(tp.partition, at), at)
    finally:
        reader.close()
    return newest


def import_conflict(newest: dict[int, int], first_event_ms: int, lateness_ms: int) -> str | None:
    """Why importing history starting at `first_event_ms` would fire its deadlines early, or None."""
    ahead = {p: at for p, at in newest.items() if at - lateness_ms > first_event_ms}
    if not ahead:
        return None
    partition, at = max(ahead.items(), key=lambda item: item[1])
    from schemas.contract import iso_from_ms

    return (f"the touchpoints topic already holds events up to {iso_from_ms(at)} (partition {partition}, "
            f"{len(ahead)} of {len(newest)} partitions ahead), later than this export's first event "
            f"{iso_from_ms(first_event_ms)}: the worker would fire each imported order's deadline before "
            "its later rows arrive (every order a breach). Import history before live traffic or into "
            "topics of its own (JOURNEY_TOPIC_TOUCHPOINTS...), or pass --force")
