"""`journey smoke`: prove the stack works end to end (Kafka round trip + ClickHouse query)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from kafka import KafkaProducer

from infra.base.clickhouse import get_client
from infra.base.config import Settings
from infra.base.errors import JourneyError
from infra.base.kafka import consumer, ensure_topics
from infra.base.kafka_clients import client_args
from infra.local import stack


def kafka_round_trip(settings: Settings, count: int = 100) -> float:
    """Produce `count` keyed messages and read them back in a consumer group; seconds taken."""
    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    ensure_topics(settings, [topic], partitions=2)
    started = time.monotonic()
    producer = KafkaProducer(**client_args(settings, producer=True), acks="all")
    try:
        for i in range(count):
            producer.send(topic, key=f"k{i % 7}".encode(), value=f"m{i}".encode())
        producer.flush(timeout=30)
    finally:
        producer.close()
    reader = consumer(settings, topic, group_id=f"smoke-{uuid.uuid4().hex[:8]}", consumer_timeout_ms=30000)
    try:
        seen = {m.value for m in _take(reader, count)}
        reader.commit()
    finally:
        reader.close()
    if seen != {f"m{i}".encode() for i in range(count)}:
        raise JourneyError(f"Kafka round trip lost messages: {len(seen)} of {count} came back")
    return time.monotonic() - started


def _take(reader: object, count: int) -> list:  # type: ignore[type-arg]
    out = []
    for message in reader:  # type: ignore[attr-defined]
        out.append(message)
        if len(out) >= count:
            break
    return out


def clickhouse_round_trip(settings: Settings) -> int:
    """Create a MergeTree table, insert rows, read their count back; returns the count."""
    client = get_client(settings.clickhouse_url, settings.clickhouse_user, settings.clickhouse_password)
    table = f"smoke_{uuid.uuid4().hex[:8]}"
    client.command(f"CREATE TABLE {table} (id UInt32, name String) ENGINE = MergeTree ORDER BY id")
    try:
        client.insert(table, [[i, f"row{i}"] for i in range(1000)], column_names=["id", "name"])
        return int(client.query(f"SELECT count() FROM {table}").result_rows[0][0])
    finally:
        client.command(f"DROP TABLE IF EXISTS {table}")


def run_smoke(settings: Settings, echo: Callable[[str], None]) -> None:
    """Start the servers unless a stack already runs, check both, stop what we started."""
    started_here = not stack.running(settings)
    if started_here:
        stack.start(settings, stack.plan(settings, with_services=False), echo=echo)
    try:
        seconds = kafka_round_trip(settings)
        echo(f"kafka round trip: 100 messages produced and consumed in a group in {seconds:.2f}s")
        rows = clickhouse_round_trip(settings)
        echo(f"clickhouse query: inserted 1000 rows into a MergeTree table, SELECT count() = {rows}")
        if rows != 1000:
            raise JourneyError(f"ClickHouse returned {rows} rows, expected 1000")
    finally:
        if started_here:
            echo(f"stopped: {', '.join(stack.stop(settings))}")
    echo("smoke check passed")
