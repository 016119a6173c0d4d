"""`journey import` of a generated export raises exactly what the same history raises when emitted in time order."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from infra.base.config import Settings
from infra.base.heartbeat import read_heartbeat
from infra.base.kafka import ensure_topics
from infra.local.processes import wait_until
from schemas.contract import ms_from_iso, validate_event
from streams.emitter import TouchpointEmitter
from tests.history_export import generate, start_for, write_export
from tests.integration.test_detection import incident_changes, start_worker, stop_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAPPING = Path(__file__).parents[2] / "infra" / "examples" / "orders_reviews.toml"
ORDERS = 3000
DAY_MS = 86_400_000


def own_topics(settings: Settings, home: Path) -> Settings:
    """Settings with topics, app id and home of their own (created, as the session stack's partitions)."""
    suffix = uuid.uuid4().hex[:8]
    topics = type(settings.topics)(*(f"{t}-{suffix}" for t in settings.topics.all()))
    mine = settings.with_(home=home, topics=topics, app_id=f"jt-{suffix}")
    home.mkdir(parents=True, exist_ok=True)
    ensure_topics(mine, topics.all())
    return mine


def processed(settings: Settings) -> int:
    beat = read_heartbeat(settings, "worker-0") or {}
    return int(beat.get("events", 0)) + int(beat.get("duplicates", 0))


def latest_incidents(settings: Settings) -> dict[str, dict[str, Any]]:
    """The latest version of every incident on the topic (read until idle)."""
    latest: dict[str, dict[str, Any]] = {}
    for change in incident_changes(settings, idle_s=3):
        if change["version"] >= latest.get(change["incident_id"], {}).get("version", 0):
            latest[change["incident_id"]] = change
    return latest


def summary(incident: dict[str, Any]) -> tuple[Any, ...]:
    """What must agree between the two runs: every per-journey field (incident ids of feedback incidents
    embed event ids, which differ: left out).

    Not compared: the customer-level fields (severity, repeat_customer, recovered). Today's worker
    decides them from whichever of a customer's journeys on other partitions it happened to apply
    first, so they differ between two runs of the very same emit (measured: 139 of 1,307
    incidents); the customers stage of the design (re-keyed by customer) is what makes them
    deterministic."""
    return (incident["journey_id"], incident["rule"], incident["failed_at"], incident["late_fulfilment_at"],
            incident["compensation_amount"], incident["post_recovery_score"], incident["request_id"],
            incident["status"])


def expected_from_history(events: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Breached orders and abandoned checkouts, read straight off the generated history."""
    placed = {e["journey_id"]: ms_from_iso(e["occurred_at"]) + e["promised_within_s"] * 1000
              for e in events if e["type"] == "ORDER_PLACED"}
    served = {e["journey_id"]: ms_from_iso(e["occurred_at"]) for e in events if e["type"] == "ORDER_SERVED"}
    started = {e["journey_id"] for e in events if e["type"] == "CHECKOUT_STARTED"}
    completed = {e["journey_id"] for e in events if e["type"] == "CHECKOUT_COMPLETED"}
    last = max(ms_from_iso(e["occurred_at"]) for e in events)
    return {"promise_breach": {j for j, due in placed.items() if served.get(j, last + 1) > due and due < last},
            "abandonment": started - completed}


def test_import_raises_exactly_the_incidents_of_the_history_emitted_in_time_order(
        stack_settings: Settings, tmp_path: Path) -> None:
    emitted, imported = own_topics(stack_settings, tmp_path / "emit"), own_topics(stack_settings, tmp_path / "import")
    rows, history = generate(ORDERS, start_for(ORDERS, int(time.time() * 1000)))
    broken = [["order", "", "x@example.com", "store-0", "2026-10-01T00:00:00Z", "", "", "", "", "", "1", "EUR", "a",
               "", ""],
              ["review", "100001", "x@example.com", "store-0", "", "", "", "", "", "", "", "", "", "last tuesday", "3"]]
    export = write_export(tmp_path / "export.csv", rows, broken)
    workers = [start_worker(emitted), start_worker(imported)]
    try:
        with TouchpointEmitter(emitted) as emitter:
            for event in sorted(history, key=lambda e: ms_from_iso(e["occurred_at"])):
                emitter.send(validate_event(event))
            emitter.flush()
        done = subprocess.run([sys.executable, "-c", "from infra.cli import main; main()", "import", str(export),
                               "--mapping", str(MAPPING), "--json"], env={**os.environ, **imported.to_env()},
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 1, done.stderr  # rows were refused: exit 1, the rest imported
        result = json.loads(done.stdout)
        assert (result["events"], result["produced"], result["journeys"]) == (len(history), len(history),
                                                                               ORDERS + 32)
        assert [r["line"] for r in result["refused"]] == [len(rows) + 2, len(rows) + 3]
        assert "the journey is empty" in result["refused"][0]["reason"]
        assert "'last tuesday' is not a time" in result["refused"][1]["reason"]
        for settings in (emitted, imported):
            assert wait_until(lambda s=settings: processed(s) >= len(history), 120), processed(settings)
        time.sleep(2)  # the last batch's incident changes go out after its events are counted
        latest = [latest_incidents(s) for s in (emitted, imported)]
    finally:
        for proc in workers:
            stop_worker(proc)
    from_emit, from_import = ({summary(i) for i in got.values()} for got in latest)
    assert len(from_import) == len(latest[1]) and from_import == from_emit
    expected = expected_from_history(history)
    for rule, journeys in expected.items():
        assert {i["journey_id"] for i in latest[1].values() if i["rule"] == rule} == journeys
    rules = {rule: sum(1 for i in latest[1].values() if i["rule"] == rule) for rule in
             ("promise_breach", "abandonment", "negative_feedback")}
    print(f"import of {len(history)} events in {ORDERS + 32} journeys: {rules}")
    assert all(rules.values())
