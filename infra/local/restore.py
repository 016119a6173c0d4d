"""Re-seeding the embedded broker from ClickHouse when the stack starts again (issue #23).

The embedded Tansu broker keeps topics in memory only, so every start begins with an empty
event log. ClickHouse keeps what the pipeline still needs: the raw touchpoints (the log's
archive), the alert history and the silences. Before any service starts, this module puts
back, from ClickHouse:

- the touchpoints of every journey the worker would still hold (last event within the journey
  TTL, or within the incident TTL for a journey with an incident, or a promise still running),
  with their own event ids, into the public touchpoints topic, in the order they first arrived
  (the log's own order: the sink's insert time, then partition and offset). The worker rebuilds
  its state (pending deadlines, open incidents, ids and versions) by replaying them and sees each
  journey's events as it did live, a late event late (sorted by event time instead, a fulfilment
  that arrived after its breach had fired would come first and the breach never be re-created);
- one "clock" touchpoint (a VISIT stamped now, source `journey-restore`) for each journey with
  a deadline that may still be pending: it moves that partition's event-time clock to now, so a
  deadline that passed while the stack was down fires once at the restart (and pages or not by
  the paging horizon) and later deadlines fire on time, instead of a downtime late;
- the alert history of those journeys' incidents (and of open pipeline alerts) into the alerts
  topic, in order: the notifier restores from it as after any restart and pages nobody twice;
- the silences that are active, or ended within a day, into the silences topic.

Nothing is written to ClickHouse twice: the sink's consumer group is committed past what was
re-seeded (those rows are in ClickHouse already), and the incident changes the replay emits
again (same ids and versions) are dropped by the sink when ClickHouse has that version already;
newer versions of those incidents keep their first `detected_at`
(`infra.base.restart_record.keep_first_detection`). What `journey status` says about the restart
is in `$JOURNEY_HOME/restore.json`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.exceptions import ClickHouseError
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from infra.base.clickhouse import get_client
from infra.base.config import Settings
from infra.base.errors import JourneyError
from infra.base.restart_record import versions_path
from infra.local.processes import private_dir, write_private
from schemas.codec import encode
from streams.domain.config import DetectionConfig, load_detection_config

log = logging.getLogger("journey.restore")

DAY_MS = 86_400_000
SILENCE_KEEP_MS = DAY_MS  # ended silences re-seeded this long (a silence that ends pages what it held)
CLOCK_SOURCE = "journey-restore"
REQUEST_TYPES = ("ITEM_REQUESTED", "ORDER_PLACED", "CHECKOUT_STARTED", "PAYMENT_FAILED")
ALERT_ORDER = {"triggered": 0, "suppressed": 0, "escalated": 1, "reminded": 2, "acknowledged": 3, "resolved": 4,
               "delivery_failed": 5}
TOUCHPOINT_FIELDS = ("event_id", "journey_id", "customer_id", "type", "stage", "channel", "occurred_at", "store_id",
                     "staff_id", "request_id", "promised_within_s", "incident_id", "attrs", "source", "sent_at",
                     "received_at")
ALERT_FIELDS = ("alert_id", "incident_id", "kind", "level", "severity", "rule", "store_id", "journey_id",
                "customer_id", "at", "failed_at", "paged", "reason", "message", "channels")
SILENCE_FIELDS = ("silence_id", "action", "store_id", "rule", "starts_at", "ends_at", "created_by", "comment", "at")


@dataclass
class RestorePlan:
    """What goes back into the empty broker, in the order it is produced."""

    touchpoints: list[dict[str, Any]] = field(default_factory=list)
    clocks: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    silences: list[dict[str, Any]] = field(default_factory=list)
    # incident id -> (newest version in ClickHouse, when it was first detected)
    incident_versions: dict[str, tuple[int, int]] = field(default_factory=dict)
    open_incidents: int = 0

    def counts(self) -> dict[str, int]:
        return {"touchpoints": len(self.touchpoints), "journeys": len({t["journey_id"] for t in self.touchpoints}),
                "clock_events": len(self.clocks), "incidents": len(self.incident_versions),
                "open_incidents": self.open_incidents, "alerts": len(self.alerts), "silences": len(self.silences)}


# ---- what to re-seed (pure) ---------------------------------------------------------------------


def _ms(value: Any) -> int:
    """A ClickHouse DateTime64 (datetime) or epoch ms as epoch ms."""
    return int(value.timestamp() * 1000) if isinstance(value, datetime) else int(value)


def touchpoint_record(row: dict[str, Any]) -> dict[str, Any]:
    """A `journey.touchpoints` row as the touchpoint record it was on the topic (same event id)."""
    record = {name: row.get(name) for name in TOUCHPOINT_FIELDS}
    record["occurred_at"] = _ms(row["occurred_at"])
    for name in ("sent_at", "received_at"):  # the same three times: intake derives the same event time
        record[name] = None if row.get(name) is None else _ms(row[name])
    record["attrs"] = dict(row["attrs"] or {})
    return record


def alert_record(row: dict[str, Any]) -> dict[str, Any]:
    record = {name: row[name] for name in ALERT_FIELDS}
    record["at"], record["failed_at"] = _ms(row["at"]), _ms(row["failed_at"])
    record["channels"] = list(row["channels"])
    return record


def silence_record_of(row: dict[str, Any]) -> dict[str, Any]:
    record = {name: row[name] for name in SILENCE_FIELDS}
    for key in ("starts_at", "ends_at", "at"):
        record[key] = _ms(row[key])
    return record


def order_alerts(alerts: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Alerts in the order the notifier published them: by time, and within one millisecond by
    lifecycle (an ack and a resolve of the same change share `at`)."""
    return sorted(alerts, key=lambda a: (a["at"], ALERT_ORDER.get(a["kind"], 9), a["alert_id"]))


