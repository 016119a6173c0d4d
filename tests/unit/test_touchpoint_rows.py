"""The sink's Avro fast path, pure part: which versions go fast, grouping, the container it sends."""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass

import fastavro

from consumers.touchpoint_rows import build_insert, fast_prefixes, fast_schema, split
from infra.base.config import Settings
from schemas.codec import decode, encode, encode_with
from schemas.registry import get_registry, load_registry
from tests.unit.test_codec import make_event

TOPICS = Settings().topics
NOW = 1763899200000 + 3_600_000


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    value: bytes | None


def touchpoint(offset: int, partition: int = 0, **extra: object) -> Message:
    value = encode("touchpoint", make_event(event_id=f"e-{offset}", **extra))
    return Message(TOPICS.touchpoints, partition, offset, value)


def test_container_of_raw_bodies_reads_back_as_the_events_with_their_partition_and_offset() -> None:
    messages = [touchpoint(7, 1), touchpoint(8, 3, attrs={}, customer_id=None, promised_within_s=None)]
    (group,), rest = split(messages, fast_prefixes(), TOPICS.touchpoints)
    assert rest == [] and group.messages == messages
    sql, body = build_insert(group, NOW)
    records = list(fastavro.reader(io.BytesIO(body)))  # a real Avro container, readable by any reader
    assert len(records) == 2
    for record, message in zip(records, messages, strict=True):
        head = record.pop("_head")
        assert int.from_bytes(head[:2], "little") == message.partition
        assert int.from_bytes(head[2:10], "little") == message.offset
        assert int.from_bytes(head[10:], "little", signed=True) == -1  # no record timestamp: received_at NULL
        assert record.pop("_tail")[-len(head):] == head
        record["occurred_at"] = int(record["occurred_at"].timestamp() * 1000)
        assert record == decode(message.value, "touchpoint")
    assert sql.startswith("INSERT INTO journey.touchpoints (") and sql.endswith("FORMAT Avro")
    assert str(NOW + 24 * 3600 * 1000) in sql and "{max_ms}" not in sql


def test_other_topics_unknown_ids_and_bad_framing_go_to_the_decoder() -> None:
    incident_on_touchpoints = Message(TOPICS.touchpoints, 0, 3, b"\x00\x00\x00\x00\x02x")  # schema id 2: incident
    garbage = Message(TOPICS.touchpoints, 0, 4, b"\x7bnot avro")
    tombstone = Message(TOPICS.touchpoints, 0, 5, None)
    elsewhere = Message(TOPICS.incidents, 0, 6, touchpoint(6).value)
    good = [touchpoint(1), touchpoint(2, 1)]
    groups, rest = split([good[0], incident_on_touchpoints, garbage, tombstone, elsewhere, good[1]], fast_prefixes(),
                         TOPICS.touchpoints)
    assert [g.messages for g in groups] == [good]
    assert rest == [incident_on_touchpoints, garbage, tombstone, elsewhere]


def test_older_writers_go_fast_when_they_read_the_same_newer_ones_with_unknown_fields_do_not(touchpoint_v2) -> None:
    registry, v1_id, v2_id = touchpoint_v2
    assert fast_schema(v1_id, registry) is not None  # v2's new field defaults to NULL, its enum is a superset
    assert fast_schema(v2_id, registry) is None  # `device` has no column check here: decoded in Python
    older = [v.id for v in registry.versions("touchpoint") if v.id != v2_id]  # v1 and the checked-in v2
    assert v1_id in older and set(fast_prefixes(registry)) == {b"\x00" + i.to_bytes(4, "big") for i in older}
    v2_message = Message(TOPICS.touchpoints, 0, 1, encode_with(v2_id, make_event(device="kiosk"), registry))
    assert split([v2_message], fast_prefixes(registry), TOPICS.touchpoints)[1] == [v2_message]


def test_a_writer_that_misses_a_field_without_a_null_default_is_decoded_in_python() -> None:
    registry = load_registry()
    v1 = registry.latest("touchpoint")
    raw = copy.deepcopy(v1.raw)
    raw["fields"] = [f for f in raw["fields"] if f["name"] != "attrs"]
    registry.register(1002, "touchpoint", 0, raw)  # an "older" writer without attrs ...
    newer = copy.deepcopy(v1.raw)
    next(f for f in newer["fields"] if f["name"] == "attrs")["default"] = {"origin": "v0"}
    registry.register(1003, "touchpoint", 9, newer)  # ... read by a latest whose default is not the column's
    assert fast_schema(1002, registry) is None
    assert fast_schema(v1.id, registry) is not None


def test_the_checked_in_touchpoint_version_goes_fast() -> None:
    assert fast_schema(get_registry().latest("touchpoint").id) is not None
