"""Faust's aiokafka transport, handing fetched batches of chosen topics over whole.

Faust delivers every fetched message on its own: `Consumer._drain_messages` runs two tasks and
an `asyncio.wait` per message, then the conductor builds an `Event`, queues it, and the stream
sets it current, tracks and acks it. Profiled in the worker, that machinery took ~75% of its
busy time, decoding and detecting under 10% (see BENCHMARKS.md).

For topics given a batch handler (`BatchApp.batch_handlers`), this consumer hands each
fetched batch over as one list of messages; every other topic (table changelogs during
recovery, ...) takes Faust's usual path. Faust still owns group membership, assignment,
flow control during rebalances, offsets and commits: the handler acks its messages
(`consumer.ack`) once the batch's effects are produced, so a commit never covers work that is
not out.

The handler must apply each partition's records in offset order, without a gap, from where
Faust last sought to (the committed offsets, at the end of every rebalance): records fetched
before that seek can still be handed over after it, in the same generation, from wherever the
fetcher had started. `PartitionSequence` keeps only the next records of each partition.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar, cast

import aiokafka
import faust
from aiokafka.errors import IllegalStateError
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

log = logging.getLogger("journey.batch_consumer")

BatchHandler = Callable[[list[Message]], Awaitable[None]]


class ShortWaitConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust hard-codes fetch_max_wait_ms=1500; Tansu holds an empty fetch that long, so a
    failing event could wait up to 1.5 s before the worker sees it. A short wait keeps alert
    latency low (at the cost of more, empty fetches)."""

    fetch_max_wait_ms: ClassVar[int] = 20

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = self.fetch_max_wait_ms  # read by start() to build its fetcher
        return consumer


class BatchConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer; messages of topics in the app's `batch_handlers` go to their
    handler in batches (handlers are registered on the app before the consumer starts)."""

    @property
    def batch_handlers(self) -> dict[str, BatchHandler]:
        return cast(dict[str, BatchHandler], self.app.batch_handlers)

    @property
    def sequence(self) -> PartitionSequence:
        """Where each batch-topic partition goes on (see `PartitionSequence`)."""
        try:
            return self._journey_sequence  # type: ignore[has-type,no-any-return]
        except AttributeError:
            self._journey_sequence = PartitionSequence()
            return self._journey_sequence

    async def seek_to_committed(self) -> Mapping[TP, int]:
        """Faust's seek at the end of each rebalance (or when a fetch outlives the flow): every
        batch-topic partition is applied from here on, in order."""
        offsets = await super().seek_to_committed()
        resume = {TP(tp.topic, tp.partition): offset for tp, offset in offsets.items()
                  if tp.topic in self.batch_handlers}
        self.sequence.restart(resume)
        log.info("resuming at %s", {tp.partition: offset for tp, offset in sorted(resume.items())})
        return offsets

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return ShortWaitConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - runs in the worker
        """Faust's fetch loop (`Consumer._drain_messages`), with batches for our topics."""
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                await self.sleep(0)
                batches: dict[str, list[Message]] = {}
                async for tp, message in self.getmany(timeout=1.0):
                    offset = message.offset
                    if self._commit_every is not None and self._n_acked >= self._commit_every:
                        self._n_acked = 0
                        await self.commit()
                    if message.topic in self.batch_handlers:  # the handler keeps them in sequence
                        read_offset[tp] = offset
                        batches.setdefault(message.topic, []).append(message)
                        continue
                    last = read_offset[tp]
                    if last is not None and offset < last:
                        continue  # read before (Faust drops these too)
                    if last and offset - last > 1 and acks_enabled_for(message.topic):
                        await self._add_gap(tp, last + 1, offset)  # compacted or transactional gap
                    read_offset[tp] = offset
                    await self.wait_first(self.callback(message), self.suspend_flow.wait())
                for topic, messages in batches.items():
                    await self.batch_handlers[topic](messages)
        except (*self.consumer_stopped_errors, asyncio.CancelledError):
            if self.transport.app.should_stop:
                return  # stopping: as Faust's own loop does
            raise


class PartitionSequence:
    """Keeps each partition's records in offset order, without a gap, from a restart point.

    After a rebalance, records the fetcher got before Faust's seek to the committed offsets can
    still be handed over, in the same generation, from further on. Applied first, they moved a
    partition's event time far past the journeys still to be read there: false breaches and
    incidents counted twice (test_second_worker_joins_and_leaves_mid_run[own]). `take` drops
    them and names the partition to seek back; records below the expected offset were applied
    before. A jump still there after a seek back means the log lost those records (retention):
    it is taken, with a warning.
    """

    def __init__(self) -> None:
        self.expected: dict[TP, int] = {}  # next offset to apply; none known: whatever comes
        self._sought: dict[TP, int] = {}  # offset a partition was last sought back to

    def restart(self, offsets: Mapping[TP, int | None]) -> None:
        """Reading resumes at `offsets` (a partition missing or None: where its reset policy says)."""
        self.expected = {tp: offset for tp, offset in offsets.items() if offset is not None and offset >= 0}
        self._sought.clear()

    def take(self, messages: list[Message]) -> tuple[list[Message], dict[TP, int]]:
        """The messages next in their partition, and the partitions to seek back (to the offset)."""
        taken: list[Message] = []
        seek: dict[TP, int] = {}
        behind: dict[TP, int] = {}
        for message in messages:
            tp, offset = message.tp, message.offset
            if tp in seek:
                continue
            want = self.expected.get(tp)
            if want is not None and offset != want:
                if offset < want:
                    behind[tp] = behind.get(tp, 0) + 1
                    continue
                if self._sought.get(tp) != want:
                    seek[tp] = self._sought[tp] = want
                    continue
                log.warning("%s: offsets %d..%d are gone from the log; going on from %d", tp, want, offset - 1, offset)
            self.expected[tp] = offset + 1
            taken.append(message)
        for tp, n in behind.items():
            log.info("%s: %d records below offset %d skipped (applied before)", tp, n, self.expected[tp])
        return taken, seek


class BatchTransport(faust_aiokafka.Transport):
    """The aiokafka transport with `BatchConsumer`."""

    Consumer = BatchConsumer


class BatchApp(faust.App):
    """A Faust app whose consumer hands the fetched batches of chosen topics to handlers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_handlers: dict[str, BatchHandler] = {}

    def _new_transport(self) -> BatchTransport:
        return BatchTransport(self.conf.broker_consumer, self)


async def seek_back(app: Any, partitions: dict[TP, int]) -> None:
    """Seek the partitions `PartitionSequence.take` found records ahead in back to the offset expected next."""
    for tp, offset in partitions.items():
        log.info("%s: records fetched ahead of offset %d dropped; reading again from there", tp, offset)
        try:
            await app.consumer.seek(tp, offset)
        except IllegalStateError:  # no longer assigned: the next owner starts from the committed offset
            pass


def current_messages(app: Any, messages: list[Message]) -> list[Message]:
    """The messages still ours to process: fetched in this generation, of an assigned partition.

    After a rebalance Faust seeks to the committed offsets, so what is dropped here is read
    again by whoever owns its partition now (Faust's own `getmany` drops them the same way).
    """
    generation = app.consumer_generation_id
    assigned = cast(set[TP], app.consumer.assignment())
    return [m for m in messages if m.generation_id == generation and m.tp in assigned]