def request_deadline(event: dict[str, Any], config: DetectionConfig) -> int:
    """The latest deadline a request event can have (its promise, else the longest default window)."""
    if event.get("promised_within_s"):
        window_s = float(event["promised_within_s"])
    else:
        defaults = [*config.default_promise_s.values(), 0.0]
        windows = [r.window_s or 0.0 for r in config.rules.values()]
        windows += [r.window_s or 0.0 for scope in config.overrides.values() for r in scope.values()]
        window_s = max(defaults + windows)
    return event["occurred_at"] + int(window_s * 1000)


def clock_events(touchpoints: list[dict[str, Any]], open_incident_journeys: set[str], since_ms: int,
                 now_ms: int, config: DetectionConfig) -> list[dict[str, Any]]:
    """One clock touchpoint per journey whose deadlines may still be pending at `since_ms` (when the
    old stack was last seen alive, less the allowed lateness): a request due after it, or an open
    incident (its SLA deadlines). It carries nothing but event time; the sink never stores it."""
    last: dict[str, dict[str, Any]] = {}
    pending: set[str] = set(open_incident_journeys)
    for event in touchpoints:
        last[event["journey_id"]] = event
        if event["type"] in REQUEST_TYPES and request_deadline(event, config) >= since_ms:
            pending.add(event["journey_id"])
    clocks = []
    for journey_id in sorted(pending & set(last)):
        newest = last[journey_id]
        digest = hashlib.sha1(journey_id.encode(), usedforsecurity=False).hexdigest()[:16]
        clocks.append({
            "event_id": f"restore-clock-{digest}-{now_ms}", "journey_id": journey_id,
            "customer_id": newest["customer_id"], "type": "VISIT", "stage": "before", "channel": newest["channel"],
            "occurred_at": max(now_ms, newest["occurred_at"]), "store_id": newest["store_id"], "staff_id": None,
            "request_id": None, "promised_within_s": None, "incident_id": None,
            "attrs": {"restore": "clock"}, "source": CLOCK_SOURCE, "sent_at": None, "received_at": None,
        })
    return clocks


# ---- reading ClickHouse ---------------------------------------------------------------------------


def _journeys_sql() -> str:
    """Journeys the worker would still hold at `now` (its TTLs are event time; wall time is close)."""
    return """
        SELECT journey_id FROM journey.touchpoints FINAL
        GROUP BY journey_id
        HAVING max(occurred_at) >= fromUnixTimestamp64Milli({plain_since:Int64})
            OR (max(occurred_at) >= fromUnixTimestamp64Milli({incident_since:Int64})
                AND journey_id IN (SELECT journey_id FROM journey.incidents))
            OR max(if(type IN {requests:Array(String)},
                      toUnixTimestamp64Milli(occurred_at) + ifNull(promised_within_s, 0) * 1000, 0))
               >= {plain_since:Int64}
    """


