"""Faust's aiokafka transport, handing fetched batches of chosen topics over whole -- and the one
module that touches Faust's internals (private attributes, patched methods, the current-event
context). `FAUST_VERSION` is the release it was written against; tests/unit/test_faust_runtime.py
pins it and checks every internal used here still exists, so an upgrade fails there first.

Faust delivers every fetched message on its own: `Consumer._drain_messages` runs two tasks and
an `asyncio.wait` per message, then the conductor builds an `Event`, queues it, and the stream
sets it current, tracks and acks it. Profiled in the worker, that machinery took ~75% of its
busy time, decoding and detecting under 10% (see BENCHMARKS.md).

For topics given a batch handler (`BatchApp.batch_handlers`), this consumer hands each
fetched batch over as one list of messages; every other topic (table changelogs during
recovery, ...) takes Faust's usual path. Faust still owns group membership, assignment,
flow control during rebalances, offsets and commits: the handler acks its messages
(`BatchConsumer.ack_all`) once the batch's effects are produced, so a commit never covers work that is
not out.

The handler must apply each partition's records in offset order, without a gap, from where
Faust last sought to (the committed offsets, at the end of every rebalance): records fetched
before that seek can still be handed over after it, in the same generation, from wherever the
fetcher had started. `PartitionSequence` keeps only the next records of each partition.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, cast

import aiokafka
import faust
from aiokafka.errors import IllegalStateError, ProducerClosed
from faust.stores.rocksdb import Store as RocksDBStore
from faust.streams import _current_event
from faust.tables.recovery import Recovery
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message
from faust.types.tuples import ack_lock
from mode.utils.futures import notify
from rocksdict import WriteBatch

from infra.base.config import Settings
from infra.base.kafka import last_offsets_from

log = logging.getLogger("journey.batch_consumer")

FAUST_VERSION = "0.15.3"
ACK_POLL_S = 0.005

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
        log.info("resuming at %s", {f"{tp.topic}[{tp.partition}]": offset for tp, offset in sorted(resume.items())})
        return offsets

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return ShortWaitConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - runs in the worker
        """Faust's fetch loop (`Consumer._drain_messages` over `Consumer.getmany`), with batches
        for our topics: each fetched partition of a batch topic becomes messages in one list
        comprehension, its checks made once per partition instead of per record through Faust's
        round-robin generator (that generator and the per-record checks cost ~8% of the worker's
        CPU on the detect path, BENCHMARKS.md). Other topics take Faust's per-record path."""
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        handlers = self.batch_handlers  # registered before the consumer starts (a property: once, not per message)
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                await self.sleep(0)
                if self._commit_every is not None and self._n_acked >= self._commit_every:
                    self._n_acked = 0
                    await self.commit()
                records, active = await self._wait_next_records(1.0)  # waits: no busy loop while stopping
                if records is None or self.should_stop:
                    continue
                if not self.flow_active:  # as `getmany`: a rebalance began; back to the committed offsets
                    await self._seek_when_flow_stopped()
                    continue
                batches, others = self._fetched_batches(records, active, handlers)
                if others:
                    await self._deliver_one_by_one(others)
                for topic, messages in batches.items():
                    await handlers[topic](messages)
        except (*self.consumer_stopped_errors, asyncio.CancelledError):
            if self.transport.app.should_stop:
                return  # stopping: as Faust's own loop does
            raise

    def _fetched_batches(self, records: Mapping[TP, list[Any]], active: set[TP] | None,
                         handlers: Mapping[str, BatchHandler]) -> tuple[dict[str, list[Message]], dict[TP, list[Any]]]:
        """(messages of each batch topic, in offset order per partition; the other topics' records).
        What `getmany` checks per record, once per partition: no await runs in between, so the
        generation and the flow cannot change meanwhile (the handler checks both again)."""
        batches: dict[str, list[Message]] = {}
        others: dict[TP, list[Any]] = {}
        to_message, read_offset = self._to_message, self._read_offset
        for tp, fetched in records.items():
            if not fetched or (active is not None and tp not in active and tp not in self._buffered_partitions):
                continue  # paused meanwhile: as `getmany`, not handed over (read again when resumed)
            if tp.topic not in handlers:
                others[tp] = fetched
                continue
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            batches.setdefault(tp.topic, []).extend([to_message(tp, record) for record in fetched])
            read_offset[tp] = fetched[-1].offset  # the handler keeps them in sequence
        return batches, others

    async def _deliver_one_by_one(self, records: Mapping[TP, list[Any]]) -> None:
        """Records of topics without a batch handler (table changelogs during recovery, ...):
        Faust's own per-record path, round robin over the topics as `getmany`."""
        generation_id = self.app.consumer_generation_id
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        for tp, record in self.scheduler.iterate(records):
            if not self.flow_active or self.app.consumer_generation_id != generation_id:
                return  # as `getmany`: the rest is read again after the rebalance
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            message = self._to_message(tp, record)
            offset = message.offset
            last = read_offset[tp]
            if last is not None and offset < last:
                continue  # read before (Faust drops these too)
            if last and offset - last > 1 and acks_enabled_for(message.topic):
                await self._add_gap(tp, last + 1, offset)  # compacted or transactional gap
            read_offset[tp] = offset
            await self.wait_first(self.callback(message), self.suspend_flow.wait())

    async def _seek_when_flow_stopped(self) -> None:
        try:
            await self.perform_seek()
        except Exception as exc:  # as `getmany`
            log.warning("exception performing seek when flow not active %s", exc)

    def ack_all(self, messages: list[Message]) -> None:
        """`ack` of each message, in one pass under Faust's ack lock (per message, `ack` took the
        lock, looked the topic's acking up and woke the ack waiters each time)."""
        if not messages:
            return
        acks_enabled_for = self.app.topics.acks_enabled_for
        committed_of, index_of, acked_of = self._committed_offset, self._acked_index, self._acked
        unacked = self._unacked_messages
        enabled: dict[str, bool] = {}
        with ack_lock:
            try:
                for message in messages:
                    if message.acked:
                        continue
                    message.acked = True
                    topic = message.topic
                    on = enabled.get(topic)
                    if on is None:
                        on = enabled[topic] = acks_enabled_for(topic)
                    if not on:
                        continue
                    tp, offset = message.tp, message.offset
                    committed = committed_of[tp]
                    if committed is None or offset >= committed:
                        acked_index = index_of[tp]
                        if offset not in acked_index:
                            unacked.discard(message)
                            acked_index.add(offset)
                            acked_of[tp].append(offset)
                            self._n_acked += 1
            finally:
                notify(self._waiting_for_ack)


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


