"""The keyed topology: the same incidents at any worker count, in any arrival order, from any producer."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pytest
from kafka import KafkaProducer

from consumers.customer_profile import customer_profile
from consumers.sink import INCIDENT_COLUMNS
from infra.base.clickhouse import get_client
from infra.base.config import Settings
from infra.base.heartbeat import read_heartbeat
from infra.base.kafka import ensure_topics
from schemas.codec import decode, encode
from schemas.event_types import STAGE_OF_TYPE
from streams.domain.incidents import incident_id
from tests.integration.keyed_file import keyed_file, reference
from tests.integration.test_detection import incidents_until, start_worker, stop_worker
from tests.integration.test_sink import start_sink
from tests.topic_names import suffixed

pytestmark = pytest.mark.integration

RUNS = [1, 2, 3, 1]  # worker counts: one fresh pipeline (topics, app id) each on the shared stack
# detected_at is wall-clock time and detection_lag_s is derived from it: everything else must match
COMPARED = [c for c in INCIDENT_COLUMNS if c not in ("detected_at", "detection_lag_s")]


def fresh(stack_settings: Settings, home: Any, tag: str) -> Settings:
    """Settings of a fresh run on the shared stack: own topics, app id (internal topics, changelogs)."""
    suffix = f"{tag}-{uuid.uuid4().hex[:6]}"
    settings = stack_settings.with_(
        home=home / suffix, app_id=f"jk-{suffix}", topics=suffixed(stack_settings.topics, suffix))
    settings.home.mkdir(parents=True)
    ensure_topics(settings, settings.topics.all())
    return settings


def produce_events(settings: Settings, events: list[dict[str, Any]], partition_of: Any = None) -> None:
    """Produce in file order; `partition_of(event)` picks a partition (default: kafka-python's murmur2)."""
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=5)
    for e in events:
        partition = partition_of(e) if partition_of else None
        producer.send(settings.topics.touchpoints, key=e["journey_id"].encode(), value=encode("touchpoint", e),
                      partition=partition)
    producer.flush()
    producer.close()


@contextmanager
def running(settings: Settings, workers: int) -> Iterator[None]:
    procs = [start_sink(settings)]
    try:
        procs += [start_worker(settings, w) for w in range(workers)]
        yield
    finally:
        for proc in reversed(procs):
            stop_worker(proc)


def _ms(value: Any) -> Any:
    return int(value.timestamp() * 1000) if isinstance(value, datetime) else value


def final_rows(settings: Settings, prefix: str) -> dict[str, dict[str, Any]]:
    client = get_client(settings.clickhouse_url, settings.clickhouse_user, settings.clickhouse_password)
    result = client.query(f"SELECT {', '.join(COMPARED)} FROM journey.incidents FINAL "
                          "WHERE startsWith(journey_id, {p:String})", parameters={"p": prefix})
    return {row[0]: {c: _ms(v) for c, v in zip(COMPARED, row, strict=True)} for row in result.result_rows}


def settle(settings: Settings, prefix: str, want: dict[str, dict[str, Any]], timeout_s: float = 120) -> dict:
    """incidents FINAL of the run once it equals `want` or stops changing for 15 s (or the timeout)."""
    deadline, last, since = time.monotonic() + timeout_s, None, time.monotonic()
    while time.monotonic() < deadline:
        rows = final_rows(settings, prefix)
        if rows == want:
            return rows
        if rows != last:
            last, since = rows, time.monotonic()
        elif rows and time.monotonic() - since > 15:
            break
        time.sleep(1)
    return last or {}


def forget_rows(settings: Settings, prefix: str) -> None:
    client = get_client(settings.clickhouse_url, settings.clickhouse_user, settings.clickhouse_password)
    client.command("DELETE FROM journey.incidents WHERE startsWith(journey_id, {p:String})", parameters={"p": prefix})


