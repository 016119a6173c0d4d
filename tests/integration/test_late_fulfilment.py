"""Issue #17 case 3 on the real stack: an on-time delivery uploaded late withdraws the breach.

Worker, notifier and sink as `journey up` runs them, on the session's broker and ClickHouse, with
the allowed lateness shortened to 8 s (the default 300 s would make the test wait five minutes).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from consumers.pipeline_health import probe
from consumers.report import Window, recovery_report
from infra.base.clickhouse import admin_client
from infra.base.config import Settings
from infra.base.kafka import ensure_topics
from infra.local.processes import wait_until
from schemas.contract import iso_from_ms
from streams.domain.config import DEFAULT_RULES_FILE
from streams.domain.incidents import incident_id
from tests.integration.test_alerting import alerts_of, running_notifier
from tests.integration.test_detection import event, incidents_until, produce, start_worker, stop_worker, worker_beat
from tests.integration.test_sink import start_sink

pytestmark = pytest.mark.integration
LATENESS_S = 8


@pytest.fixture
def pipeline(unique_topics: Settings, tmp_path: Path) -> Iterator[Settings]:
    rules = tmp_path / "rules.toml"
    text = DEFAULT_RULES_FILE.read_text()
    assert "allowed_lateness_s = 300 " in text
    rules.write_text(text.replace("allowed_lateness_s = 300 ", f"allowed_lateness_s = {LATENESS_S} ", 1))
    topics = replace(unique_topics.topics, late=f"{unique_topics.topics.touchpoints}.late")
    ensure_topics(unique_topics, [topics.late])
    settings = unique_topics.with_(home=tmp_path / "home", app_id=f"jt-{uuid.uuid4().hex[:8]}", rules_file=rules,
                                   topics=topics)
    settings.home.mkdir(parents=True)
    worker = start_worker(settings)
    sink = start_sink(settings)
    try:
        with running_notifier(settings):
            yield settings
    finally:
        sink.terminate()
        sink.wait(timeout=30)
        stop_worker(worker)


def test_on_time_delivery_uploaded_late_withdraws_the_page_and_leaves_the_report(pipeline: Settings) -> None:
    tag = uuid.uuid4().hex[:6]
    store = f"late-{tag}"
    water, soup = f"{tag}-water", f"{tag}-soup"
    soup_store = f"{store}-b"  # another store: its page is not grouped with the water's
    now = int(time.time() * 1000)
    # Water promised in 4 s and delivered at 3 s, but the POS was offline: the delivery is uploaded
    # after the breach paged. Soup: the same, uploaded after the allowed lateness.
    produce(pipeline, [event("ITEM_REQUESTED", now, water, request_id="water", promised_within_s=4, store_id=store),
                       event("ITEM_REQUESTED", now, soup, request_id="soup", promised_within_s=4, store_id=soup_store)])
    water_id, soup_id = incident_id(water, "promise_breach", "water"), incident_id(soup, "promise_breach", "soup")
    paged = alerts_of(pipeline, water_id, lambda found: "triggered" in [a["kind"] for a in found])
    assert [a["kind"] for a in paged] == ["triggered"] and paged[0]["paged"]

    produce(pipeline, [event("ITEM_DELIVERED", now + 3000, water, request_id="water", store_id=store)])
    latest = incidents_until(pipeline, lambda got: got.get(water_id, {}).get("status") == "withdrawn")
    withdrawn = latest[water_id]
    assert withdrawn["status"] == "withdrawn" and withdrawn["late_fulfilment_at"] == iso_from_ms(now + 3000)
    assert withdrawn["failed_at"] == iso_from_ms(now + 4000)
    cleared = alerts_of(pipeline, water_id, lambda found: "withdrawn" in [a["kind"] for a in found])
    assert [a["kind"] for a in cleared] == ["triggered", "withdrawn"]

    # the soup's deadline is final once the watermark is 8 s past it: its on-time delivery no longer withdraws
    assert wait_until(lambda: time.time() * 1000 > now + 4000 + LATENESS_S * 1000 + 3000, 30)
    produce(pipeline, [event("ITEM_DELIVERED", now + 3000, soup, request_id="soup", store_id=soup_store)])
    latest = incidents_until(pipeline, lambda got: got.get(soup_id, {}).get("late_fulfilment_at") is not None)
    assert latest[soup_id]["status"] == "open" and latest[soup_id]["late_fulfilment_at"] == iso_from_ms(now + 3000)

    # visible: counted per partition in the worker's figures (`journey status` reads them), and withdrawn
    assert wait_until(lambda: sum(worker_beat(pipeline, 0).get("late_events", {}).values()) == 1, 10, 0.5)
    assert worker_beat(pipeline, 0)["withdrawn"] == 1
    [figures] = probe(pipeline, int(time.time() * 1000))["workers"].values()
    assert sum(figures["late_events"].values()) == 1 and figures["withdrawn"] == 1

    # ClickHouse: the withdrawn incident is left out of the report's figures and counted apart
    client = admin_client(pipeline)
    window = Window(now - 60_000, now + 3_600_000, store)
    soup_window = Window(now - 60_000, now + 3_600_000, soup_store)
    assert wait_until(lambda: recovery_report(client, window)["withdrawn"] == 1
                      and recovery_report(client, soup_window)["total_incidents"] == 1, 60, 0.5)
    report = recovery_report(client, window)
    assert report["total_incidents"] == 0 and report["by_rule"] == [] and report["worst_stores"] == []
    assert recovery_report(client, soup_window)["withdrawn"] == 0

    def hourly(store_id: str) -> int:
        sql = "SELECT sum(incidents) FROM journey.incidents_hourly WHERE store_id = {s:String}"
        return int(client.query(sql, parameters={"s": store_id}).result_rows[0][0])

    assert hourly(store) == 0 and hourly(soup_store) == 1

    # the touchpoint rows: the soup's delivery is flagged late (by ~12 s), the water's is not
    def late_by(journey: str) -> list[float | None]:
        sql = ("SELECT late_by_s FROM journey.touchpoints FINAL WHERE journey_id = {j:String} "
               "AND type = 'ITEM_DELIVERED'")
        return [row[0] for row in client.query(sql, parameters={"j": journey}).result_rows]

    assert wait_until(lambda: late_by(soup) != [] and late_by(soup)[0] is not None, 30, 0.5)
    [soup_late] = late_by(soup)
    assert LATENESS_S < soup_late < 60 and late_by(water) == [None]