# ---- the rest of what the worker needs from Faust's internals ----------------------------------


def mark_processing(app: Any, messages: list[Message]) -> None:
    """Tell Faust's monitor the partitions of `messages` are being processed. Its per-partition
    check (`verify_event_path`) reads the time a stream last took an event; batches bypass the
    streams, so every busy partition was logged as an ERROR "Stream has not started processing"
    after `stream_processing_timeout`, and a real stall could not be told from that noise."""
    if app.monitor is not None:
        now = time.monotonic()
        for tp in {message.tp for message in messages}:
            app.monitor.stream_inbound_time[tp] = now


def true_changelog_ends(settings: Settings) -> None:
    """Faust restores a table from its changelog up to the partition's reported end and then
    calls it done. Tansu reports the base offset of the last record batch + 1, so the rest of
    that batch -- the newest states -- would never be restored (incidents lost, false alarms,
    after a restart or a rebalance). Read the real last offsets instead."""
    original = Recovery._build_highwaters
    if getattr(original, "_journey_tansu", False):
        return

    async def build_highwaters(self: Any, consumer: Any, tps: Any, destination: Any, title: str) -> None:
        await original(self, consumer, tps, destination, title)
        starts = {(tp.topic, tp.partition): destination[tp] for tp in tps}
        last = await asyncio.get_running_loop().run_in_executor(None, last_offsets_from, settings, starts)
        moved = {}
        for tp in tps:
            moved[f"{tp.topic}[{tp.partition}]"] = (destination[tp], last[(tp.topic, tp.partition)])
            destination[tp] = last[(tp.topic, tp.partition)]
        log.info("%s changelogs: restored up to (reported, last read) %s", title, moved)

    build_highwaters._journey_tansu = True  # type: ignore[attr-defined]
    Recovery._build_highwaters = build_highwaters  # type: ignore[method-assign]


@dataclass
class _Message:
    topic: str
    partition: int


class _PartitionContext:
    """Stands in for a Faust event so a table write lands in `partition`'s store and changelog.

    Faust tables find the partition of a write through the *current event*; in a batch (or in
    a timer) that is not the event whose key we write, so we point it at the right one.
    """

    def __init__(self, topic: str, partition: int) -> None:
        self.message = _Message(topic, partition)


@contextmanager
def writing_partition(topic: str, partition: int) -> Iterator[None]:
    context = _PartitionContext(topic, partition)
    token = _current_event.set(weakref.ref(context))  # type: ignore[arg-type]
    try:
        yield
    finally:
        _current_event.reset(token)


def handing_over(app: Any) -> bool:
    """A rebalance or a shutdown has begun: our partitions may be restored elsewhere as soon as
    we let go of them, so no table may change any more."""
    return bool(app.rebalancing or app.should_stop)