def read_plan(settings: Settings, now_ms: int, since_ms: int) -> RestorePlan:
    """Everything to re-seed, read from ClickHouse (see the module docstring)."""
    config = load_detection_config(settings.rules_file)
    client = get_client(settings.clickhouse_url, settings.clickhouse_user, settings.clickhouse_password)
    params = {"plain_since": now_ms - int(config.journey_ttl_days * DAY_MS),
              "incident_since": now_ms - int(config.incident_journey_ttl_days * DAY_MS),
              "requests": list(REQUEST_TYPES), "silence_since": now_ms - SILENCE_KEEP_MS}
    journeys = f"journey_id IN ({_journeys_sql()})"
    plan = RestorePlan()
    rows = client.query(
        f"SELECT {', '.join(TOUCHPOINT_FIELDS)} FROM journey.touchpoints FINAL WHERE {journeys} "
        "ORDER BY ingested_at, kafka_partition, kafka_offset, occurred_at", parameters=params).named_results()
    plan.touchpoints = [touchpoint_record(row) for row in rows]
    incidents = client.query(
        "SELECT incident_id, any(journey_id) AS journey, max(version) AS newest, "
        "argMax(status, version) AS state, toUnixTimestamp64Milli(min(detected_at)) AS first_detected "
        f"FROM journey.incidents WHERE {journeys} GROUP BY incident_id", parameters=params).named_results()
    open_journeys: set[str] = set()
    for row in incidents:
        plan.incident_versions[row["incident_id"]] = (int(row["newest"]), int(row["first_detected"]))
        if row["state"] != "resolved":
            plan.open_incidents += 1
            open_journeys.add(row["journey"])
    alerts = client.query(
        f"SELECT {', '.join(ALERT_FIELDS)} FROM journey.alerts FINAL "
        f"WHERE incident_id IN (SELECT incident_id FROM journey.incidents WHERE {journeys}) "
        "OR (rule = 'pipeline_stalled' AND incident_id NOT IN "
        "    (SELECT incident_id FROM journey.alerts WHERE kind = 'resolved'))", parameters=params).named_results()
    plan.alerts = order_alerts(alert_record(row) for row in alerts)
    silences = client.query(
        f"SELECT {', '.join(SILENCE_FIELDS)} FROM journey.silences FINAL WHERE silence_id IN "
        "(SELECT silence_id FROM journey.silences WHERE action = 'create' "
        " AND ends_at >= fromUnixTimestamp64Milli({silence_since:Int64})) ORDER BY at, action",
        parameters=params).named_results()
    plan.silences = [silence_record_of(row) for row in silences]
    plan.clocks = clock_events(plan.touchpoints, open_journeys, since_ms, now_ms, config)
    return plan


# ---- writing the broker -----------------------------------------------------------------------------


def sink_group(settings: Settings) -> str:
    """The ClickHouse sink's consumer group (consumers/sink.py)."""
    return f"{settings.app_id}-sink"


def produce(settings: Settings, plan: RestorePlan) -> dict[TopicPartition, int]:
    """Produce the plan (acks=all, in order per key) and return the next offset of every partition
    written: the sink's group starts there, past what ClickHouse holds already."""
    from streams.emitter import make_producer

    topics = settings.topics
    producer = make_producer(settings)
    futures = []
    try:
        for topic, subject, key, records in (
                (topics.silences, "silence", "silence_id", plan.silences),
                (topics.alerts, "alert", "incident_id", plan.alerts),
                (topics.touchpoints, "touchpoint", "journey_id", plan.touchpoints),
                (topics.touchpoints, "touchpoint", "journey_id", plan.clocks)):
            for record in records:
                futures.append(producer.send(topic, key=str(record[key]).encode(), value=encode(subject, record)))
        producer.flush(timeout=120)
        ends: dict[TopicPartition, int] = {}
        for future in futures:
            meta = future.get(timeout=60)
            tp = TopicPartition(meta.topic, meta.partition)
            ends[tp] = max(ends.get(tp, 0), meta.offset + 1)
        return ends
    finally:
        producer.close(timeout=10)


