"""The ClickHouse sink against the real broker, a real worker and the chDB endpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import KafkaProducer

from infra.base.clickhouse import admin_client, get_client
from infra.base.config import Settings
from infra.base.heartbeat import service_ready
from infra.local.processes import wait_until
from schemas.codec import encode
from tests.integration.test_detection import event, produce, start_worker, stop_worker

pytestmark = pytest.mark.integration


def start_sink(settings: Settings) -> subprocess.Popen[bytes]:
    log = open(settings.home / "sink.log", "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([sys.executable, "-m", "consumers.sink"], env={**os.environ, **settings.to_env()},
                            stdout=log, stderr=subprocess.STDOUT)
    assert wait_until(lambda: service_ready(settings, "sink") or proc.poll() is not None, 60)
    assert proc.poll() is None, (settings.home / "sink.log").read_text()[-2000:]
    return proc


@pytest.fixture
def pipeline(unique_topics: Settings, tmp_path) -> Iterator[Settings]:
    settings = unique_topics.with_(home=tmp_path / "home", app_id=f"jt-{uuid.uuid4().hex[:8]}")
    settings.home.mkdir(parents=True)
    worker = start_worker(settings)
    sink = start_sink(settings)
    yield settings
    sink.terminate()
    sink.wait(timeout=30)
    stop_worker(worker)


def scalar(settings: Settings, sql: str, **params: Any) -> Any:
    client = admin_client(settings)
    return client.query(sql, parameters=params).result_rows[0][0]


def test_events_become_rows_and_a_replay_changes_no_count(pipeline: Settings) -> None:
    tag = uuid.uuid4().hex[:6]
    t = int(time.time() * 1000) - 3_600_000
    events = [
        event("VISIT", t, f"{tag}-a", attrs={"table": "7"}),
        event("COMPLAINT_FILED", t + 1000, f"{tag}-a"),
        event("FAILURE_ACKNOWLEDGED", t + 61_000, f"{tag}-a", staff_id="s-1"),
        event("SERVICE_ERROR", t + 2000, f"{tag}-b"),
    ]
    produce(pipeline, events)
    alert = {"alert_id": f"al-{tag}", "incident_id": "inc-x", "kind": "triggered", "level": 0, "severity": "high",
             "rule": "complaint", "store_id": "seoul-01", "journey_id": f"{tag}-a", "customer_id": None,
             "at": t + 1500, "failed_at": t + 1000, "paged": True, "reason": None, "message": "complaint at seoul-01",
             "channels": ["terminal"]}
    producer = KafkaProducer(bootstrap_servers=pipeline.bootstrap_servers, acks="all")
    producer.send(pipeline.topics.alerts, key=b"inc-x", value=encode("alert", alert))
    producer.flush()

    like = f"{tag}-%"
    count_touchpoints = "SELECT count() FROM journey.touchpoints FINAL WHERE journey_id LIKE {p:String}"
    count_incidents = "SELECT count() FROM journey.incidents FINAL WHERE journey_id LIKE {p:String}"
    assert wait_until(lambda: scalar(pipeline, count_touchpoints, p=like) == 4
                      and scalar(pipeline, "SELECT max(version) FROM journey.incidents FINAL "
                                           "WHERE journey_id = {j:String} AND rule = 'complaint'", j=f"{tag}-a") == 2,
                      60, interval_s=0.5)
    client = admin_client(pipeline)
    row = client.query(
        "SELECT attrs['table'], store_id, toUnixTimestamp64Milli(occurred_at) FROM journey.touchpoints FINAL "
        "WHERE journey_id = {j:String} AND type = 'VISIT'", parameters={"j": f"{tag}-a"}).result_rows
    assert row == [("7", "seoul-01", t)]
    incident = client.query(
        "SELECT status, time_to_acknowledge_s, acknowledged_by, servqual FROM journey.incidents FINAL "
        "WHERE journey_id = {j:String}", parameters={"j": f"{tag}-a"}).result_rows
    assert incident == [("acknowledged", 60.0, "s-1", "assurance")]
    assert wait_until(lambda: scalar(pipeline, "SELECT count() FROM journey.alerts FINAL WHERE alert_id = {a:String}",
                                     a=f"al-{tag}") == 1, 30)

    # the same events again (a replay): counts stay where they were
    produce(pipeline, events)
    producer.send(pipeline.topics.alerts, key=b"inc-x", value=encode("alert", alert))
    producer.flush()
    producer.close()
    time.sleep(4)
    assert scalar(pipeline, count_touchpoints, p=like) == 4
    assert scalar(pipeline, count_incidents, p=like) == 2
    assert scalar(pipeline, "SELECT count() FROM journey.alerts FINAL WHERE alert_id = {a:String}", a=f"al-{tag}") == 1


def test_sink_killed_mid_batch_loses_and_duplicates_nothing(unique_topics: Settings, tmp_path) -> None:
    # small batches, so the kill lands between one batch's insert and its commit
    settings = unique_topics.with_(home=tmp_path / "home", app_id=f"jt-{uuid.uuid4().hex[:8]}", sink_batch_rows=3000)
    settings.home.mkdir(parents=True)
    tag = uuid.uuid4().hex[:6]
    t = int(time.time() * 1000) - 3_600_000
    total, chunk = 30_000, 1000
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=5)

    def produce_chunk(start: int) -> None:
        for i in range(start, start + chunk):
            e = {"event_id": f"{tag}-{i}", "journey_id": f"{tag}-j{i % 500}", "customer_id": None, "type": "VISIT",
                 "stage": "before", "channel": "web", "occurred_at": t + i, "store_id": None, "staff_id": None,
                 "request_id": None, "promised_within_s": None, "incident_id": None, "attrs": {}, "source": None}
            producer.send(settings.topics.touchpoints, key=e["journey_id"].encode(), value=encode("touchpoint", e))
        producer.flush()

    count = "SELECT count(), uniqExact(event_id) FROM journey.touchpoints WHERE journey_id LIKE {p:String}"
    client = admin_client(settings)
    rows = lambda: client.query(count, parameters={"p": f"{tag}-%"}).result_rows[0][0]  # noqa: E731
    sink = start_sink(settings)
    produce_chunk(0)
    assert wait_until(lambda: rows() >= chunk, 60, 0.05)  # the sink is up and inserting
    # the rest arrives paced, so the sink is busy inserting and committing when it is killed (a sink
    # fast enough to drain a burst before the first count returned cannot dodge the kill this way);
    # the last chunk waits for the kill, so the kill interrupts the run however slow the sink is
    # (a fixed pace alone once ended before a sink on a loaded machine had passed the first chunk)
    killed = threading.Event()

    def produce_paced() -> None:
        for start in range(chunk, total - chunk, chunk):
            produce_chunk(start)
            time.sleep(0.2)
        killed.wait(120)
        produce_chunk(total - chunk)

    paced = threading.Thread(target=produce_paced)
    paced.start()
    try:
        assert wait_until(lambda: rows() > chunk, 60, 0.05)
        os.kill(sink.pid, signal.SIGKILL)
        sink.wait()
        assert rows() < total  # the run was interrupted: the last chunk was not even sent yet
    finally:
        killed.set()
        paced.join()
        producer.close()
    sink = start_sink(settings)
    try:
        final = "SELECT count(), uniqExact(event_id) FROM journey.touchpoints FINAL WHERE journey_id LIKE {p:String}"
        assert wait_until(lambda: client.query(final, parameters={"p": f"{tag}-%"}).result_rows[0][0] >= total, 90, 0.5)
        assert client.query(final, parameters={"p": f"{tag}-%"}).result_rows[0] == (total, total)
    finally:
        sink.terminate()
        sink.wait(timeout=30)


def test_report_and_customer_history_from_clickhouse(pipeline: Settings) -> None:
    from consumers.report import Window, customer_history, recovery_report

    tag = uuid.uuid4().hex[:6]
    store = f"store-{tag}"
    t = int(time.time() * 1000) - 600_000
    produce(pipeline, [
        event("COMPLAINT_FILED", t, f"{tag}-1", store_id=store, customer_id=f"cust-{tag}"),
        event("FAILURE_ACKNOWLEDGED", t + 30_000, f"{tag}-1", store_id=store, customer_id=f"cust-{tag}"),
        event("RECOVERY_RESOLVED", t + 400_000, f"{tag}-1", store_id=store, customer_id=f"cust-{tag}"),
        event("SERVICE_ERROR", t, f"{tag}-2", store_id=store),
    ])
    client = admin_client(pipeline)
    window = Window(t - 1000, t + 86_400_000, store)
    assert wait_until(lambda: recovery_report(client, window)["total_incidents"] == 2
                      and recovery_report(client, window)["by_rule"][0]["ttr_p50_s"] is not None, 60, 0.5)
    data = recovery_report(client, window)
    by_rule = {r["rule"]: r for r in data["by_rule"]}
    assert by_rule["complaint"]["tta_p50_s"] == 30.0 and by_rule["complaint"]["ttr_p50_s"] == 400.0
    assert by_rule["complaint"]["ttr_business_p50_s"] == 400.0  # a store without hours: business = calendar
    assert data["by_servqual"] == {"assurance": 1, "tangibles": 1}
    assert data["worst_stores"][0]["store"] == store
    attack = Window(t - 1000, t + 86_400_000, "' OR 1=1 --")
    assert recovery_report(client, attack)["total_incidents"] == 0  # a parameter, not SQL
    # local hours: the store is in Seoul (UTC+9); without a zone it would count in UTC
    from datetime import UTC, datetime

    utc_hour = datetime.fromtimestamp(t / 1000, tz=UTC).hour
    seoul = recovery_report(client, window, {store: "Asia/Seoul"})["by_local_hour"]
    assert seoul[(utc_hour + 9) % 24] >= 1 and sum(seoul.values()) == 2
    assert recovery_report(client, window)["by_local_hour"][utc_hour] >= 1
    history = customer_history(client, f"cust-{tag}")
    assert [i["rule"] for i in history["incidents"]] == ["complaint"]
    assert [j["journey_id"] for j in history["journeys"]] == [f"{tag}-1"]


def test_clickhouse_down_then_back_loses_and_doubles_nothing(unique_topics: Settings, tmp_path) -> None:
    """The sink holds its batch and retries while its ClickHouse endpoint is down."""
    from infra.base.clickhouse import wait_ready
    from infra.base.migrations import apply_migrations
    from infra.local import processes

    port = processes.free_port()
    data_dir = tmp_path / "own-clickhouse"

    def start_endpoint() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-m", "infra.local.clickhouse_server", "--port", str(port),
                                 "--data-dir", str(data_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_ready(f"http://127.0.0.1:{port}", 30)
        # as `journey up` does: the schema exists before anyone queries it (the sink applies it too, later)
        apply_migrations(get_client(f"http://127.0.0.1:{port}"), unique_topics.retention_days)
        return proc

    endpoint = start_endpoint()
    settings = unique_topics.with_(home=tmp_path / "home", app_id=f"jt-{uuid.uuid4().hex[:8]}",
                                   external_clickhouse=f"http://127.0.0.1:{port}", clickhouse_password_set="")
    settings.home.mkdir(parents=True)
    sink = start_sink(settings)
    tag = uuid.uuid4().hex[:6]
    t = int(time.time() * 1000) - 3_600_000
    try:
        produce(settings, [event("VISIT", t + i, f"{tag}-{i % 7}") for i in range(50)])
        count = "SELECT count(), uniqExact(event_id) FROM journey.touchpoints FINAL WHERE journey_id LIKE {p:String}"
        client = admin_client(settings)
        assert wait_until(lambda: client.query(count, parameters={"p": f"{tag}-%"}).result_rows[0][0] == 50, 30, 0.2)
        endpoint.terminate()
        endpoint.wait(timeout=30)
        produce(settings, [event("VISIT", t + 100 + i, f"{tag}-{i % 7}") for i in range(50)])
        log = settings.home / "sink.log"
        assert wait_until(lambda: "ClickHouse unavailable" in log.read_text(), 30, 0.5)
        time.sleep(3)  # several failed attempts while it is down
        endpoint = start_endpoint()
        client = admin_client(settings)
        assert wait_until(lambda: client.query(count, parameters={"p": f"{tag}-%"}).result_rows[0][0] == 100, 60, 0.5)
        assert client.query(count, parameters={"p": f"{tag}-%"}).result_rows[0] == (100, 100)
        assert "ClickHouse is back" in log.read_text()
    finally:
        sink.terminate()
        sink.wait(timeout=30)
        endpoint.terminate()
        endpoint.wait(timeout=30)


def _children(pid: int) -> list[int]:
    from pathlib import Path

    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_two_sink_processes_write_everything_once_and_stop_together(unique_topics: Settings, tmp_path) -> None:
    settings = unique_topics.with_(home=tmp_path / "home", app_id=f"jt-{uuid.uuid4().hex[:8]}",
                                   sink_processes=2, sink_batch_rows=2000)
    settings.home.mkdir(parents=True)
    tag = uuid.uuid4().hex[:6]
    t = int(time.time() * 1000) - 3_600_000
    sink = start_sink(settings)
    try:
        assert _children(sink.pid), "the second sink process was not started"
        produce(settings, [event("VISIT", t + i, f"{tag}-{i % 40}", event_id=f"{tag}-e{i}") for i in range(8000)])
        final = "SELECT count(), uniqExact(event_id) FROM journey.touchpoints FINAL WHERE journey_id LIKE {p:String}"
        client = admin_client(settings)
        assert wait_until(lambda: client.query(final, parameters={"p": f"{tag}-%"}).result_rows[0][0] >= 8000, 90, 0.5)
        assert client.query(final, parameters={"p": f"{tag}-%"}).result_rows[0] == (8000, 8000)
        partitions = client.query("SELECT uniqExact(kafka_partition) FROM journey.touchpoints "
                                  "WHERE journey_id LIKE {p:String}", parameters={"p": f"{tag}-%"}).result_rows[0][0]
        assert partitions == settings.partitions
    finally:
        helpers = _children(sink.pid)
        sink.terminate()
        sink.wait(timeout=30)
    assert wait_until(lambda: not [p for p in helpers if os.path.exists(f"/proc/{p}")
                                   and "Z" not in open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0]], 30)
