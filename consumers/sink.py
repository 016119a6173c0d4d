"""The ClickHouse sink: touchpoints, incidents and alerts from Kafka into ClickHouse, exactly once.

    python -m consumers.sink          (started by `journey up`)

A batch is cut by size or time (0.5 s), inserted through
clickhouse-connect (one column-oriented insert per table), and only after ClickHouse
acknowledged it are its offsets committed. A crash between insert and commit redelivers the
batch; the replacing keys (`event_id`, `incident_id` + `version`, `alert_id`) collapse the
repeat, so nothing is counted twice (read with FINAL). While ClickHouse is down the sink keeps
the batch, retries with backoff, and says so in its log.

Why aiokafka and batch decoding: profiled, kafka-python's fetcher spent ~50 µs per record
(record parsing and CRCs in Python) and per-message decode plus row building ~30 µs, while
ClickHouse itself takes 150k+ rows/s; aiokafka parses record batches in C (`getmany`).
Touchpoints are not decoded here at all when ClickHouse can read them itself: their raw
Avro goes in as one container per writer version (`consumers/touchpoint_rows.py`). That
insert is all-or-nothing; one ClickHouse refuses (a malformed or contract-breaking message
in it) is split in halves and retried, down to LEAF_ROWS, then decoded here like the other
topics, which skips and counts what is bad.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import struct
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from clickhouse_connect.driver.exceptions import ClickHouseError, DatabaseError

from consumers.touchpoint_rows import FastGroup, FastSchema, build_insert, fast_prefixes, split
from infra.base.clickhouse import get_client
from infra.base.config import Settings
from infra.base.errors import JourneyError
from infra.base.escaping import escape_log_lines
from infra.base.heartbeat import write_heartbeat
from infra.base.kafka_clients import client_args
from infra.base.migrations import apply_migrations
from infra.base.quarantine import publish as publish_quarantined
from infra.base.restart_record import keep_first_detection, restored_incident_versions
from infra.base.schema_registry import connect as connect_schema_registry
from schemas.codec import decode_many
from schemas.contract import ContractError, check_contract
from schemas.control import is_control

log = logging.getLogger("journey.sink")

BATCH_SECONDS = 0.5  # the longest a batch collects: bounds ClickHouse visibility
FETCH_WAIT_MS = 100  # Tansu holds an empty fetch this long; the default 500 ms would add to visibility
MAX_BACKOFF_S = 10.0
LEAF_ROWS = 2048  # a refused fast-path group is halved down to this size, then decoded here
# Batches in a row in which ClickHouse refused touchpoints that all decoded fine and took none:
# then it cannot read them (an older server, say) and the sink stops trying.
FUTILE_BATCHES = 3
T = TypeVar("T")

TOUCHPOINT_COLUMNS = [
    "event_id", "journey_id", "customer_id", "type", "stage", "channel", "occurred_at", "store_id",
    "staff_id", "request_id", "promised_within_s", "incident_id", "attrs", "source", "sent_at", "received_at",
    "kafka_partition", "kafka_offset",
]
INCIDENT_COLUMNS = [
    "incident_id", "version", "journey_id", "customer_id", "rule", "severity", "servqual", "store_id",
    "channel", "status", "failed_at", "detected_at", "updated_at", "trigger_event_id", "request_id",
    "repeat_customer", "acknowledged_at", "acknowledged_by", "first_response_at", "resolved_at",
    "detection_lag_s", "time_to_acknowledge_s", "time_to_first_response_s", "time_to_resolve_s",
    "sla_acknowledge_breached", "sla_first_response_breached", "sla_resolve_breached",
    "compensation_kind", "compensation_amount", "followed_up_at", "post_recovery_score", "recovered",
    "late_fulfilment_at", "note",
    # incident v2 (issue 21; migration 0006)
    "about", "sla_acknowledge_due_at", "sla_first_response_due_at", "sla_resolve_due_at",
    "business_time_to_acknowledge_s", "business_time_to_first_response_s", "business_time_to_resolve_s",
    "waiting_since", "paused_s", "paused_business_s",
]
CUSTOMER_COLUMNS = ["customer_id", "version", "first_seen", "last_visit", "journeys", "incidents", "recovered",
                    "regular"]
LATE_COLUMNS = ["event_id", "late_by_s"]  # an event later than the allowed lateness (the worker decides)
ALERT_COLUMNS = [
    "alert_id", "incident_id", "kind", "level", "severity", "rule", "store_id", "journey_id", "customer_id",
    "at", "failed_at", "paged", "reason", "message", "channels",
]


@dataclass
class Batch:
    """Column-oriented data per table (one list per column), plus what was skipped and why."""

    touchpoints: list[list[Any]] = field(default_factory=list)
    incidents: list[list[Any]] = field(default_factory=list)
    alerts: list[list[Any]] = field(default_factory=list)
    customers: list[list[Any]] = field(default_factory=list)
    late: list[list[Any]] = field(default_factory=list)
    skipped: int = 0

    def __len__(self) -> int:
        return sum(len(columns[0]) if columns else 0
                   for columns in (self.touchpoints, self.incidents, self.alerts, self.customers, self.late))

    def tables(self) -> list[tuple[str, list[list[Any]], list[str]]]:
        """(table, columns, column names) for each table with rows."""
        return [(table, columns, names) for table, columns, names in (
            ("touchpoints", self.touchpoints, TOUCHPOINT_COLUMNS),
            ("incidents", self.incidents, INCIDENT_COLUMNS),
            ("alerts", self.alerts, ALERT_COLUMNS),
            ("customers", self.customers, CUSTOMER_COLUMNS),
            ("late_touchpoints", self.late, LATE_COLUMNS)) if columns and columns[0]]


@dataclass
class SinkStats:
    rows: int = 0
    batches: int = 0
    skipped: int = 0
    fast_rows: int = 0  # touchpoints ClickHouse read as Avro (never decoded here)
    fast_refused: int = 0  # fast-path inserts ClickHouse refused (then halved or decoded here)
    retries: int = 0
    last_insert_at: int = 0
    clickhouse_ok: bool = True


def _columns(records: list[dict[str, Any]], names: list[str]) -> list[list[Any]]:
    return [[record[name] for record in records] for name in names]


def to_rows(settings: Settings, messages: list[Any], now_ms: int,
            restored: dict[str, tuple[int, int]] | None = None) -> Batch:
    """Kafka messages -> columns for each table (pure: tested without Kafka or ClickHouse).

    Each topic's values are decoded in one `decode_many` call; what does not decode, and
    touchpoints that break the contract (the worker dead-letters those), are skipped and counted.
    `restored`: incidents ClickHouse had when the embedded broker was re-seeded
    (`infra.base.restart_record.keep_first_detection`).
    """
    batch = Batch()
    topics = settings.topics
    by_topic: dict[str, list[Any]] = {}
    for message in messages:
        by_topic.setdefault(message.topic, []).append(message)
    # producers' begin/end of data records (schemas.control) are no touchpoints, nor errors
    touchpoints = [m for m in by_topic.get(topics.touchpoints, []) if not is_control(m.value)]
    if touchpoints:
        records, failures = decode_many([m.value for m in touchpoints], "touchpoint")
        failed = {f.index for f in failures}
        kept, partitions, offsets = [], [], []
        for record, message in zip(records, (m for i, m in enumerate(touchpoints) if i not in failed), strict=True):
            try:
                check_contract(record, now_ms)
            except ContractError:
                batch.skipped += 1
                continue
            if record.get("received_at") is None:  # a Kafka producer's: the record timestamp is its receive time
                stamp = getattr(message, "timestamp", None)
                record["received_at"] = stamp if stamp is not None and stamp > 0 else None
            kept.append(record)
            partitions.append(message.partition)
            offsets.append(message.offset)
        batch.skipped += len(failures)
        if kept:
            batch.touchpoints = _columns(kept, TOUCHPOINT_COLUMNS[:-2]) + [partitions, offsets]
    for topic, subject, names, target in ((topics.incidents, "incident", INCIDENT_COLUMNS, "incidents"),
                                          (topics.alerts, "alert", ALERT_COLUMNS, "alerts")):
        if by_topic.get(topic):
            records, failures = decode_many([m.value for m in by_topic[topic]], subject)
            batch.skipped += len(failures)
            if restored and subject == "incident":
                records = keep_first_detection(records, restored)
            if records:
                setattr(batch, target, _columns(records, names))
    if by_topic.get(topics.customers):
        batch.customers = _columns(_profiles(by_topic[topics.customers], batch), CUSTOMER_COLUMNS)
    if by_topic.get(topics.late):
        batch.late = _columns(_json_rows(by_topic[topics.late], LATE_COLUMNS, batch), LATE_COLUMNS)
    return batch


def _profiles(messages: list[Any], batch: Batch) -> list[dict[str, Any]]:
    """Customer profiles (JSON from the customers stage); what does not parse is skipped."""
    return _json_rows(messages, CUSTOMER_COLUMNS, batch)


def _json_rows(messages: list[Any], columns: list[str], batch: Batch) -> list[dict[str, Any]]:
    """JSON rows from the worker (profiles, late events); what does not parse is skipped."""
    out = []
    for message in messages:
        try:
            row = orjson.loads(message.value)
            out.append({name: row[name] for name in columns})
        except (orjson.JSONDecodeError, KeyError, TypeError):
            batch.skipped += 1
    return out


def next_offsets(messages: list[Any]) -> dict[TopicPartition, int]:
    """The offsets to commit once `messages` are in ClickHouse: each partition's last + 1."""
    offsets: dict[TopicPartition, int] = {}
    for message in messages:
        tp = TopicPartition(message.topic, message.partition)
        if message.offset + 1 > offsets.get(tp, -1):
            offsets[tp] = message.offset + 1
    return offsets