async def drain_producer(app: Any) -> None:
    """Everything sent so far is with the broker: Faust's buffer drained (its own flush gives
    up after 0.1 s without progress), then the producer's batches delivered."""
    while app.producer.buffer.size:
        await asyncio.sleep(ACK_POLL_S)
    await app.producer.flush()


async def rebalanced(app: Any) -> None:
    """Wait out a rebalance in progress: until it ends, the table of a newly assigned partition
    may not be restored from its changelog yet (Faust never clears `recovery.completed` once
    set, so that event alone does not tell)."""
    while app.rebalancing:
        await asyncio.sleep(0.01)


def recovered(app: Any) -> bool:
    """Tables restored from their changelogs (at least once)."""
    return bool(app.tables.recovery.completed.is_set())


def highwater(app: Any, topic: str, partition: int) -> int | None:
    """The partition's end offset as the consumer knows it; None when revoked meanwhile."""
    try:
        return cast(int | None, app.consumer.highwater(TP(topic, partition)))
    except (IllegalStateError, AssertionError):
        return None


def partition_count(app: Any, topic: str) -> int | None:
    """Partitions of `topic` in the consumer's cluster metadata (None: not known yet)."""
    return cast(int | None, app.consumer.topic_partitions(topic))


def assigned(app: Any, topic: str) -> set[int]:
    return {tp.partition for tp in app.consumer.assignment() if tp.topic == topic}


async def flow_open(app: Any) -> None:
    """Wait while Faust holds the flow (a rebalance under way)."""
    await app.flow_control.acquire()


def generation(app: Any) -> int:
    """Changes with every rebalance of this worker."""
    return int(app.rebalancing_count)


def resume_offset(app: Any, topic: str, partition: int) -> int:
    """Where applying an assigned batch-topic partition resumes in this generation: the committed
    offset Faust sought to at the end of the rebalance (`PartitionSequence.restart`), or 0 without
    one (the reset policy reads from the start).

    Not the consumer's position: the fetcher runs ahead of what has been handed over, by
    thousands of records under load. Intake resumed a source partition's clock from there, so its
    first marks put that source's event time past records it had still to send: deadlines fired
    before their on-time fulfilments arrived (false breaches after every rebalance under load,
    test_second_worker_joins_and_leaves_mid_run: resumed at 4,537 with 4,092 committed)."""
    return app.consumer.sequence.expected.get(TP(topic, partition), 0)


async def send_records(app: Any, topic: str, records: list[tuple[int, bytes | None, bytes | None]]) -> list[Any]:
    """Send (partition, key, value) records as one record batch per partition, in order; returns
    the delivery futures. Faust's per-message `send` cost more than detecting (~15 us each)."""
    return [future for future, _ in await _send_batches(app, topic, records)]


async def send_keyed(app: Any, topic: str, records: list[tuple[bytes, bytes]]) -> list[Any]:
    """Send (key, value) records, each to the partition the producer's own partitioner gives its
    key (where `producer.send` puts it), as one record batch per partition, in order; returns the
    delivery futures. Per record, Faust's and aiokafka's `send` cost ~2% of the worker's CPU."""
    if not records:
        return []
    producer = app.producer._ensure_producer()
    await producer.client._wait_on_metadata(topic)  # as `send` does: the partitioner needs the partitions
    partition = producer._partition
    return await send_records(app, topic, [(partition(topic, None, key, value, key, value), key, value)
                                           for key, value in records])


def _record_batches(producer: Any, records: list[tuple[int, bytes | None, bytes | None]]) -> list[tuple[int, Any, int]]:
    """(partition, record batch, record count) for (partition, key, value) records: each
    partition's records in order, in as many of the producer's batches as they fill."""
    by_partition: dict[int, list[tuple[bytes | None, bytes | None]]] = {}
    for partition, key, value in records:
        by_partition.setdefault(partition, []).append((key, value))
    batches = []
    for partition, items in by_partition.items():
        batch, count = producer.create_batch(), 0
        for key, value in items:
            if batch.append(key=key, value=value, timestamp=None) is None:  # full: close it, start another
                batches.append((partition, batch, count))
                batch, count = producer.create_batch(), 0
                batch.append(key=key, value=value, timestamp=None)
            count += 1
        batches.append((partition, batch, count))
    return batches


async def _send_batches(app: Any, topic: str,
                        records: list[tuple[int, bytes | None, bytes | None]]) -> list[tuple[Any, int]]:
    """`send_records`, with the number of records behind each future (a batch's future resolves
    to its first record's offset)."""
    producer = app.producer._ensure_producer()
    return [(await producer.send_batch(batch, topic, partition=partition), count)
            for partition, batch, count in _record_batches(producer, records)]


