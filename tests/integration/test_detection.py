"""Detection through the real broker and a real Faust worker process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from kafka import KafkaProducer

from infra.base.config import Settings
from infra.base.heartbeat import read_heartbeat, service_ready
from infra.local.processes import wait_until
from schemas.codec import encode
from schemas.contract import iso_from_ms as iso_ms
from schemas.contract import validate_event
from schemas.event_types import STAGE_OF_TYPE
from streams.domain.incidents import incident_id
from streams.topic_reader import follow
from tests.child import stop_child

pytestmark = pytest.mark.integration


@pytest.fixture
def worker_settings(unique_topics: Settings, tmp_path) -> Settings:
    return unique_topics.with_(home=tmp_path / "home", app_id=f"jt-{uuid.uuid4().hex[:8]}", faust_store="rocksdb://")


def start_worker(settings: Settings, worker_id: int = 0) -> subprocess.Popen[bytes]:
    log_path = settings.home / f"worker-{worker_id}.log"
    log = open(log_path, "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.worker", "worker", "--loglevel", "warning"],
        env={**os.environ, **settings.to_env(), "JOURNEY_WORKER_ID": str(worker_id)}, stdout=log,
        stderr=subprocess.STDOUT,
    )
    if not wait_until(lambda: service_ready(settings, f"worker-{worker_id}") or proc.poll() is not None, 90):
        proc.kill()
        raise AssertionError("worker did not become ready in 90 s")
    assert proc.poll() is None, log_path.read_text()[-3000:]
    return proc


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    stop_child(proc, 30)


@pytest.fixture
def worker(worker_settings: Settings) -> Iterator[Settings]:
    worker_settings.home.mkdir(parents=True, exist_ok=True)
    proc = start_worker(worker_settings)
    yield worker_settings
    stop_worker(proc)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


_seq = iter(range(10**9))


def event(type_: str, at_ms: int, journey: str, **extra: Any) -> dict[str, Any]:
    obj = {"event_id": extra.pop("event_id", f"ev-{next(_seq)}-{uuid.uuid4().hex[:6]}"), "journey_id": journey,
           "customer_id": extra.pop("customer_id", f"cust-{journey}"), "type": type_,
           "stage": STAGE_OF_TYPE[type_], "channel": "pos", "occurred_at": iso(at_ms), "store_id": "seoul-01"}
    obj.update(extra)
    return validate_event(obj)


def produce(settings: Settings, events: list[dict[str, Any]]) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    for e in events:
        producer.send(settings.topics.touchpoints, key=e["journey_id"].encode(), value=encode("touchpoint", e))
    producer.flush()
    producer.close()


def incidents_until(settings: Settings, done: Any, timeout_s: float = 60) -> dict[str, dict[str, Any]]:
    """Latest version of every incident on the topic, read until `done(latest)` or the timeout."""
    latest: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    for line in follow(settings, settings.topics.incidents, from_beginning=True, idle_timeout_s=timeout_s):
        record = json.loads(line)
        if record["version"] >= latest.get(record["incident_id"], {}).get("version", 0):
            latest[record["incident_id"]] = record
        if done(latest) or time.monotonic() > deadline:
            break
    return latest


def incident_changes(settings: Settings, idle_s: float = 3) -> list[dict[str, Any]]:
    """Every incident change on the topic, in order (each version as often as it was sent)."""
    return [json.loads(line) for line in follow(settings, settings.topics.incidents, from_beginning=True,
                                                idle_timeout_s=idle_s)]


def worker_beat(settings: Settings, worker_id: int) -> dict[str, Any]:
    return read_heartbeat(settings, f"worker-{worker_id}") or {}


def test_breach_fires_at_its_deadline_during_live_traffic(worker: Settings) -> None:
    now = int(time.time() * 1000)
    request = event("ITEM_REQUESTED", now, "table-7", request_id="spoon", promised_within_s=4, attrs={"item": "spoon"})
    produce(worker, [request])
    # background traffic on other journeys while the spoon never comes
    for i in range(30):
        produce(worker, [event("VISIT", int(time.time() * 1000), f"walk-in-{i}")])
        time.sleep(0.1)
    breach_id = incident_id("table-7", "promise_breach", "spoon")
    latest = incidents_until(worker, lambda got: breach_id in got, timeout_s=30)
    breach = latest[breach_id]
    assert breach["rule"] == "promise_breach"
    assert breach["failed_at"] == iso_ms(now + 4000)
    lag = breach["detection_lag_s"]
    print(f"promise breach detection lag: {lag:.3f} s")
    assert 0 <= lag < 5, f"breach detected {lag} s after its deadline"


def test_replay_of_history_yields_exactly_the_expected_incidents(worker_settings: Settings) -> None:
    """Last month's events produced as a backlog, then a worker starts and replays them."""
    base = int(time.time() * 1000) - 30 * 86_400_000
    events: list[dict[str, Any]] = []
    expected: set[tuple[str, str]] = set()
    for j in range(40):
        journey, t = f"hist-{j}", base + j * 3_600_000
        events.append(event("VISIT", t, journey))
        events.append(event("ITEM_REQUESTED", t + 1000, journey, request_id="r", promised_within_s=600))
        if j % 4 == 0:  # never delivered
            expected.add((journey, "promise_breach"))
        elif j % 4 == 1:  # delivered late: breach stays, late fulfilment recorded
            events.append(event("ITEM_DELIVERED", t + 700_000, journey, request_id="r"))
            expected.add((journey, "promise_breach"))
        else:  # delivered in time (sits in the backlog behind the request)
            events.append(event("ITEM_DELIVERED", t + 300_000, journey, request_id="r"))
        if j % 5 == 0:
            events.append(event("COMPLAINT_FILED", t + 800_000, journey))
            expected.add((journey, "complaint"))
        if j % 7 == 0:
            events.append(event("PAYMENT_FAILED", t + 900_000, journey))
            events.append(event("PAYMENT_SUCCEEDED", t + 960_000, journey))  # within the 120 s grace
    # Later traffic on many journeys moves every partition's watermark past all deadlines.
    events += [event("VISIT", base + 41 * 3_600_000, f"closing-{k}") for k in range(32)]
    produce(worker_settings, events)
    worker_settings.home.mkdir(parents=True, exist_ok=True)
    proc = start_worker(worker_settings)
    try:
        latest = incidents_until(worker_settings, lambda got: len(got) >= len(expected), timeout_s=60)
        time.sleep(2)  # anything extra would show up now
        latest = incidents_until(worker_settings, lambda got: False, timeout_s=3)
    finally:
        stop_worker(proc)
    assert {(i["journey_id"], i["rule"]) for i in latest.values()} == expected
    late = [i for i in latest.values() if i["rule"] == "promise_breach" and i["late_fulfilment_at"]]
    assert len(late) == 10