class ClickHouseSink:
    """Consumes the three topics and writes them to ClickHouse in acknowledged batches."""

    def __init__(self, settings: Settings, on_heartbeat: Callable[[SinkStats], None] | None = None,
                 keep_running: Callable[[], bool] = lambda: True,
                 fast_plans: dict[bytes, FastSchema] | None = None) -> None:
        self.settings = settings
        connect_schema_registry(settings)  # before the fast path's prefixes: an external registry's ids
        self.stats = SinkStats()
        self.on_heartbeat = on_heartbeat
        self.keep_running = keep_running
        self._stopping = False
        self._client = None
        self._fast = fast_prefixes() if fast_plans is None else fast_plans
        self._futile = 0  # batches in a row with only futile refusals (see FUTILE_BATCHES)
        self._last_refusal = ""
        self._restored = restored_incident_versions(settings)

    def stop(self, *_: object) -> None:
        self._stopping = True

    @property
    def stopping(self) -> bool:
        """True once asked to stop (a signal), as opposed to `keep_running` turning false."""
        return self._stopping

    def _client_or_none(self) -> Any:
        if self._client is None:
            try:
                self._client = get_client(self.settings.clickhouse_url, self.settings.clickhouse_user,
                                          self.settings.clickhouse_password)
                apply_migrations(self._client, self.settings.retention_days)
            except (JourneyError, ClickHouseError, OSError) as exc:
                self._client = None
                raise ConnectionError(str(exc)) from None
        return self._client

    def insert(self, batch: Batch) -> None:
        """Insert every table of the batch; raises on any ClickHouse failure."""
        client = self._client_or_none()
        for table, columns, names in batch.tables():
            client.insert(f"journey.{table}", columns, column_names=names, column_oriented=True)

    def insert_fast(self, group: FastGroup, now_ms: int) -> bool:
        """Insert a group of touchpoints as Avro; False when ClickHouse refused it (nothing written).

        Raises, for a retry, when ClickHouse did not answer at all.
        """
        client = self._client_or_none()
        try:
            sql, body = build_insert(group, now_ms)
        except struct.error:  # a partition number beyond the column's UInt16: the decoder path reports it
            return False
        try:
            client.command(sql, data=body)
        except DatabaseError as exc:
            if not exc.code:  # no ClickHouse exception code: unreachable, retry
                raise
            self.stats.fast_refused += 1
            self._last_refusal = str(exc)[:300]
            log.debug("fast path refused %d touchpoints: %s", len(group.messages), self._last_refusal)
            return False
        return True

    async def insert_with_retry(self, batch: Batch) -> None:
        """Retry until ClickHouse takes the batch (or we are stopping): nothing is dropped."""
        await self._with_retry(lambda: self.insert(batch), len(batch))

    async def _with_retry(self, action: Callable[[], T], rows: int) -> T:
        """Run `action` (an insert of `rows` rows) until ClickHouse answers, backing off meanwhile.

        It runs in a thread so the consumer's heartbeats and prefetching go on meanwhile.
        """
        delay = 0.2
        while True:
            try:
                result = await asyncio.to_thread(action)
                if not self.stats.clickhouse_ok:
                    log.warning("ClickHouse is back at %s; batch of %d rows written",
                                self.settings.clickhouse_url, rows)
                self.stats.clickhouse_ok = True
                return result
            except (ClickHouseError, ConnectionError, OSError) as exc:
                self._client = None
                self.stats.retries += 1
                self.stats.clickhouse_ok = False
                log.warning("ClickHouse unavailable at %s (%s); holding %d rows, offsets not committed, "
                            "retrying in %.1fs", self.settings.clickhouse_url, str(exc)[:200], rows, delay)
                self._beat()
                if self._stopping:
                    raise
                await asyncio.sleep(delay)
                delay = min(MAX_BACKOFF_S, delay * 2)

    async def write(self, messages: list[Any]) -> tuple[int, int]:
        """Insert one batch of messages; returns (rows written, messages skipped)."""
        now_ms = int(time.time() * 1000)
        groups, rest = split(messages, self._fast, self.settings.topics.touchpoints)
        fast_rows, refused = 0, False
        while groups:
            group = groups.pop()
            if await self._with_retry(lambda g=group: self.insert_fast(g, now_ms), len(group.messages)):
                fast_rows += len(group.messages)
            elif len(group.messages) >= 2 * LEAF_ROWS:
                half = len(group.messages) // 2
                groups += [FastGroup(group.schema, part) for part in (group.messages[:half], group.messages[half:])]
            else:
                rest += group.messages
                refused = True
        batch = to_rows(self.settings, rest, now_ms, self._restored)
        await self.insert_with_retry(batch)
        self.stats.fast_rows += fast_rows
        if refused or fast_rows:
            self._note_refusals(refused and not fast_rows and not batch.skipped)
        return fast_rows + len(batch), batch.skipped

    def _note_refusals(self, futile: bool) -> None:
        self._futile = self._futile + 1 if futile else 0
        if self._futile >= FUTILE_BATCHES and self._fast:
            self._fast = {}
            log.warning("ClickHouse at %s refused touchpoints in Avro that decode fine, %d batches in a row "
                        "(%s); decoding them here from now on", self.settings.clickhouse_url, self._futile,
                        self._last_refusal)

    def run(self) -> None:
        """Consume until stopped."""
        asyncio.run(self._run())

    async def _run(self) -> None:
        settings, topics = self.settings, self.settings.topics
        await self.insert_with_retry(Batch())  # connects and applies migrations (retrying while ClickHouse is down)
        reader = AIOKafkaConsumer(
            topics.touchpoints, topics.incidents, topics.alerts, topics.customers, topics.late, **client_args(settings),
            group_id=f"{settings.app_id}-sink", enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=max(100, settings.session_timeout_ms // 3),
            fetch_max_wait_ms=FETCH_WAIT_MS, max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024)
        await reader.start()
        log.info("consumer started")
        # One batch is written (and then committed) while the next is collected: ClickHouse
        # parses in its own process meanwhile. Only one at a time, so commits stay in order.
        in_flight: asyncio.Task[None] | None = None
        try:
            while not self._stopping and self.keep_running():
                messages = await self._collect(reader)
                if in_flight is not None:
                    await in_flight
                    in_flight = None
                if messages:
                    in_flight = asyncio.create_task(self._store(reader, messages))
                self._beat()
        finally:
            try:
                if in_flight is not None:
                    await in_flight
            finally:
                await reader.stop()

    async def _store(self, reader: AIOKafkaConsumer, messages: list[Any]) -> None:
        rows, skipped = await self.write(messages)
        await publish_quarantined(self.settings)  # batches read past: dead-lettered before the commit passes them
        await self._commit(reader, messages)  # only after ClickHouse acknowledged every row
        self.stats.rows += rows
        self.stats.batches += 1
        self.stats.skipped += skipped
        self.stats.last_insert_at = int(time.time() * 1000)
        log.debug("batch of %d rows in ClickHouse, offsets committed", rows)

    async def _collect(self, reader: AIOKafkaConsumer) -> list[Any]:
        """Up to `sink_batch_rows` messages, or what arrived within BATCH_SECONDS.

        The window runs from the call, not from the first message: a trickle waits half a
        window on average, and there are still at most 1/BATCH_SECONDS inserts per second.
        """
        limit = self.settings.sink_batch_rows
        messages: list[Any] = []
        deadline = time.monotonic() + BATCH_SECONDS
        while len(messages) < limit and not self._stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            polled = await reader.getmany(timeout_ms=max(1, int(remaining * 1000)),
                                          max_records=limit - len(messages))
            for records in polled.values():
                messages.extend(records)
        return messages

    async def _commit(self, reader: AIOKafkaConsumer, messages: list[Any]) -> None:
        try:
            await reader.commit(next_offsets(messages))
        except (CommitFailedError, IllegalStateError) as exc:
            # A rebalance moved some of these partitions to another sink while we inserted: it
            # re-reads them from the last commit, and the replacing keys absorb the repeat.
            log.warning("offsets not committed (%s); the new owner re-inserts, deduplicated", exc)

    def _beat(self) -> None:
        if self.on_heartbeat is not None:
            self.on_heartbeat(self.stats)


def _run_helper(index: int, parent_pid: int) -> None:
    """A further sink process: same group, its own share of the partitions, no heartbeat file.

    It stops with the parent (SIGTERM to the stack's process group reaches it too; if the
    parent is killed outright it notices the new parent pid and stops after its batch).
    """
    settings = Settings.from_env()
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s %(name)s[{index}] %(levelname)s %(message)s")
    escape_log_lines()  # one line per record, whatever an id holds
    sink = ClickHouseSink(settings, keep_running=lambda: os.getppid() == parent_pid)
    signal.signal(signal.SIGTERM, sink.stop)
    signal.signal(signal.SIGINT, sink.stop)
    sink.run()


def main() -> None:
    settings = Settings.from_env()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    escape_log_lines()  # one line per record, whatever an id holds
    last = [0.0]

    def heartbeat(stats: SinkStats) -> None:
        if time.monotonic() - last[0] >= 1.0:
            last[0] = time.monotonic()
            write_heartbeat(settings, "sink", {**asdict(stats), "processes": settings.sink_processes})

    # Avro decoding is most of a sink's CPU: more processes in the group use the other cores.
    spawn = multiprocessing.get_context("spawn")
    helpers = [spawn.Process(target=_run_helper, args=(index, os.getpid()), name=f"sink-{index}")
               for index in range(1, settings.sink_processes)]
    for helper in helpers:
        helper.start()
    # A helper that dies stops this process too (nonzero exit): the stack then shows the sink down.
    sink = ClickHouseSink(settings, on_heartbeat=heartbeat,
                          keep_running=lambda: all(helper.is_alive() for helper in helpers))
    signal.signal(signal.SIGTERM, sink.stop)
    signal.signal(signal.SIGINT, sink.stop)
    log.info("sink consuming %s into %s (%d processes)", ", ".join(settings.topics.all()),
             settings.clickhouse_url, settings.sink_processes)
    heartbeat(sink.stats)
    try:
        sink.run()
    finally:
        for helper in helpers:
            helper.terminate()
        for helper in helpers:
            helper.join(timeout=30)
    if not sink.stopping:
        raise SystemExit("a sink process exited unexpectedly; see the log above")


if __name__ == "__main__":
    main()