def expected_rows(events: list[dict[str, Any]], closing: int) -> dict[str, dict[str, Any]]:
    # through the incident schema, as the sink gets them: fields a row leaves out take their defaults
    rows = {iid: decode(encode("incident", row), "incident") for iid, row in reference(events, closing).items()}
    return {iid: {c: row[c] for c in COMPARED} for iid, row in rows.items()}


def diff(want: dict[str, dict], got: dict[str, dict]) -> list[Any]:
    out: list[Any] = sorted(set(want) ^ set(got))[:5]
    for iid in sorted(set(want) & set(got)):
        changed = {c: (want[iid][c], got[iid][c]) for c in COMPARED if want[iid][c] != got[iid][c]}
        if changed:
            out.append((iid, changed))
    return out[:10]


@pytest.mark.slow
def test_the_same_incidents_at_any_worker_count_and_equal_to_the_reference(stack_settings: Settings,
                                                                            tmp_path: Any) -> None:
    """One file (customers across partitions, events out of order within the lateness, repeat customers,
    ties, returns within and after 30 days) through fresh pipelines of 1, 2, 3 and again 1 worker."""
    prefix = f"det{uuid.uuid4().hex[:6]}"
    events, closing = keyed_file(prefix)
    want = expected_rows(events, closing)
    assert any(r["repeat_customer"] for r in want.values()) and any(r["recovered"] for r in want.values())
    runs: dict[tuple[int, int], dict] = {}
    profiles: dict[int, Any] = {}
    for n, workers in enumerate(RUNS):
        settings = fresh(stack_settings, tmp_path, f"w{workers}r{n}")
        produce_events(settings, events)  # a backlog: the workers start on it together
        with running(settings, workers):
            runs[(n, workers)] = settle(settings, prefix, want)
            if n == 0:
                profiles[0] = wait_for_profile(settings, f"{prefix}-c0", events)
        forget_rows(settings, prefix)
    for run, rows in runs.items():
        assert rows == want, f"run {run}: {diff(want, rows)}"
    mine = [e for e in events if e["customer_id"] == f"{prefix}-c0"]
    assert profiles[0] is not None and profiles[0]["journeys"] == len({e["journey_id"] for e in mine})
    assert profiles[0]["incidents"] == sum(r["customer_id"] == f"{prefix}-c0" for r in want.values())