def commit_for(settings: Settings, group: str, offsets: dict[TopicPartition, int]) -> None:
    """Commit `offsets` for `group` before any member joins it."""
    if not offsets:
        return
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=group,
                             enable_auto_commit=False)
    try:
        consumer.assign(list(offsets))
        consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()})
    finally:
        consumer.close()


def archive_silence(settings: Settings, record: dict[str, Any]) -> None:
    """Keep a silence record in ClickHouse (`journey silence add/expire`), where a restart finds it.

    Not through the sink: one more (nearly always empty) topic in its subscription cut its drain
    rate on Tansu to a third (`journey bench --only sink`: 15-20k rows/s against 58k).
    """
    from infra.base.migrations import apply_migrations

    client = get_client(settings.clickhouse_url, settings.clickhouse_user, settings.clickhouse_password)
    apply_migrations(client, settings.retention_days)
    client.insert("journey.silences", [[record[name] for name in SILENCE_FIELDS]], column_names=list(SILENCE_FIELDS))


# ---- the restart record -----------------------------------------------------------------------------


def restore_path(settings: Settings) -> Path:
    return settings.home.resolve() / "restore.json"


def read_restart(settings: Settings) -> dict[str, Any] | None:
    """What `journey status` shows: when the stack started, after what, and what it restored."""
    try:
        data = json.loads(restore_path(settings).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def record_start(settings: Settings, record: dict[str, Any], versions: dict[str, tuple[int, int]]) -> None:
    path = versions_path(settings)
    private_dir(path.parent)
    write_private(path, json.dumps(versions))
    write_private(restore_path(settings), json.dumps(record))


def reseed(settings: Settings, previous: dict[str, Any], echo: Callable[[str], None]) -> dict[str, Any]:
    """Re-seed the empty embedded broker from ClickHouse; returns (and records) what was restored.

    `previous`: how the last stack under this JOURNEY_HOME ended (`stopped_at`, `crashed`,
    `last_seen_at`), from `infra.local.stack`.
    """
    started = time.monotonic()
    now = int(time.time() * 1000)
    config = load_detection_config(settings.rules_file)
    seen = previous.get("last_seen_at") or previous.get("stopped_at") or now - DAY_MS
    try:
        plan = read_plan(settings, now, int(seen) - int(config.allowed_lateness_s * 1000))
    except ClickHouseError as exc:
        raise JourneyError(f"restoring from ClickHouse at {settings.clickhouse_url} failed: {str(exc)[:300]}") from None
    try:
        offsets = produce(settings, plan)
        # Past the re-seeded silences, alerts and touchpoints (ClickHouse has them), clocks included.
        commit_for(settings, sink_group(settings), offsets)
    except KafkaError as exc:
        raise JourneyError(f"re-seeding the broker at {settings.bootstrap_servers} failed: {exc}") from None
    record = {**_start_record(previous, now), "reseeded": True, "restored": plan.counts(),
              "took_s": round(time.monotonic() - started, 2)}
    record_start(settings, record, plan.incident_versions)
    counts = plan.counts()
    if any(counts.values()):
        echo(f"{'restored':<11} from ClickHouse in {record['took_s']} s: {describe(counts)}")
    return record


def describe(counts: dict[str, int]) -> str:
    """One line: what a restart put back."""
    return (f"{counts['touchpoints']} touchpoints of {counts['journeys']} journeys "
            f"({counts['open_incidents']} open incidents of {counts['incidents']}), {counts['alerts']} alerts, "
            f"{counts['silences']} silence records, {counts['clock_events']} clock events")


def record_plain_start(settings: Settings, previous: dict[str, Any]) -> dict[str, Any]:
    """A start without re-seeding (an external Kafka keeps its log): just when, and after what."""
    versions_path(settings).unlink(missing_ok=True)
    record = {**_start_record(previous, int(time.time() * 1000)), "reseeded": False}
    write_private(restore_path(settings), json.dumps(record))
    return record


def _start_record(previous: dict[str, Any], now: int) -> dict[str, Any]:
    after = "crash" if previous.get("crashed") else "journey down" if previous.get("stopped_at") else "first start"
    return {"started_at": now, "after": after, "previous_stopped_at": previous.get("stopped_at"),
            "previous_last_seen_at": previous.get("last_seen_at")}