async def write_table(app: Any, table: Any, writes: list[tuple[int, bytes, bytes | None]]) -> None:
    """Write (partition, key, value) to a bytes-valued table: None deletes the key. What
    `table[key] = value` (or `table.pop(key)`) in `writing_partition` does per key -- a changelog
    message through Faust's producer buffer, a RocksDB put, and, once delivered, a put of the
    changelog offset -- done per batch on a RocksDB store: one RocksDB write batch per partition,
    the changelog records as record batches per partition (straight to aiokafka: the producer's
    flush covers them), and the changelog offset once per record batch when it is delivered (as
    Faust's own callback does: the restore after a restart starts after it). Measured ~10% of the
    worker's CPU per key the Faust way (BENCHMARKS.md). Other stores take the per-key path.

    Nothing here may yield between the RocksDB write and the last changelog record being queued:
    a rebalance that begins in such a pause flushes the producer without them, the partition's
    next owner restores the changelog, and our records land after -- behind that owner's newer
    states of the same journeys, so the next restore takes ours, stale (a delivery lost: a false
    breach; seen once in CI in test_second_worker_joins_and_leaves_mid_run[own]). A graceful stop
    leaves the group before the producer's last flush, the same way."""
    store = table.data
    if not (isinstance(store, RocksDBStore) and store.use_rocksdict):
        for partition, key, value in writes:
            with writing_partition(table.changelog_topic.get_topic_name(), partition):
                if value is None:
                    table.pop(key, None)
                else:
                    table[key] = value
        return
    if not writes:
        return
    topic = table.changelog_topic.get_topic_name()
    producer = app.producer._ensure_producer()
    await producer.client._wait_on_metadata(topic)  # known after the first write: no pause then
    if handing_over(app):
        return  # our partitions may be another worker's now: the batch is not acked, its owner reads it again
    # RocksDB: a revoked partition's store reopened by a write here would lock out the worker
    # taking it over on the same JOURNEY_HOME; the caller checked the partitions are ours, and no
    # await since
    batches: dict[int, Any] = {}
    for partition, key, value in writes:
        batch = batches.get(partition)
        if batch is None:
            batch = batches[partition] = WriteBatch(raw_mode=True)  # as Faust's own changelog restore
        if value is None:
            batch.delete(key)
        else:
            batch.put(key, value)
            store._key_index[key] = partition
    for partition, batch in batches.items():
        store._db_for_partition(partition).write(batch)
    for future, count in _queue_batches(producer, topic, writes):
        future.add_done_callback(partial(_persist_offset, store, count))


def _queue_batches(producer: Any, topic: str,
                   records: list[tuple[int, bytes | None, bytes | None]]) -> list[tuple[Any, int]]:
    """Queue (partition, key, value) records in the producer as record batches per partition,
    without yielding (`send_batch` waits while a partition has a batch queued; aiokafka's queue
    holds several in order, and sends one per partition at a time). The topic's metadata must
    be known. Returns each batch's delivery future with its record count."""
    accumulator = producer._message_accumulator
    if accumulator._closed:  # what `add_batch` checks first
        raise ProducerClosed()
    if accumulator._exception is not None:
        raise accumulator._exception

    def tp(partition: int) -> aiokafka.TopicPartition:  # validated as `send_batch` does
        return aiokafka.TopicPartition(topic, producer._partition(topic, partition, None, None, None, None))

    return [(accumulator._append_batch(batch, tp(partition)).future, count)
            for partition, batch, count in _record_batches(producer, records)]


def restored_offsets(table: Any, partitions: set[int]) -> dict[int, int | None]:
    """The changelog offset each (assigned) partition's store holds (what a restore reached), for
    the logs; empty for a store without one."""
    store = table.data
    if not isinstance(store, RocksDBStore):
        return {}
    topic = table.changelog_topic.get_topic_name()
    return {p: store.persisted_offset(TP(topic, p)) for p in sorted(partitions)}


def _persist_offset(store: Any, count: int, future: Any) -> None:
    """A changelog record batch delivered: its last offset is in the store (Faust's own callback,
    `Collection._on_changelog_sent`, does the same per message)."""
    if not future.cancelled() and future.exception() is None:
        meta = future.result()
        store.set_persisted_offset(meta.topic_partition, meta.offset + count - 1)


class FaustPorts:
    """`streams.checkpoint.Ports` on a Faust app."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def flush(self) -> None:
        await drain_producer(self.app)

    def handing_over(self) -> bool:
        return handing_over(self.app)

    def generation(self) -> int:
        return generation(self.app)

    def current(self, messages: list[Any]) -> list[Any]:
        return current_messages(self.app, messages)

    def ack(self, messages: list[Any]) -> None:
        self.app.consumer.ack_all(messages)
