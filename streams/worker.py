"""The Faust adapter: touchpoints in, dead letters and incident changes out, state in a table.

    python -m streams.worker          (started by `journey up`)

The agent reads raw bytes (Faust's own decode-error path would skip and commit a bad message
silently) in batches via `take_events`, decodes them in one go, routes what cannot be read or
breaks the contract to the dead-letter topic with its reason, and hands the rest to the pure
`Detector`. Journey state is persisted in a changelog-backed Faust table (RocksDB locally), one
write per changed journey per batch. A timer advances idle, caught-up partitions' watermarks
so a promise breach fires at its deadline with no further event.
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
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from infra.config import Settings
from infra.heartbeat import write_heartbeat
from infra.kafka import last_offsets_from
from schemas.codec import decode_many, encode
from schemas.contract import ContractError, check_contract
from schemas.dead_letter import dead_letter_headers
from streams.domain.config import load_detection_config
from streams.domain.processor import Detector, ProcessResult

log = logging.getLogger("journey.worker")

BATCH_MAX = 4000
BATCH_WITHIN_S = 0.02
TICK_INTERVAL_S = 0.2
HEARTBEAT_INTERVAL_S = 1.0
FETCH_WAIT_MS = 20


def _short_fetch_wait() -> None:
    """Faust hard-codes fetch_max_wait_ms=1500 for its consumer; Tansu holds a fetch that long
    when a partition has nothing new, so a failing event could wait up to 1.5 s before the
    worker sees it. A short wait keeps alert latency low (at the cost of more, empty fetches)."""
    create = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer
    if getattr(create, "_journey_short_wait", False):
        return

    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = FETCH_WAIT_MS  # read by AIOKafkaConsumer.start() to build its fetcher
        return consumer

    create_worker_consumer._journey_short_wait = True  # type: ignore[attr-defined]
    faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer = create_worker_consumer  # type: ignore[method-assign]


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
    _short_fetch_wait()
    if settings.runs_local_broker:
        _true_changelog_ends(settings.bootstrap_servers)
    app = faust.App(
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
    journeys = app.Table("journeys", default=None, key_type=bytes, partitions=settings.partitions)
    detector = Detector(load_detection_config(settings.rules_file))
    stats = WorkerStats()
    loaded: set[int] = set()
    next_offset: dict[int, int] = {}
    synced_rebalance = [-1]  # app.rebalancing_count when the detector last matched the assignment

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
            items = [(k.decode(), v) for k, v in journeys.items() if v is not None and v["p"] in new]
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
                    journeys[journey_id.encode()] = state

    async def publish(result: ProcessResult) -> None:
        for change in result.incident_changes:
            await incidents.send(key=change["incident_id"].encode(), value=encode("incident", change))
        stats.incident_changes += len(result.incident_changes)
        stats.duplicates += result.duplicates
        stats.unmatched_recovery += len(result.unmatched_recovery)
        for event in result.unmatched_recovery:
            log.warning("recovery event %s (%s) matches no incident of journey %s", event["event_id"],
                        event["type"], event["journey_id"])

    async def dead_letter(event: Any, reason: str, kind: str) -> None:
        message = event.message
        stats.dead_letters += 1
        await dead_letters.send(
            key=message.key, value=message.value,
            headers=dead_letter_headers(reason, message.topic, message.partition, message.offset, kind),
        )

    @app.agent(touchpoints)
    async def detect(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            await rebalanced()  # events can flow a moment before Faust calls the rebalance done
            await sync_assignment()
            generation = app.rebalancing_count
            now = _now_ms()
            stats.first_batch_at = stats.first_batch_at or now
            records, failures = decode_many([e.message.value for e in batch], "touchpoint")
            failed = {f.index: f.reason for f in failures}
            valid: list[tuple[int, dict[str, Any]]] = []
            decoded = iter(records)
            for index, event in enumerate(batch):
                next_offset[event.message.partition] = event.message.offset + 1
                if index in failed:
                    await dead_letter(event, failed[index], "decode")
                    continue
                record = next(decoded)
                try:
                    check_contract(record, now)
                except ContractError as exc:
                    await dead_letter(event, str(exc), "contract")
                    continue
                valid.append((event.message.partition, record))
            stats.events += len(valid)
            result = detector.process(valid, now)
            if app.rebalancing or app.rebalancing_count != generation:
                # Revoked while we worked on it: its partitions may already be restored
                # elsewhere, so a late write would clobber the new owner's state. Drop the
                # batch (not committed: the new owner reads it again) and reload after.
                detector.take_dirty()
                synced_rebalance[0] = -1
                continue
            persist()
            await publish(result)
            stats.last_batch_at = _now_ms()

    @app.timer(TICK_INTERVAL_S)
    async def advance_idle_partitions() -> None:
        # Nothing during a rebalance: a write to a partition being revoked would reopen its
        # RocksDB here and lock out the worker taking it over (same JOURNEY_HOME).
        if not app.tables.recovery.completed.is_set() or app.rebalancing:
            return
        await sync_assignment()
        if app.rebalancing:
            return
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
        persist()
        await publish(result)

    @app.timer(HEARTBEAT_INTERVAL_S)
    async def heartbeat() -> None:
        if app.tables.recovery.completed.is_set():
            write_heartbeat(settings, f"worker-{os.environ.get('JOURNEY_WORKER_ID', '0')}", {
                "partitions": sorted(loaded), "watermarks": {str(p): w for p, w in detector.watermarks.items()},
                "deadline_index": detector.deadline_index_size(), "open_journeys": len(detector.journeys),
                **asdict(stats),
            })

    _ = (detect, advance_idle_partitions, heartbeat)
    return app


def _now_ms() -> int:
    return int(time.time() * 1000)


def main() -> None:
    """Run one worker until SIGTERM."""
    settings = Settings.from_env()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = create_app(settings)
    worker = faust.Worker(app, loglevel="INFO", loop=asyncio.new_event_loop())
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
