"""The Faust worker: three keyed stages in one app, so no decision depends on which worker holds
what, on the order partitions arrive in, or on the partitioner a producer used.

    python -m streams.worker          (started by `journey up`)

    touchpoints (any producer)  --intake-->     <app>.touchpoints.by-journey   (our partitioner)
      --journeys: detector-->   <app>.incidents.by-customer  (incident changes, journey starts)
      --customers: repeat severity, came back, profile-->  incidents, customers

Every stage reads its topic as fetched batches (`streams.batch_consumer`: Faust still owns the
subscription, assignment, flow control, offsets and commits), applies each partition's records in
offset order from the committed offset, and commits each batch through a `Checkpoint`
(publish, delivered, persist, flush, ack). The internal topics and the tables' changelogs have
JOURNEY_INTERNAL_PARTITIONS partitions, whatever the source topic has: growing `touchpoints`
changes nothing downstream (Faust cannot grow a changelog with its source topic).

Handing partitions over (a rebalance, or this worker stopping): nothing is written once it has
begun, and everything written before is with the broker before the group may give the
partitions to another worker, which restores their tables from the changelogs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import faust

from infra.base.config import Settings
from infra.base.escaping import escape_log_lines
from infra.base.heartbeat import write_heartbeat
from infra.base.kafka import ensure_topics
from infra.base.kafka_clients import faust_broker
from infra.base.quarantine import attach_to_faust
from infra.base.schema_registry import connect as connect_schema_registry
from streams.batch_consumer import BatchApp, drain_producer, recovered, true_changelog_ends
from streams.customers.book import CustomerBook, CustomerRules
from streams.customers.stage import CustomersStage
from streams.domain.config import load_detection_config
from streams.domain.processor import Detector
from streams.intake.stage import IntakeStage
from streams.journeys.stage import JourneysStage

log = logging.getLogger("journey.worker")

BATCH_MAX = 4000  # records per fetch (max_poll_records): one batch through a stage
TICK_INTERVAL_S = 0.2
HEARTBEAT_INTERVAL_S = 1.0
# RocksDB options of the tables, per partition store. Faust's defaults (64 MiB memtables, up to 3
# of them, a 2 GiB block cache each) let the memtables alone hold ~170 bytes per open journey up
# to 1.5M journeys on 4 partitions, and a reload after a restart fill the cache with the whole
# table. The worker only writes the tables (the stages hold the state) and reads them once per
# assignment, a sequential scan: small memtables and cache cost little here.
TABLE_ROCKSDB_OPTIONS = {"write_buffer_size": 4 << 20, "max_write_buffer_number": 2, "block_cache_size": 8 << 20}


@dataclass
class WorkerStats:
    """Counters shown by `journey status` (in the worker's heartbeat)."""

    events: int = 0  # events through the detector
    intake_events: int = 0  # valid events intake re-keyed
    dead_letters: int = 0
    duplicates: int = 0
    unmatched_recovery: int = 0
    incident_changes: int = 0  # journey-side incident changes
    incident_rows: int = 0  # incident rows the customers stage published
    first_batch_at: int = 0  # wall ms when the first batch arrived (throughput = events / span)
    last_batch_at: int = 0
    # the process's CPU (all threads, ms) at its first and last batch: CPU per event = span / events
    first_batch_cpu_ms: int = 0
    last_batch_cpu_ms: int = 0


def create_app(settings: Settings) -> faust.App:
    """The Faust app with the intake, journeys and customers stages."""
    connect_schema_registry(settings)  # ids we do not ship: resolved through the schema registry
    if settings.runs_local_broker:
        true_changelog_ends(settings)
    internal = settings.internal_partitions
    # Ours, created here with our partition count (not Faust's, nor the source topic's).
    ensure_topics(settings, [settings.topic_by_journey, settings.topic_by_customer], partitions=internal)
    ensure_topics(settings, [settings.topics.late])  # late events (-> ClickHouse): newer than most stacks' topics
    app = BatchApp(
        settings.app_id,
        **faust_broker(settings),
        store=settings.faust_store,
        datadir=str(settings.home.resolve() / "faust"),
        web_enabled=False,
        topic_partitions=internal,
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
        # aiokafka holds one pending batch per partition and makes the next wait until it is sent:
        # with the default 16 KiB, intake's re-keyed batch waited for ~10 sends per partition.
        producer_max_batch_size=1 << 20,
    )
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    touchpoints = app.topic(settings.topics.touchpoints, **raw)
    by_journey = app.topic(settings.topic_by_journey, partitions=internal, **raw)
    by_customer = app.topic(settings.topic_by_customer, partitions=internal, **raw)
    dead_letters = app.topic(settings.topics.dlq, key_serializer="raw", value_serializer="raw")
    # Values are bytes encoded once per write (not once for RocksDB and again for the changelog).
    journeys = app.Table("journeys", default=None, key_type=bytes, value_type=bytes, partitions=internal,
                         options=TABLE_ROCKSDB_OPTIONS)
    customers = app.Table("customers", default=None, key_type=bytes, value_type=bytes, partitions=internal,
                          options=TABLE_ROCKSDB_OPTIONS)
    config = load_detection_config(settings.rules_file, settings.stores_file)
    stats = WorkerStats()
    intake = IntakeStage(app, touchpoints.get_topic_name(), by_journey.get_topic_name(), internal, dead_letters, stats,
                         settings)
    detector = Detector(config, clock="marks")
    journeys_stage = JourneysStage(app, by_journey.get_topic_name(), journeys, detector,
                                   by_customer.get_topic_name(), internal, settings.topics.incidents, stats,
                                   late_topic=settings.topics.late)
    book = CustomerBook(CustomerRules(repeat_window_days=config.repeat_window_days,
                                      recovered_window_days=config.recovered_window_days))
    customers_stage = CustomersStage(app, by_customer.get_topic_name(), customers, book, internal,
                                     settings.topics.incidents, settings.topics.customers, stats)
    stages = (intake, journeys_stage, customers_stage)
    for stage in stages:
        app.batch_handlers[stage.topic] = stage.on_batch

    def subscribe(topic: Any, name: str) -> Any:
        async def agent(stream: faust.StreamT) -> None:
            """Subscribes the topic; the consumer hands its fetched batches to the stage."""
            async for _event in stream:  # never reached: this topic's messages arrive as batches
                raise RuntimeError(f"{name}: message delivered as a single event; expected batches")
        agent.__name__ = agent.__qualname__ = name
        return app.agent(topic, name=f"{settings.app_id}.{name}")(agent)

    agents = [subscribe(touchpoints, "intake"), subscribe(by_journey, "journeys"), subscribe(by_customer, "customers")]

    for stage in stages:
        app.task(_forever(stage.checkpoint.run_acks))

    @app.on_partitions_revoked.connect
    async def hand_over(_app: faust.App, revoked: Any = None, **kwargs: Any) -> None:
        """Runs before this worker rejoins the group, i.e. before anyone else can be given our
        partitions: no write is left in flight (and no changelog offset is recorded late, into
        a partition's RocksDB that is no longer ours)."""
        await drain_producer(app)

    @app.on_before_shutdown.connect
    async def hand_over_on_shutdown(_app: faust.App, **kwargs: Any) -> None:
        """Stopping: the consumer leaves the group only after this (Faust stops it after the
        app's own shutdown steps), so the next owner restores everything we wrote."""
        await drain_producer(app)

    @app.timer(TICK_INTERVAL_S)
    async def tick() -> None:
        for stage in stages:
            await stage.on_tick()

    @app.timer(HEARTBEAT_INTERVAL_S)
    async def heartbeat() -> None:
        if recovered(app):
            write_heartbeat(settings, _worker_name(), {
                "partitions": sorted(journeys_stage.loaded), "source_partitions": sorted(intake.loaded),
                "customer_partitions": sorted(customers_stage.loaded),
                "watermarks": {str(p): w for p, w in detector.watermarks.items()},
                "deadline_index": detector.deadline_index_size(), "open_journeys": len(detector.journeys),
                "late_events": {str(p): n for p, n in detector.late_by_partition.items()},
                "tombstones": detector.tombstone_count(), "withdrawn": journeys_stage.withdrawn,
                "customers": len(book.customers), **asdict(stats),
            })

    _ = (agents, hand_over, hand_over_on_shutdown, tick, heartbeat)
    attach_to_faust(app, settings)  # a record batch no client can read: set aside, dead-lettered, paged
    return app


def _forever(run: Any) -> Any:
    async def task() -> None:
        await run()
    return task


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