def wait_for_profile(settings: Settings, customer: str, events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The customer's profile row (`journey customer` reads it) once it counts all their journeys."""
    client = get_client(settings.clickhouse_url, settings.clickhouse_user, settings.clickhouse_password)
    journeys = len({e["journey_id"] for e in events if e["customer_id"] == customer})
    profile = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        profile = customer_profile(client, customer)
        if profile is not None and profile["journeys"] == journeys:
            break
        time.sleep(1)
    return profile


def _history_event(type_: str, at: int, journey: str, n: int, **extra: Any) -> dict[str, Any]:
    return {"event_id": f"{journey}-{n}", "journey_id": journey, "customer_id": f"cust-{journey}", "type": type_,
            "stage": STAGE_OF_TYPE[type_], "channel": "pos", "occurred_at": at, "store_id": "seoul-01",
            "staff_id": extra.pop("staff_id", None), "request_id": extra.pop("request_id", None),
            "promised_within_s": extra.pop("promised_within_s", None), "incident_id": None,
            "attrs": {}, "source": "keyed-test"}


def _closing(prefix: str, at: int) -> list[dict[str, Any]]:
    """Later traffic on many journeys: every source partition's watermark past the deadlines."""
    return [_history_event("VISIT", at, f"{prefix}-closing-{k}", 0) for k in range(32)]


def test_a_foreign_partitioner_with_two_workers_raises_no_false_breach(stack_settings: Settings,
                                                                       tmp_path: Any) -> None:
    """Requests from a librdkafka producer (its default partitioner, CRC32), deliveries from a murmur2
    one: a journey's request and delivery land on different source partitions."""
    from confluent_kafka import Producer

    settings = fresh(stack_settings, tmp_path, "foreign")
    prefix, base = f"fp{uuid.uuid4().hex[:6]}", int(time.time() * 1000) - 3 * 3_600_000
    delivered = [f"{prefix}-d{j}" for j in range(24)]
    never = [f"{prefix}-n{j}" for j in range(2)]  # the control: really breached
    with running(settings, 2):
        pos = Producer({"bootstrap.servers": settings.bootstrap_servers})
        landed: dict[str, int] = {}
        for j, journey in enumerate(delivered + never):
            request = _history_event("ITEM_REQUESTED", base + j * 1000, journey, 0, request_id="r",
                                     promised_within_s=600)
            pos.produce(settings.topics.touchpoints, key=journey.encode(), value=encode("touchpoint", request),
                        on_delivery=lambda err, msg: landed.__setitem__(msg.key().decode(), msg.partition()))
        assert pos.flush(30) == 0
        murmur = KafkaProducer(bootstrap_servers=settings.bootstrap_servers)
        moved = [journey for journey in delivered
                 if murmur.partitions_for(settings.topics.touchpoints) and landed[journey] != _murmur(journey)]
        assert len(moved) >= 6, "the two partitioners should disagree on many journeys"
        murmur.close()
        produce_events(settings, [_history_event("ITEM_DELIVERED", base + j * 1000 + 60_000, journey, 1,
                                                 request_id="r") for j, journey in enumerate(delivered)])
        produce_events(settings, _closing(prefix, base + 2 * 3_600_000))
        latest = incidents_until(settings, lambda got: len(got) >= len(never), timeout_s=60)
        time.sleep(3)
        latest = incidents_until(settings, lambda got: False, timeout_s=3)
    breached = sorted(i["journey_id"] for i in latest.values() if i["rule"] == "promise_breach")
    assert breached == sorted(never)


def _murmur(journey: str) -> int:
    from kafka.partitioner.default import murmur2

    return (murmur2(journey.encode()) & 0x7FFFFFFF) % 4


def test_a_journey_spread_over_source_partitions_keeps_one_state_across_a_restart(stack_settings: Settings,
                                                                                  tmp_path: Any) -> None:
    """As after growing the source topic: one journey's events on different partitions, a worker
    restart between them. No false breach, no lost acknowledgement."""
    settings = fresh(stack_settings, tmp_path, "grown")
    prefix, base = f"gr{uuid.uuid4().hex[:6]}", int(time.time() * 1000) - 3 * 3_600_000
    on_time, breached = f"{prefix}-on-time", f"{prefix}-breached"
    first = [_history_event("ITEM_REQUESTED", base, on_time, 0, request_id="r", promised_within_s=600),
             _history_event("ITEM_REQUESTED", base, breached, 0, request_id="r", promised_within_s=600)]
    later = [_history_event("ITEM_DELIVERED", base + 60_000, on_time, 1, request_id="r"),
             _history_event("FAILURE_ACKNOWLEDGED", base + 700_000, breached, 1, staff_id="s-1")]
    proc = start_worker(settings)
    try:
        produce_events(settings, first, partition_of=lambda e: 0 if e["journey_id"] == on_time else 1)
        time.sleep(3)  # read and written to the journey table
    finally:
        stop_worker(proc)
    proc = start_worker(settings)
    try:
        produce_events(settings, later, partition_of=lambda e: 3 if e["journey_id"] == on_time else 2)
        produce_events(settings, _closing(prefix, base + 2 * 3_600_000))
        breach_id = incident_id(breached, "promise_breach", "r")
        latest = incidents_until(settings, lambda got: got.get(breach_id, {}).get("acknowledged_at"), timeout_s=60)
        time.sleep(3)
        latest = incidents_until(settings, lambda got: False, timeout_s=3)
        beat = read_heartbeat(settings, "worker-0") or {}
    finally:
        stop_worker(proc)
    assert sorted(i["journey_id"] for i in latest.values()) == [breached]
    assert latest[breach_id]["acknowledged_by"] == "s-1" and latest[breach_id]["status"] == "acknowledged"
    assert beat.get("unmatched_recovery") == 0
