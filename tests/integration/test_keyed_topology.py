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

from consumers.sink import INCIDENT_COLUMNS
from infra.clickhouse import get_client
from infra.config import Settings
from infra.kafka import ensure_topics
from schemas.codec import encode
from tests.integration.keyed_file import keyed_file, reference
from tests.integration.test_detection import start_worker, stop_worker
from tests.integration.test_sink import start_sink

pytestmark = pytest.mark.integration

RUNS = [1, 2, 3, 1]  # worker counts: one fresh pipeline (topics, app id) each on the shared stack
# detected_at is wall-clock time and detection_lag_s is derived from it: everything else must match
COMPARED = [c for c in INCIDENT_COLUMNS if c not in ("detected_at", "detection_lag_s")]


def fresh(stack_settings: Settings, home: Any, tag: str) -> Settings:
    """Settings of a fresh run on the shared stack: own topics, app id (internal topics, changelogs)."""
    suffix = f"{tag}-{uuid.uuid4().hex[:6]}"
    topics = stack_settings.topics
    settings = stack_settings.with_(
        home=home / suffix, app_id=f"jk-{suffix}",
        topics=type(topics)(**{name: f"{getattr(topics, name)}-{suffix}" for name in
                               ("touchpoints", "dlq", "incidents", "alerts", "silences", "customers")}))
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
    return {iid: {c: row[c] for c in COMPARED} for iid, row in reference(events, closing).items()}


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
    runs = {}
    for n, workers in enumerate(RUNS):
        settings = fresh(stack_settings, tmp_path, f"w{workers}r{n}")
        produce_events(settings, events)  # a backlog: the workers start on it together
        with running(settings, workers):
            runs[(n, workers)] = settle(settings, prefix, want)
        forget_rows(settings, prefix)
    for run, rows in runs.items():
        assert rows == want, f"run {run}: {diff(want, rows)}"
