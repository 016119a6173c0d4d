"""The Faust adapter: touchpoints in, dead letters and incident changes out, state in a table.

    python -m streams.worker          (started by `journey up`)

The agent subscribes the touchpoint topic; the consumer (`streams/batch_consumer.py`) hands
each fetched batch of raw bytes to `on_batch` whole (Faust's own decode-error path would skip
and commit a bad message silently, and its per-message `Event` path was most of the worker's
time). The batch is decoded in one go; what cannot be read or breaks the contract goes to the
dead-letter topic with its reason, the rest to the pure `Detector`. Journey state is persisted
in a changelog-backed Faust table (RocksDB locally), one write per changed journey per batch;
the batch is acked (its offsets committable) once all its effects are produced. A timer
advances idle, caught-up partitions' watermarks so a promise breach fires at its deadline with
no further event.

Handing partitions over (a rebalance, or this worker stopping): nothing is written once it has
begun, and everything written before is with the broker before the group may give the
partitions to another worker, which restores their table from the changelog. Records are
applied per partition in offset order from the committed offset (`PartitionSequence`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import faust
from aiokafka.errors import IllegalStateError
from faust.streams import _current_event
from faust.tables.recovery import Recovery
from faust.types import TP, Message

from infra.config import Settings
from infra.escaping import escape_log_lines
from infra.heartbeat import write_heartbeat
from infra.kafka import last_offsets_from
from schemas.codec import encode
from schemas.dead_letter import dead_letter_headers
from streams.batch_consumer import BatchApp, current_messages, seek_back
from streams.domain.config import load_detection_config
from streams.domain.processor import Detector, ProcessResult
from streams.intake import sort_batch
from streams.state_codec import decode_journey, encode_journey

log = logging.getLogger("journey.worker")

BATCH_MAX = 4000  # records per fetch (max_poll_records): one batch through the detector
TICK_INTERVAL_S = 0.2
HEARTBEAT_INTERVAL_S = 1.0
ACK_POLL_S = 0.005
# RocksDB options of the journey table, per partition store. Faust's defaults (64 MiB memtables,
# up to 3 of them, a 2 GiB block cache each) let the memtables alone hold ~170 bytes per open
# journey up to 1.5M journeys on 4 partitions, and a reload after a restart fill the cache with
# the whole table. The worker only writes the table (the detector holds the state) and reads it
# once per assignment, a sequential scan: small memtables and cache cost little here.
TABLE_ROCKSDB_OPTIONS = {"write_buffer_size": 4 << 20, "max_write_buffer_number": 2, "block_cache_size": 8 << 20}


def _true_changelog_ends(bootstrap: str) -> None:
    """Faust restores a table from its changelog up to the partition's reported end and then
    calls it done. Tansu reports the base offset of the last record batch + 1, so the rest of
    that batch -- the newest journey states -- would never be restored (incidents lost, false
    alarms, after a restart or a rebalance). Read the real last offsets instead."""
    original = Recovery._build_highwaters
    if getattr(original, "_journey_tansu", False):
        return

    async def build_highwaters(self: Any, consumer: Any, tps: Any, destination: Any, title: str) -> None:
        await original(self, consumer, tps, destination, title)
        starts = {(tp.topic, tp.partition): destination[tp] for tp in tps}
        last = await asyncio.get_running_loop().run_in_executor(None, last_offsets_from, bootstrap, starts)
        for tp in tps:
            destination[tp] = last[(tp.topic, tp.partition)]

    build_highwaters._journey_tansu = True  # type: ignore[attr-defined]
    Recovery._build_highwaters = build_highwaters  # type: ignore[method-assign]


@dataclass
class _Message:
    topic: str
    partition: int


class _PartitionContext:
    """Stands in for a Faust event so a table write lands in `partition`'s store and changelog.

    Faust tables find the partition of a write through the *current event*; in a batch (or in
    a timer) that is not the event whose journey we write, so we point it at the right one.
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


