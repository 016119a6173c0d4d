"""Quarantine of unreadable record batches, on real record bytes through both clients' fetch code (no broker)."""

from __future__ import annotations

import os
import struct
from typing import Any

import kafka.record.default_records as kafka_records
import pytest
from aiokafka.consumer.fetcher import READ_UNCOMMITTED
from aiokafka.consumer.fetcher import PartitionRecords as AioPartitionRecords
from aiokafka.record.memory_records import MemoryRecords as AioMemoryRecords
from aiokafka.structs import TopicPartition as AioTP
from kafka.consumer.fetcher import Fetcher
from kafka.record.memory_records import MemoryRecords as KafkaMemoryRecords
from kafka.structs import TopicPartition

from consumers.pipeline_health import QUARANTINE_PAGE_S, quarantine_problems
from infra.base import quarantine
from infra.base.quarantine import QuarantinedBatch, install


def batch(base: int, values: list[bytes], codec: int = 0, garbage: bool = False, bad_crc: bool = False) -> bytes:
    """One v2 record batch at `base` (as a broker stores it); `garbage`: a payload that does not decompress."""
    original = kafka_records.gzip_encode
    if garbage:
        kafka_records.gzip_encode = lambda payload, *a, **k: os.urandom(max(8, len(payload) // 2))
    try:
        builder = kafka_records.DefaultRecordBatchBuilder(magic=2, compression_type=codec, is_transactional=False,
                                                          producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                                          batch_size=1 << 20)
        for i, value in enumerate(values):
            builder.append(i, timestamp=1_700_000_000_000, key=None, value=value, headers=[])
        data = bytearray(builder.build())
    finally:
        kafka_records.gzip_encode = original
    struct.pack_into(">q", data, 0, base)  # the base offset is outside the CRC, like the broker sets it
    if bad_crc:
        data[-1] ^= 0xFF
    return bytes(data)


# offsets 0-1 fine, 2-4 a gzip batch that does not decompress, 5 fine, 6-7 a CRC mismatch, 8 fine
LOG = (batch(0, [b"a", b"b"]) + batch(2, [b"x" * 300] * 3, codec=1, garbage=True) + batch(5, [b"c"])
       + batch(6, [b"d", b"e"], bad_crc=True) + batch(8, [b"f"]))


@pytest.fixture(autouse=True)
def fresh_quarantine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quarantine, "QUARANTINE", quarantine.Quarantine())
    install()


def assert_quarantined() -> None:
    batches = quarantine.QUARANTINE.take()
    assert [(b.topic, b.partition, b.first_offset, b.last_offset) for b in batches] == [("t", 3, 2, 4), ("t", 3, 6, 7)]
    assert "BadGzipFile" in batches[0].error and "CRC" in batches[1].error
    assert "offsets 2..4" in batches[0].reason


def test_aiokafka_consumer_reads_around_unreadable_batches() -> None:
    records = AioPartitionRecords(AioTP("t", 3), AioMemoryRecords(LOG), [], 0, None, None, True, READ_UNCOMMITTED)
    assert [(r.offset, r.value) for r in records] == [(0, b"a"), (1, b"b"), (5, b"c"), (8, b"f")]
    assert records.next_fetch_offset == 9  # the position moves past everything, bad batches included
    assert_quarantined()


def test_kafka_python_consumer_reads_around_unreadable_batches() -> None:
    records = Fetcher.PartitionRecords(0, TopicPartition("t", 3), KafkaMemoryRecords(LOG))
    assert [(r.offset, r.value) for r in records.take()] == [(0, b"a"), (1, b"b"), (5, b"c"), (8, b"f")]
    assert records.next_fetch_offset == 9
    assert_quarantined()


def test_a_bad_batch_last_in_the_fetch_still_moves_the_position() -> None:
    records = AioPartitionRecords(AioTP("t", 3), AioMemoryRecords(batch(2, [b"x" * 300] * 3, codec=1, garbage=True)),
                                  [], 2, None, None, True, READ_UNCOMMITTED)
    assert list(records) == [] and records.next_fetch_offset == 5


def test_a_batch_fetched_again_is_reported_once() -> None:
    for _ in range(2):
        list(AioPartitionRecords(AioTP("t", 3), AioMemoryRecords(LOG), [], 0, None, None, True, READ_UNCOMMITTED))
    assert len(quarantine.QUARANTINE.take()) == 2 and quarantine.QUARANTINE.count == 2


def test_page_names_the_cause_and_resolves_after_the_window() -> None:
    q = QuarantinedBatch("touchpoints", 1, 10, 12, "BadGzipFile: Not a gzipped file", at=1_000_000)
    summary: dict[str, Any] = {"count": 1, "last": {"at": q.at}, "reason": q.reason}
    snapshot = {"quarantine": {"worker-0": summary}}
    problem = quarantine_problems(snapshot, q.at + 1000)["worker-0 quarantine"]
    assert problem and "touchpoints[1]" in problem and "10..12" in problem and "BadGzipFile" in problem
    assert quarantine_problems(snapshot, q.at + QUARANTINE_PAGE_S * 1000 + 1) == {"worker-0 quarantine": None}

