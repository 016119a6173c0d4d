"""Concurrent requests' records, coalesced into one aiokafka record batch per partition at a time.

aiokafka's per-message `send` pays a future, a size estimate and an accumulator round per
message; building record batches ourselves took the collector benchmark from ~8.6k to ~15k
events/s. But `send_batch` lets one batch per partition wait in the accumulator: concurrent
callers poll for the slot and its timeout shrinks by the *total* time waited on every round
(aiokafka 0.14 `add_batch`), so under load healthy requests failed with KafkaTimeoutError.
Here one task per partition owns that slot: records that arrive while it waits join the next
batch, and every request gets a future that resolves when the broker acknowledged its records.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from functools import partial

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

PARTITIONER = DefaultPartitioner()  # murmur2 of the key, as kafka-python's emitter and Java clients

Record = tuple[bytes, bytes]  # key, value


class _Feed:
    """The records waiting for one partition, and the task that hands them to the producer."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, partition: int) -> None:
        self.producer, self.topic, self.partition = producer, topic, partition
        self.records: list[Record] = []
        self.waiters: list[asyncio.Future[None]] = []
        self.task: asyncio.Task[None] | None = None

    def add(self, records: list[Record]) -> asyncio.Future[None]:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.records += records
        self.waiters.append(waiter)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._drain())
        return waiter

    async def _drain(self) -> None:
        while self.records:
            records, waiters = self.records, self.waiters
            self.records, self.waiters = [], []
            try:
                delivered = [await self.producer.send_batch(batch, self.topic, partition=self.partition)
                             for batch in self._batches(records)]
            except Exception as exc:  # noqa: BLE001 - whatever it is, these requests must hear of it
                _settle(waiters, exc)
                continue
            asyncio.gather(*delivered).add_done_callback(partial(_settle_from, waiters))

    def _batches(self, records: list[Record]) -> list[object]:
        batches = [self.producer.create_batch()]
        for key, value in records:
            if batches[-1].append(key=key, value=value, timestamp=None) is None:  # full: start another
                batches[-1].close()
                batches.append(self.producer.create_batch())
                batches[-1].append(key=key, value=value, timestamp=None)
        batches[-1].close()
        return batches


def _settle(waiters: list[asyncio.Future[None]], exc: BaseException | None) -> None:
    for waiter in waiters:
        if waiter.done():
            continue
        if exc is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(exc)
            waiter.exception()  # retrieved here: a request that gave up (503) must not log a warning


def _settle_from(waiters: list[asyncio.Future[None]], delivered: asyncio.Future[object]) -> None:
    if delivered.cancelled():  # only when the producer is torn down under it
        _settle(waiters, RuntimeError("the producer stopped before the broker answered"))
    else:
        _settle(waiters, delivered.exception())


class PartitionFeeds:
    """`send(records)` -> one future per partition touched, done when the broker acknowledged them."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self.producer, self.topic = producer, topic
        self.feeds: dict[int, _Feed] = {}

    async def send(self, records: Sequence[Record]) -> list[asyncio.Future[None]]:
        partitions = sorted(await self.producer.partitions_for(self.topic))
        by_partition: dict[int, list[Record]] = {}
        for key, value in records:
            by_partition.setdefault(PARTITIONER(key, partitions, partitions), []).append((key, value))
        return [self.send_to(p, items) for p, items in by_partition.items()]

    def send_to(self, partition: int, records: list[Record]) -> asyncio.Future[None]:
        """Records the caller already assigned to `partition` (`journey emit --file`: its own cached murmur2)."""
        return self._feed(partition).add(records)

    def _feed(self, partition: int) -> _Feed:
        feed = self.feeds.get(partition)
        if feed is None:
            feed = self.feeds[partition] = _Feed(self.producer, self.topic, partition)
        return feed