@dataclass
class WorkerStats:
    """Counters shown by `journey status` (via the worker's log/metrics later)."""

    events: int = 0
    dead_letters: int = 0
    duplicates: int = 0
    unmatched_recovery: int = 0
    incident_changes: int = 0
    first_batch_at: int = 0  # wall ms when the first batch arrived (throughput = events / span)
    last_batch_at: int = 0


def create_app(settings: Settings) -> faust.App:
    """The Faust app with the detection agent, the journey table and the idle-deadline timer."""
    if settings.runs_local_broker:
        _true_changelog_ends(settings.bootstrap_servers)
    app = BatchApp(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap_servers}",
        store=settings.faust_store,
        datadir=str(settings.home.resolve() / "faust"),
        web_enabled=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_ms / 1000,
        broker_heartbeat_interval=max(0.1, settings.session_timeout_ms / 3000),
        broker_rebalance_timeout=max(10.0, settings.session_timeout_ms / 1000 * 2),
        stream_wait_empty=False,
        stream_buffer_maxsize=BATCH_MAX * 4,
        broker_max_poll_records=BATCH_MAX,
        # Tansu reports a partition's end as the base offset of its last record batch + 1 (README,
        # known limits), so a table's RocksDB can hold a changelog offset "past the end" and Faust
        # refuses to start (ConsistencyError) when a worker restarts or takes over a partition.
        # The check guards against a wiped Kafka under old RocksDB; `journey up` clears RocksDB
        # whenever it starts the embedded broker, so it is only kept for a real cluster.
        recovery_consistency_check=not settings.runs_local_broker,
        consumer_max_fetch_size=8 * 1024 * 1024,
        producer_acks=-1,
        producer_linger_ms=5,
    )
    touchpoints = app.topic(settings.topics.touchpoints, key_type=bytes, value_type=bytes,
                            key_serializer="raw", value_serializer="raw")
    dead_letters = app.topic(settings.topics.dlq, key_serializer="raw", value_serializer="raw")
    incidents = app.topic(settings.topics.incidents, key_serializer="raw", value_serializer="raw")
    # Values are `state_codec` bytes: encoded once per write, not once for RocksDB and again for the changelog.
    journeys = app.Table("journeys", default=None, key_type=bytes, value_type=bytes, partitions=settings.partitions,
                         options=TABLE_ROCKSDB_OPTIONS)
    detector = Detector(load_detection_config(settings.rules_file))
    stats = WorkerStats()
    loaded: set[int] = set()
    next_offset: dict[int, int] = {}
    produced: asyncio.Queue[list[Message]] = asyncio.Queue(maxsize=2)  # processed, waiting to be acked
    synced_rebalance = [-1]  # app.rebalancing_count when the detector last matched the assignment
    emitting = asyncio.Lock()  # a batch or a tick, from detecting to persisting: one at a time

    def handing_over() -> bool:
        """A rebalance or a shutdown has begun: our partitions may be restored elsewhere as soon
        as we let go of them, so their table must not change any more."""
        return bool(app.rebalancing or app.should_stop)

    async def drain_producer() -> None:
        """Everything sent so far is with the broker: Faust's buffer drained (its own flush gives
        up after 0.1 s without progress), then the producer's batches delivered."""
        while app.producer.buffer.size:
            await asyncio.sleep(ACK_POLL_S)
        await app.producer.flush()

    async def rebalanced() -> None:
        """Wait out a rebalance in progress: until it ends, the table of a newly assigned
        partition may not be restored from its changelog yet (Faust never clears
        `recovery.completed` once set, so that event alone does not tell)."""
        while app.rebalancing:
            await asyncio.sleep(0.01)

    async def sync_assignment() -> None:
        """Load journeys of newly assigned partitions; forget those that moved away.

        Only between rebalances. After each one every partition is loaded again from the
        restored table: one that left and came back was processed elsewhere meanwhile, and a
        journey loaded before its restore would stay stale (regression: a second worker with
        its own RocksDB leaving lost incidents, test_second_worker_joins_and_leaves_mid_run[own]).
        """
        if app.rebalancing:
            return
        if app.rebalancing_count != synced_rebalance[0]:
            for partition in loaded:
                detector.forget_partition(partition)
            loaded.clear()
            next_offset.clear()
            synced_rebalance[0] = app.rebalancing_count
        topic = touchpoints.get_topic_name()
        assigned = {tp.partition for tp in app.consumer.assignment() if tp.topic == topic}
        for partition in loaded - assigned:
            detector.forget_partition(partition)
            loaded.discard(partition)
            next_offset.pop(partition, None)
        new = assigned - loaded
        if new:
            states = ((k.decode(), decode_journey(v)) for k, v in journeys.items() if v is not None)
            items = [(journey_id, state) for journey_id, state in states if state.p in new]
            detector.load(items, now_ms=_now_ms())
            loaded.update(new)
            for partition in new:
                # Where reading resumes: an idle partition counts as caught up from there.
                position = await app.consumer.position(TP(topic, partition))
                next_offset.setdefault(partition, position or 0)
            log.info("loaded %d journeys of partitions %s", len(items), sorted(new))

    def persist() -> None:
        topic = touchpoints.get_topic_name()
        for journey_id, partition in detector.take_dirty().items():
            state = detector.journeys.get(journey_id)
            with writing_partition(topic, partition):
                if state is None:  # expired: a tombstone in the changelog, gone from RocksDB
                    journeys.pop(journey_id.encode(), None)
                else:
                    journeys[journey_id.encode()] = encode_journey(state)

    async def publish(result: ProcessResult) -> None:
        """Incident changes out and delivered, before the journey states holding them are
        written: a worker killed in between reads the events again and emits the same changes
        (same ids and versions; ClickHouse keeps one), whereas a state written first could hold
        a change that never went out (a post-recovery score lost to a kill -9 mid-batch)."""
        sent = [await incidents.send(key=change["incident_id"].encode(), value=encode("incident", change))
                for change in result.incident_changes]
        if sent:
            await asyncio.gather(*sent)
        stats.incident_changes += len(result.incident_changes)
        stats.duplicates += result.duplicates
        stats.unmatched_recovery += len(result.unmatched_recovery)
        for event in result.unmatched_recovery:
            log.warning("recovery event %s (%s) matches no incident of journey %s", event["event_id"],
                        event["type"], event["journey_id"])

    async def dead_letter(message: Message, reason: str, kind: str) -> None:
        stats.dead_letters += 1
        await dead_letters.send(
            key=message.key, value=message.value,
            headers=dead_letter_headers(reason, message.topic, message.partition, message.offset, kind),
        )

    def dropped(generation: int) -> bool:
        """Whether what was detected since `generation` must not be persisted, because our
        partitions may be restored elsewhere already (a late write would clobber the new
        owner's state). Its batch is never acked: the new owner reads it again (dead letters
        included). The detector reloads from the table after the rebalance."""
        if not handing_over() and app.rebalancing_count == generation:
            return False
        detector.take_dirty()
        synced_rebalance[0] = -1
        return True

    async def on_batch(fetched: list[Message]) -> None:
        """One fetched batch of touchpoints: decode, detect, publish, persist, dead-letter, ack."""
        await app.flow_control.acquire()  # held while a rebalance is under way
        if not current_messages(app, fetched):
            return
        await rebalanced()  # events can flow a moment before Faust calls the rebalance done
        async with emitting:
            await sync_assignment()
            generation = app.rebalancing_count
            # only now: the rebalance just waited out ends with a seek to the committed offsets
            messages, ahead = app.consumer.sequence.take(current_messages(app, fetched))
            if ahead:
                await seek_back(app, ahead)
            if not messages:
                return
            now = _now_ms()
            stats.first_batch_at = stats.first_batch_at or now
            sorted_ = sort_batch([m.value for m in messages], now)
            for message in messages:
                next_offset[message.partition] = message.offset + 1
            valid = [(messages[index].partition, record) for index, record in sorted_.valid]
            result = detector.process(valid, now)
            if dropped(generation):
                return
            await publish(result)
            if dropped(generation):
                return  # its incident changes are out: the new owner emits them again, same ids
            persist()
            stats.events += len(valid)
            for index in sorted(sorted_.rejected):  # in batch order
                await dead_letter(messages[index], *sorted_.rejected[index])
        stats.last_batch_at = _now_ms()
        await produced.put(messages)

    @app.task
    async def ack_when_produced() -> None:
        """Ack each batch once its changelog, incidents and dead letters are with the broker.

        Offsets are committed from acks, so a crash re-reads a batch rather than loses its
        effects. Waiting here instead of in `on_batch` lets the next batch be processed
        meanwhile; `produced` holds two batches at most (backpressure).
        """
        ack = app.consumer.ack
        while True:
            messages = await produced.get()
            await drain_producer()
            if handing_over():
                continue  # whoever owns the partitions next reads them again from the committed offset
            for message in current_messages(app, messages):  # not what a rebalance took away meanwhile
                ack(message)

    @app.on_partitions_revoked.connect
    async def hand_over(_app: faust.App, revoked: Any = None, **kwargs: Any) -> None:
        """Runs before this worker rejoins the group, i.e. before anyone else can be given our
        partitions: no write is left in flight (and no changelog offset is recorded late, into
        a partition's RocksDB that is no longer ours)."""
        await drain_producer()

    @app.on_before_shutdown.connect
    async def hand_over_on_shutdown(_app: faust.App, **kwargs: Any) -> None:
        """Stopping: the consumer leaves the group only after this (Faust stops it after the
        app's own shutdown steps), so the next owner restores everything we wrote."""
        await drain_producer()

    app.batch_handlers[touchpoints.get_topic_name()] = on_batch

    @app.agent(touchpoints)
    async def detect(stream: faust.StreamT) -> None:
        """Subscribes the touchpoint topic; the consumer hands its fetched batches to `on_batch`.

        Faust still owns the subscription, assignment, flow control, offsets and commits; only
        the per-message `Event` path is skipped (see streams/batch_consumer.py).
        """
        async for _event in stream:  # never reached: this topic's messages arrive as batches
            raise RuntimeError("touchpoint delivered as a single event; expected batches")

    @app.timer(TICK_INTERVAL_S)
    async def advance_idle_partitions() -> None:
        # Nothing while handing over: a write to a partition being revoked would reopen its
        # RocksDB here and lock out the worker taking it over (same JOURNEY_HOME), or reach the
        # changelog after that worker restored it.
        if not app.tables.recovery.completed.is_set() or handing_over():
            return
        async with emitting:
            await sync_assignment()
            if handing_over():
                return
            generation = app.rebalancing_count
            topic = touchpoints.get_topic_name()
            caught_up = []
            for partition in loaded:
                try:
                    highwater = app.consumer.highwater(TP(topic, partition))
                except (IllegalStateError, AssertionError):  # revoked while we looked: skip it
                    continue
                if highwater is not None and next_offset.get(partition, 0) >= highwater:
                    caught_up.append(partition)
            result = detector.tick(_now_ms(), caught_up)
            await publish(result)
            if not dropped(generation):
                persist()

    @app.timer(HEARTBEAT_INTERVAL_S)
    async def heartbeat() -> None:
        if app.tables.recovery.completed.is_set():
            write_heartbeat(settings, _worker_name(), {
                "partitions": sorted(loaded), "watermarks": {str(p): w for p, w in detector.watermarks.items()},
                "deadline_index": detector.deadline_index_size(), "open_journeys": len(detector.journeys),
                **asdict(stats),
            })

    _ = (detect, ack_when_produced, advance_idle_partitions, heartbeat)
    return app


def _worker_name() -> str:
    return f"worker-{os.environ.get('JOURNEY_WORKER_ID', '0')}"


def _now_ms() -> int:
    return int(time.time() * 1000)


def main() -> None:
    """Run one worker until SIGTERM."""
    settings = Settings.from_env()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    escape_log_lines()  # one line per record, whatever an id holds
    app = create_app(settings)
    worker = faust.Worker(app, loglevel="INFO", loop=asyncio.new_event_loop())
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
