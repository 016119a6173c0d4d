"""`journey forget`, and report filters bound as query parameters (never string-built SQL)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from consumers.forget import changelogs
from infra.base.clickhouse import get_client
from infra.base.config import Settings
from infra.base.kafka import consumer, ensure_topics
from infra.base.migrations import apply_migrations
from streams.emitter import KeyPartitioner

pytestmark = pytest.mark.integration

INJECTIONS = ["x' OR '1'='1", "x' OR 1=1 --", "') OR 1=1 OR ('", "x\\' OR 1=1 #", "x'; DROP TABLE journey.alerts; --"]


def journey(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from infra.cli import main; main()", *args],
                          env=settings.to_env(), capture_output=True, text=True, timeout=120)


def _client(settings: Settings) -> Any:
    client = get_client(settings.clickhouse_url, settings.clickhouse_user, settings.clickhouse_password)
    apply_migrations(client)
    return client


def seed_customer(client: Any, customer: str, store: str, touchpoints: int, incident_versions: int,
                  alerts: int) -> None:
    """Rows as the sink writes them (only the columns that matter here; the rest take defaults)."""
    now = datetime.now(UTC)
    journey_id = f"j-{customer}"
    client.insert("journey.touchpoints", [
        [f"{customer}-e{i}", journey_id, customer, "VISIT", "before", "pos", now, store] for i in range(touchpoints)
    ], column_names=["event_id", "journey_id", "customer_id", "type", "stage", "channel", "occurred_at", "store_id"])
    for v in range(1, incident_versions + 1):  # one insert per version, as the sink writes them over time
        client.insert("journey.incidents", [
            [f"inc-{customer}", v, journey_id, customer, "complaint", "medium", "assurance", store, "open", now, now,
             now]], column_names=["incident_id", "version", "journey_id", "customer_id", "rule", "severity", "servqual",
                     "store_id", "status", "failed_at", "detected_at", "updated_at"])
    client.insert("journey.customers", [[customer, 1, now, now, 1, 1, 0, False]],
                  column_names=["customer_id", "version", "first_seen", "last_visit", "journeys", "incidents",
                                "recovered", "regular"])
    client.insert("journey.alerts", [
        [f"al-{customer}-{i}", f"inc-{customer}", "triggered", "medium", "complaint", store, journey_id, customer,
         now, now, True, "page"] for i in range(alerts)
    ], column_names=["alert_id", "incident_id", "kind", "severity", "rule", "store_id", "journey_id",
                     "customer_id", "at", "failed_at", "paged", "message"])


def rows_of(client: Any, customer: str) -> dict[str, int]:
    return {t: client.query(f"SELECT count() FROM journey.{t} FINAL WHERE customer_id = {{c:String}}",
                            parameters={"c": customer}).result_rows[0][0]
            for t in ("touchpoints", "incidents", "alerts", "customers")}


def test_forget_removes_one_customer_everywhere_in_clickhouse_and_nobody_else(stack_settings: Settings) -> None:
    client = _client(stack_settings)
    tag = uuid.uuid4().hex[:8]
    gone, kept = f"c-gone-{tag}", f"c-kept-{tag}"
    seed_customer(client, gone, f"s-{tag}", touchpoints=3, incident_versions=2, alerts=2)
    seed_customer(client, kept, f"s-{tag}", touchpoints=2, incident_versions=1, alerts=1)
    mutations = "SELECT count() FROM system.mutations WHERE database = 'journey'"
    made_before = client.query(mutations).result_rows[0][0]

    done = journey(stack_settings, "forget", gone, "--json")
    assert done.returncode == 0, done.stderr
    # patch parts, not a mutation of every part (which waits behind the merges of a busy table)
    assert client.query(mutations).result_rows[0][0] == made_before
    result = json.loads(done.stdout)
    removed = result["removed"]
    # rows as stored: the incident's two versions, or one when a merge already folded them (shared stack)
    assert removed.pop("incidents") in (1, 2)
    assert removed == {"touchpoints": 3, "alerts": 2, "customers": 1}
    assert result["left"] == {"touchpoints": 0, "incidents": 0, "alerts": 0, "customers": 0}
    topics = stack_settings.topics
    assert {topics.touchpoints, topics.incidents, topics.alerts, topics.dlq, topics.customers,
            stack_settings.topic_by_journey, stack_settings.topic_by_customer} <= set(result["still_in_kafka"])
    assert rows_of(client, gone) == {"touchpoints": 0, "incidents": 0, "alerts": 0, "customers": 0}
    assert rows_of(client, kept) == {"touchpoints": 2, "incidents": 1, "alerts": 1, "customers": 1}
    history = json.loads(journey(stack_settings, "customer", gone, "--json").stdout)
    assert history["journeys"] == [] and history["incidents"] == []

    again = journey(stack_settings, "forget", gone)  # the readable form, and idempotent
    assert again.returncode == 0 and "0 touchpoints, 0 incidents, 0 alerts, 0 customers" in again.stdout
    assert "retention" in again.stdout and topics.touchpoints in again.stdout


@pytest.mark.parametrize("attack", INJECTIONS)
def test_an_id_that_looks_like_sql_is_only_ever_a_value(stack_settings: Settings, attack: str) -> None:
    client = _client(stack_settings)
    tag = uuid.uuid4().hex[:8]
    store, other = f"s-{tag}", f"t-{tag}"
    seed_customer(client, f"c1-{tag}", store, touchpoints=1, incident_versions=1, alerts=1)
    seed_customer(client, f"c2-{tag}", other, touchpoints=1, incident_versions=1, alerts=1)
    assert client.query("SELECT count() FROM journey.incidents FINAL").result_rows[0][0] >= 2

    report = json.loads(journey(stack_settings, "report", "--since", "1h", "--store", attack, "--json").stdout)
    assert report["total_incidents"] == 0 and report["by_rule"] == []
    own = json.loads(journey(stack_settings, "report", "--since", "1h", "--store", store, "--json").stdout)
    assert own["total_incidents"] == 1 and [s["store"] for s in own["worst_stores"]] == [store]
    history = json.loads(journey(stack_settings, "customer", attack, "--json").stdout)
    assert history["incidents"] == [] and history["journeys"] == []
    forgot = journey(stack_settings, "forget", attack, "--json")
    assert json.loads(forgot.stdout)["removed"] == {"touchpoints": 0, "incidents": 0, "alerts": 0, "customers": 0}
    assert rows_of(client, f"c1-{tag}") == rows_of(client, f"c2-{tag}") == {"touchpoints": 1, "incidents": 1,
                                                                            "alerts": 1, "customers": 1}
    assert client.query("EXISTS TABLE journey.alerts").result_rows == [(1,)]


def test_forget_refuses_an_empty_id(stack_settings: Settings) -> None:
    done = journey(stack_settings, "forget", " ")
    assert done.returncode != 0 and done.stderr.startswith("journey: error: forget: give a customer id")
    assert "Traceback" not in done.stderr


def test_forget_gives_the_customers_table_states_a_tombstone_in_the_workers_changelogs(
        stack_settings: Settings) -> None:
    """Each key in the partition the worker writes it to, nobody else's; a restore then skips them."""
    tag = uuid.uuid4().hex[:8]
    settings = stack_settings.with_(app_id=f"forget-{tag}")
    journeys_log, customers_log = changelogs(settings)
    ensure_topics(settings, [journeys_log, customers_log], partitions=settings.internal_partitions)
    client = _client(settings)
    gone, kept = f"c-gone-{tag}", f"c-kept-{tag}"
    seed_customer(client, gone, f"s-{tag}", touchpoints=2, incident_versions=1, alerts=0)
    seed_customer(client, kept, f"s-{tag}", touchpoints=1, incident_versions=1, alerts=0)

    done = journey(settings, "forget", gone)
    assert done.returncode == 0, done.stderr
    assert f"1 in {journeys_log}, 1 in {customers_log}" in done.stdout

    partition_of = KeyPartitioner(list(range(settings.internal_partitions)))
    found = {}
    reader = consumer(settings, journeys_log, customers_log, consumer_timeout_ms=3000)
    try:
        for record in reader:
            found[(record.topic, record.key)] = (record.partition, record.value)
    finally:
        reader.close()
    assert found == {(journeys_log, f"j-{gone}".encode()): (partition_of(f"j-{gone}".encode()), None),
                     (customers_log, gone.encode()): (partition_of(gone.encode()), None)}
