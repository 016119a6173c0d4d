"""Read any of the tracker's topics and render records as JSON lines (`journey tail`)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from infra.base.config import Settings
from infra.base.errors import JourneyError
from infra.base.kafka_clients import client_args
from infra.base.schema_registry import connect as connect_schema_registry
from schemas.codec import decode
from schemas.contract import event_to_json, iso_from_ms
from schemas.control import is_control
from schemas.dead_letter import parse_dead_letter_headers


def subject_of(settings: Settings, topic: str) -> str | None:
    """Avro subject of a topic's values; None for the dead-letter topic (raw bytes)."""
    topics = settings.topics
    subjects = {topics.touchpoints: "touchpoint", topics.incidents: "incident", topics.alerts: "alert",
                topics.silences: "silence"}
    if topic == topics.dlq:
        return None
    if topic not in subjects:
        raise JourneyError(
            f"unknown topic {topic!r}: choose one of {', '.join(topics.all())} "
            "(names come from JOURNEY_TOPIC_* variables)"
        )
    return subjects[topic]


def assigned_consumer(settings: Settings, topic: str, from_beginning: bool) -> KafkaConsumer:
    """A group-less consumer assigned every partition of `topic` (reading never moves offsets).

    The process then decodes with the configured registry's ids (an external registry's, and
    versions producers registered), as the worker and sink do.
    """
    connect_schema_registry(settings)
    reader = KafkaConsumer(**client_args(settings), enable_auto_commit=False)
    partitions = reader.partitions_for_topic(topic)
    if not partitions:
        reader.close()
        raise JourneyError(f"topic {topic!r} does not exist yet on {settings.bootstrap_servers}")
    assignment = [TopicPartition(topic, p) for p in sorted(partitions)]
    reader.assign(assignment)
    if from_beginning:
        reader.seek_to_beginning(*assignment)
    else:
        reader.seek_to_end(*assignment)
    return reader


def record_to_json(record: dict[str, Any], subject: str) -> dict[str, Any]:
    """Decoded record -> JSON-friendly dict (timestamps as ISO-8601 UTC)."""
    if subject == "touchpoint":
        return event_to_json(record)
    return {
        k: iso_from_ms(v) if (k == "at" or k.endswith("_at")) and isinstance(v, int) else v
        for k, v in record.items()
    }


def render(settings: Settings, topic: str, message: Any) -> str:
    """One message as a JSON line (dead letters: reason, origin, original bytes as latin-1/hex)."""
    subject = subject_of(settings, topic)
    meta = {"partition": message.partition, "offset": message.offset}
    if subject is None:
        info = parse_dead_letter_headers(message.headers or [])
        body = {**info, "value_hex": message.value.hex() if message.value else ""}
    else:
        try:
            body = record_to_json(decode(message.value, subject), subject)
        except Exception as exc:  # a bad record must not stop the tail
            body = {"undecodable": str(exc), "value_hex": (message.value or b"").hex()}
    return json.dumps({**meta, **body}, ensure_ascii=False)


def follow(
    settings: Settings,
    topic: str,
    from_beginning: bool = False,
    limit: int | None = None,
    idle_timeout_s: float | None = None,
) -> Iterator[str]:
    """Yield rendered records until `limit` records or `idle_timeout_s` without any."""
    subject_of(settings, topic)  # validate the name before connecting
    reader = assigned_consumer(settings, topic, from_beginning)
    try:
        yield from follow_reader(settings, topic, reader, limit, idle_timeout_s)
    finally:
        reader.close()


def follow_reader(settings: Settings, topic: str, reader: KafkaConsumer, limit: int | None = None,
                  idle_timeout_s: float | None = None) -> Iterator[str]:
    """Rendered records from an assigned consumer, batch by batch, until `limit` or `idle_timeout_s`."""
    seen = 0
    last = time.monotonic()
    while limit is None or seen < limit:
        batch = reader.poll(timeout_ms=200)
        if not batch:
            if idle_timeout_s is not None and time.monotonic() - last > idle_timeout_s:
                return
            continue
        last = time.monotonic()
        for message in (m for records in batch.values() for m in records):
            if topic == settings.topics.touchpoints and is_control(message.value):
                continue  # a producer's begin or end of data (schemas.control): no touchpoint
            yield render(settings, topic, message)
            seen += 1
            if limit is not None and seen >= limit:
                return