def test_recovery_events_give_the_incident_its_latencies(worker: Settings) -> None:
    t = int(time.time() * 1000) - 3_600_000
    journey = f"rec-{uuid.uuid4().hex[:6]}"
    produce(worker, [
        event("COMPLAINT_FILED", t, journey),
        event("FAILURE_ACKNOWLEDGED", t + 45_000, journey, staff_id="s-7"),
        event("CUSTOMER_CONTACTED", t + 120_000, journey),
        event("COMPENSATION_GIVEN", t + 300_000, journey, attrs={"kind": "voucher", "amount": "5.0"}),
        event("RECOVERY_RESOLVED", t + 1_200_000, journey),
    ])
    latest = incidents_until(worker, lambda got: any(i["status"] == "resolved" for i in got.values()), timeout_s=30)
    [incident] = [i for i in latest.values() if i["journey_id"] == journey]
    assert incident["time_to_acknowledge_s"] == 45.0
    assert incident["time_to_first_response_s"] == 120.0
    assert incident["time_to_resolve_s"] == 1200.0
    assert incident["acknowledged_by"] == "s-7"
    assert (incident["compensation_kind"], incident["compensation_amount"]) == ("voucher", 5.0)
    assert incident["sla_acknowledge_breached"] is False and incident["sla_resolve_breached"] is False
    assert incident["version"] == 5  # opened + four recovery steps


