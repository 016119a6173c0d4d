"""The ClickHouse sink: touchpoints, incidents and alerts from Kafka into ClickHouse, exactly once.

    python -m consumers.sink          (started by `journey up`)

A batch is cut by size or time, inserted through clickhouse-connect (one insert per table),
and only after ClickHouse acknowledged it are the offsets committed. A crash between insert
and commit redelivers the batch; the replacing keys (`event_id`, `incident_id` + `version`,
`alert_id`) collapse the repeat, so nothing is counted twice (read with FINAL). While
ClickHouse is down the sink keeps the batch, retries with backoff, and says so in its log.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from clickhouse_connect.driver.exceptions import ClickHouseError
from kafka import KafkaConsumer

from infra.clickhouse import get_client
from infra.config import Settings
from infra.errors import JourneyError
from infra.heartbeat import write_heartbeat
from infra.kafka import consumer
from infra.migrations import apply_migrations
from schemas.codec import DecodeError, decode
from schemas.contract import ContractError, check_contract

log = logging.getLogger("journey.sink")

GROUP = "journey-sink"
BATCH_ROWS = 20_000
BATCH_SECONDS = 0.5
MAX_BACKOFF_S = 10.0

TOUCHPOINT_COLUMNS = [
    "event_id", "journey_id", "customer_id", "type", "stage", "channel", "occurred_at", "store_id",
    "staff_id", "request_id", "promised_within_s", "incident_id", "attrs", "source",
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
]
ALERT_COLUMNS = [
    "alert_id", "incident_id", "kind", "level", "severity", "rule", "store_id", "journey_id", "customer_id",
    "at", "failed_at", "paged", "reason", "message", "channels",
]


@dataclass
class Batch:
    """Rows per table, cut from consumed messages, plus what was skipped and why."""

    touchpoints: list[list[Any]] = field(default_factory=list)
    incidents: list[list[Any]] = field(default_factory=list)
    alerts: list[list[Any]] = field(default_factory=list)
    skipped: int = 0

    def __len__(self) -> int:
        return len(self.touchpoints) + len(self.incidents) + len(self.alerts)


@dataclass
class SinkStats:
    rows: int = 0
    batches: int = 0
    skipped: int = 0
    retries: int = 0
    last_insert_at: int = 0
    clickhouse_ok: bool = True


def to_rows(settings: Settings, messages: list[Any], now_ms: int) -> Batch:
    """Kafka messages -> rows for each table (pure: tested without Kafka or ClickHouse)."""
    batch = Batch()
    topics = settings.topics
    for message in messages:
        try:
            if message.topic == topics.touchpoints:
                event = decode(message.value, "touchpoint")
                check_contract(event, now_ms)  # the worker dead-letters these; they are not touchpoints
                row = [event[c] for c in TOUCHPOINT_COLUMNS[:-2]] + [message.partition, message.offset]
                batch.touchpoints.append(row)
            elif message.topic == topics.incidents:
                record = decode(message.value, "incident")
                batch.incidents.append([record[c] for c in INCIDENT_COLUMNS])
            elif message.topic == topics.alerts:
                record = decode(message.value, "alert")
                batch.alerts.append([record[c] for c in ALERT_COLUMNS])
        except (DecodeError, ContractError):
            batch.skipped += 1
    return batch


class ClickHouseSink:
    """Consumes the three topics and writes them to ClickHouse in acknowledged batches."""

    def __init__(self, settings: Settings, on_heartbeat: Callable[[SinkStats], None] | None = None) -> None:
        self.settings = settings
        self.stats = SinkStats()
        self.on_heartbeat = on_heartbeat
        self._stopping = False
        self._client = None

    def stop(self, *_: object) -> None:
        self._stopping = True

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
        for table, rows, columns in (("touchpoints", batch.touchpoints, TOUCHPOINT_COLUMNS),
                                     ("incidents", batch.incidents, INCIDENT_COLUMNS),
                                     ("alerts", batch.alerts, ALERT_COLUMNS)):
            if rows:
                client.insert(f"journey.{table}", rows, column_names=columns)

    def insert_with_retry(self, batch: Batch) -> None:
        """Retry until ClickHouse takes the batch (or we are stopping): nothing is dropped."""
        delay = 0.2
        while True:
            try:
                self.insert(batch)
                if not self.stats.clickhouse_ok:
                    log.warning("ClickHouse is back at %s; batch of %d rows written",
                                self.settings.clickhouse_url, len(batch))
                self.stats.clickhouse_ok = True
                return
            except (ClickHouseError, ConnectionError, OSError) as exc:
                self._client = None
                self.stats.retries += 1
                self.stats.clickhouse_ok = False
                log.warning("ClickHouse unavailable at %s (%s); holding %d rows, offsets not committed, "
                            "retrying in %.1fs", self.settings.clickhouse_url, str(exc)[:200], len(batch), delay)
                self._beat()
                if self._stopping:
                    raise
                time.sleep(delay)
                delay = min(MAX_BACKOFF_S, delay * 2)

    def run(self) -> None:
        """Consume until stopped."""
        topics = self.settings.topics
        self.insert_with_retry(Batch())  # connects and applies migrations (retrying while ClickHouse is down)
        reader: KafkaConsumer = consumer(self.settings, topics.touchpoints, topics.incidents, topics.alerts,
                                         group_id=f"{self.settings.app_id}-sink", max_poll_records=BATCH_ROWS)
        try:
            while not self._stopping:
                messages = self._collect(reader)
                if messages:
                    batch = to_rows(self.settings, messages, int(time.time() * 1000))
                    self.insert_with_retry(batch)
                    reader.commit()  # only after ClickHouse acknowledged every row of the batch
                    self.stats.rows += len(batch)
                    self.stats.batches += 1
                    self.stats.skipped += batch.skipped
                    self.stats.last_insert_at = int(time.time() * 1000)
                self._beat()
        finally:
            reader.close(autocommit=False)

    def _collect(self, reader: KafkaConsumer) -> list[Any]:
        deadline = time.monotonic() + BATCH_SECONDS
        messages: list[Any] = []
        while len(messages) < BATCH_ROWS and time.monotonic() < deadline and not self._stopping:
            polled = reader.poll(timeout_ms=max(1, int((deadline - time.monotonic()) * 1000)),
                                 max_records=BATCH_ROWS - len(messages))
            for records in polled.values():
                messages.extend(records)
        return messages

    def _beat(self) -> None:
        if self.on_heartbeat is not None:
            self.on_heartbeat(self.stats)


def main() -> None:
    settings = Settings.from_env()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    last = [0.0]

    def heartbeat(stats: SinkStats) -> None:
        if time.monotonic() - last[0] >= 1.0:
            last[0] = time.monotonic()
            write_heartbeat(settings, "sink", asdict(stats))

    sink = ClickHouseSink(settings, on_heartbeat=heartbeat)
    signal.signal(signal.SIGTERM, sink.stop)
    signal.signal(signal.SIGINT, sink.stop)
    log.info("sink consuming %s into %s", ", ".join(settings.topics.all()), settings.clickhouse_url)
    heartbeat(sink.stats)
    sink.run()


if __name__ == "__main__":
    main()
