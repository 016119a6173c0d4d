"""The sink's pure part: Kafka messages -> ClickHouse columns, skips, and the offsets to commit."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from aiokafka import TopicPartition

from consumers.sink import INCIDENT_COLUMNS, TOUCHPOINT_COLUMNS, next_offsets, to_rows
from infra.base.config import Settings
from schemas.codec import encode
from tests.unit.test_codec import make_event

NOW = 1763899200000 + 3_600_000
SETTINGS = Settings()


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    value: bytes


def touchpoint(offset: int, partition: int = 0, **extra: object) -> Message:
    event = make_event(event_id=f"e-{offset}", **extra)
    return Message(SETTINGS.topics.touchpoints, partition, offset, encode("touchpoint", event))


def test_touchpoints_become_columns_with_their_partition_and_offset() -> None:
    batch = to_rows(SETTINGS, [touchpoint(7, 1), touchpoint(8, 1, attrs={"table": "4"})], NOW)
    assert len(batch) == 2 and batch.skipped == 0
    columns = dict(zip(TOUCHPOINT_COLUMNS, batch.touchpoints, strict=True))
    assert columns["event_id"] == ["e-7", "e-8"]
    assert columns["attrs"] == [{"item": "spoon"}, {"table": "4"}]
    assert columns["kafka_partition"] == [1, 1] and columns["kafka_offset"] == [7, 8]
    assert [name for name, _, _ in batch.tables()] == ["touchpoints"]


def test_undecodable_and_contract_breaking_messages_are_skipped_and_counted() -> None:
    garbage = Message(SETTINGS.topics.touchpoints, 0, 2, b"\x7bnot avro")
    far_future = touchpoint(3, occurred_at=NOW + 3 * 86_400_000)
    empty_id = touchpoint(4, journey_id="")
    batch = to_rows(SETTINGS, [touchpoint(1), garbage, far_future, empty_id, touchpoint(5)], NOW)
    assert batch.skipped == 3
    columns = dict(zip(TOUCHPOINT_COLUMNS, batch.touchpoints, strict=True))
    assert columns["event_id"] == ["e-1", "e-5"] and columns["kafka_offset"] == [1, 5]


def test_incidents_go_to_their_own_table() -> None:
    from tests.bench.sink_bench import incident

    record = incident(1, NOW)
    message = Message(SETTINGS.topics.incidents, 2, 40, encode("incident", record))
    batch = to_rows(SETTINGS, [message, touchpoint(1)], NOW)
    assert [name for name, _, _ in batch.tables()] == ["touchpoints", "incidents"]
    assert dict(zip(INCIDENT_COLUMNS, batch.incidents, strict=True))["incident_id"] == [record["incident_id"]]
    assert len(batch) == 2


def test_offsets_to_commit_are_each_partitions_last_plus_one() -> None:
    messages = [touchpoint(5, 0), touchpoint(9, 1), touchpoint(6, 0), touchpoint(10, 1)]
    assert next_offsets(messages) == {TopicPartition(SETTINGS.topics.touchpoints, 0): 7,
                                      TopicPartition(SETTINGS.topics.touchpoints, 1): 11}


def test_customer_profiles_become_rows_and_garbage_is_skipped() -> None:
    from consumers.sink import CUSTOMER_COLUMNS

    profile = {"customer_id": "c-1", "version": 3, "first_seen": NOW - 10, "last_visit": NOW, "journeys": 4,
               "incidents": 1, "recovered": 1, "regular": True}
    messages = [Message(SETTINGS.topics.customers, 0, 0, orjson.dumps(profile)),
                Message(SETTINGS.topics.customers, 0, 1, b"not json"),
                Message(SETTINGS.topics.customers, 0, 2, orjson.dumps({"customer_id": "c-2"}))]
    batch = to_rows(SETTINGS, messages, NOW)
    assert batch.customers == [[profile[c]] for c in CUSTOMER_COLUMNS] and batch.skipped == 2