def test_bad_messages_go_to_the_dead_letter_topic_and_the_worker_keeps_going(worker: Settings) -> None:
    from schemas.codec import encode_with
    from streams.dead_letters import read_dead_letters

    now = int(time.time() * 1000)
    good_before = event("COMPLAINT_FILED", now, "dlq-good-1")
    good_after = event("SERVICE_ERROR", now, "dlq-good-2")
    no_journey = dict(event("VISIT", now, "x"), journey_id="")
    future = dict(event("VISIT", now, "dlq-future"), occurred_at=now + 10 * 86_400_000)
    producer = KafkaProducer(bootstrap_servers=worker.bootstrap_servers, acks="all")
    topic = worker.topics.touchpoints
    producer.send(topic, key=b"dlq-good-1", value=encode("touchpoint", good_before))
    producer.send(topic, key=b"a", value=b"plain text, not Avro")
    producer.send(topic, key=b"b", value=b"\x00\x00\x00\x03\xe7" + b"body")  # unknown schema id 999
    producer.send(topic, key=b"c", value=encode_with(1, no_journey))
    producer.send(topic, key=b"d", value=encode_with(1, future))
    producer.send(topic, key=b"dlq-good-2", value=encode("touchpoint", good_after))
    producer.flush()
    producer.close()
    latest = incidents_until(worker, lambda got: len(got) >= 2, timeout_s=30)
    assert sorted(i["journey_id"] for i in latest.values()) == ["dlq-good-1", "dlq-good-2"]
    found = wait_until(lambda: len(read_dead_letters(worker)) >= 4, 60, interval_s=1)
    if not found:
        from kafka import KafkaConsumer, TopicPartition
        c = KafkaConsumer(bootstrap_servers=worker.bootstrap_servers)
        ends = c.end_offsets([TopicPartition(worker.topics.dlq, p) for p in range(4)])
        raise AssertionError((ends, [(x.partition, x.offset, x.reason) for x in read_dead_letters(worker)]))
    letters = read_dead_letters(worker)
    reasons = sorted(letter.reason.split(":")[0] for letter in letters)
    assert reasons == ["missing field 'journey_id' (empty string)", "not Avro wire format",
                       "occurred_at is 240.0 h in the future (limit 24 h)", "unknown schema id 999"]
    assert {letter.value for letter in letters} >= {b"plain text, not Avro", b"\x00\x00\x00\x03\xe7body"}
    beat = json.loads((worker.home / "run" / "worker-0.json").read_text())
    assert beat["dead_letters"] == 4


def test_killed_worker_restarts_with_its_state_and_fires_the_pending_deadline_once(worker_settings: Settings) -> None:
    """SIGKILL after a batch: the journey state (with its deadline) comes back from the changelog."""
    worker_settings.home.mkdir(parents=True, exist_ok=True)
    proc = start_worker(worker_settings)
    now = int(time.time() * 1000)
    complaint = event("COMPLAINT_FILED", now, "kill-b")
    try:
        produce(worker_settings, [event("ITEM_REQUESTED", now, "kill-a", request_id="spoon", promised_within_s=12),
                                  complaint])
        complaint_id = incident_id("kill-b", "complaint", complaint["event_id"])
        incidents_until(worker_settings, lambda got: complaint_id in got, timeout_s=30)
        assert wait_until(lambda: worker_beat(worker_settings, 0).get("events", 0) >= 2, 10)
    finally:
        proc.kill()
        proc.wait()
    proc = start_worker(worker_settings)
    breach_id = incident_id("kill-a", "promise_breach", "spoon")
    try:
        incidents_until(worker_settings, lambda got: breach_id in got, timeout_s=45)
        changes = incident_changes(worker_settings)
    finally:
        stop_worker(proc)
    assert {c["incident_id"] for c in changes} == {complaint_id, breach_id}
    breaches = [c for c in changes if c["incident_id"] == breach_id]
    assert [b["version"] for b in breaches] == [1]
    assert breaches[0]["failed_at"] == iso_ms(now + 12_000)
    # The complaint may be re-sent after a crash (at least once), but never as a new version.
    assert {c["version"] for c in changes if c["incident_id"] == complaint_id} == {1}
