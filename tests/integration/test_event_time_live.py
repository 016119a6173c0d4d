"""Clocks you can trust, live (issue 17, cases 1, 2 and 10) on one pipeline of the session stack:
worker, sink, notifier and collector on topics of their own."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from consumers.alert_book import PIPELINE_RULE
from consumers.pipeline_health import BACKLOG_MIN
from infra.base.clickhouse import get_client
from infra.base.config import Settings
from infra.base.heartbeat import read_heartbeat
from infra.local.processes import free_port, wait_until
from schemas.contract import iso_from_ms, ms_from_iso
from streams.domain.config import DEFAULT_RULES_FILE as RULES_FILE
from streams.domain.incidents import incident_id
from streams.emitter import TouchpointEmitter
from streams.topic_reader import follow
from tests.collector_process import collector_process, request
from tests.integration.pipeline_processes import own_topics, pipeline_processes
from tests.integration.test_detection import event, incidents_until, produce

pytestmark = pytest.mark.integration

H = 3_600_000
STALL_AFTER_S = 8  # the notifier's stall limit here (30 s by default): a backlog must outlast it


def _now() -> int:
    return int(time.time() * 1000)


@pytest.fixture(scope="module")
def live(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    home = tmp_path_factory.mktemp("event-time")
    rules = home / "rules.toml"
    rules.write_text(RULES_FILE.read_text().replace("stall_after_s = 30", f"stall_after_s = {STALL_AFTER_S}"))
    settings = own_topics(stack_settings, home=home, rules_file=rules, collector_port=free_port(),
                          collector_keys={"web-shop": "k-web"})
    with pipeline_processes(settings), collector_process(settings):
        yield settings


def _alerts(settings: Settings) -> list[dict[str, Any]]:
    return [json.loads(line) for line in follow(settings, settings.topics.alerts, from_beginning=True,
                                                idle_timeout_s=2)]


def _row(settings: Settings, event_id: str) -> dict[str, Any] | None:
    client = get_client(settings.clickhouse_url, settings.clickhouse_user, settings.clickhouse_password)
    result = client.query(
        "SELECT toUnixTimestamp64Milli(occurred_at) AS occurred, toUnixTimestamp64Milli(received_at) AS received, "
        "toUnixTimestamp64Milli(sent_at) AS sent, clock_skew_ms, clock_flag FROM journey.touchpoints FINAL "
        "WHERE event_id = {e:String}", parameters={"e": event_id})
    rows = list(result.named_results())
    return rows[0] if rows else None


def test_one_fast_pos_clock_fires_no_other_journeys_deadline(live: Settings) -> None:
    """Case 1: a POS 2 h fast sends ORDER_PLACED (no sent_at) among pending promises."""
    tag, now = uuid.uuid4().hex[:6], _now()
    pending = [event("ITEM_REQUESTED", now, f"{tag}-p{i}", request_id="spoon", promised_within_s=20) for i in range(8)]
    produce(live, pending)
    fast = event("ORDER_PLACED", now + 2 * H, f"{tag}-fast", request_id="o", promised_within_s=10)
    fresh = event("ITEM_REQUESTED", now + 1000, f"{tag}-new", request_id="r", promised_within_s=8)
    produce(live, [fast, fresh])
    sent = _now()
    ids = {incident_id(f"{tag}-p{i}", "promise_breach", "spoon"): now + 20_000 for i in range(8)}
    ids[incident_id(f"{tag}-new", "promise_breach", "r")] = now + 9_000
    fast_id = incident_id(f"{tag}-fast", "promise_breach", "o")
    latest = incidents_until(live, lambda got: set(ids) | {fast_id} <= set(got), timeout_s=60)
    for iid, due in ids.items():  # each at its own deadline, none before it
        assert latest[iid]["failed_at"] == iso_from_ms(due)
        assert ms_from_iso(latest[iid]["detected_at"]) >= due
    # its own promise counts from (about) when it was received, capped there: not 2 h on
    fast_failed = ms_from_iso(latest[fast_id]["failed_at"])
    assert now + 10_000 <= fast_failed <= sent + 5_000 + 10_000
    beat = read_heartbeat(live, "worker-0") or {}
    assert beat["watermarks"] and max(beat["watermarks"].values()) <= _now() + 5_000
    assert wait_until(lambda: _row(live, fast["event_id"]) is not None, 30)
    row = _row(live, fast["event_id"])
    assert row is not None and row["occurred"] == now + 2 * H  # the device's time is kept as sent
    assert row["received"] <= sent and row["sent"] is None and row["clock_flag"] == "ahead of receipt: capped"


def test_a_slow_device_complaint_through_the_collector_is_live_and_paged(live: Settings) -> None:
    """Case 2: a browser 3 h slow complains; the snippet stamps sent_at, the collector received_at."""
    tag, now = uuid.uuid4().hex[:6], _now()
    device = now - 3 * H
    complaint = {"event_id": f"{tag}-complaint", "journey_id": f"{tag}-web", "customer_id": f"{tag}-shopper",
                 "type": "COMPLAINT_FILED", "channel": "web", "occurred_at": iso_from_ms(device - 2_000),
                 "sent_at": iso_from_ms(device), "store_id": "web-shop", "attrs": {"text": "order never arrived"}}
    status, _, answer = request(live, "POST", "/v1/touchpoints", [complaint], {"X-Journey-Key": "k-web"})
    assert status == 200, answer
    received = _now()
    iid = incident_id(f"{tag}-web", "complaint", complaint["event_id"])
    incident = incidents_until(live, lambda got: iid in got, timeout_s=30)[iid]
    failed = ms_from_iso(incident["failed_at"])
    assert now - 2_000 <= failed <= received  # when it happened, on our clock: not 3 h ago
    assert wait_until(lambda: any(a["incident_id"] == iid for a in _alerts(live)), 30)
    mine = [a for a in _alerts(live) if a["incident_id"] == iid]
    assert mine[0]["kind"] == "triggered" and mine[0]["paged"] is True, mine
    assert wait_until(lambda: _row(live, complaint["event_id"]) is not None, 30)
    row = _row(live, complaint["event_id"])
    assert row is not None and row["occurred"] == device - 2_000 and row["sent"] == device
    assert now <= row["received"] <= received and row["clock_skew_ms"] == row["received"] - device
    assert row["clock_flag"] == "skew corrected"


def test_a_backlog_worked_through_is_busy_never_a_stall_page(live: Settings) -> None:
    """Case 10: last week's events arrive in bulk behind live traffic; the watermark stands still
    while the worker works through them, for longer than the stall limit (history is sent in chunks
    until the backlog has lasted that long, whatever the machine's speed)."""
    tag, week_ago = uuid.uuid4().hex[:6], _now() - 7 * 24 * H
    enough = threading.Event()

    def send_history() -> None:
        with TouchpointEmitter(live) as emitter:
            for chunk in range(40):  # at most 200,000 events
                if enough.is_set():
                    break
                emitter.send_many(dict(event("VISIT", week_ago + i, f"{tag}-j{i % 3000}"), event_id=f"{tag}-{i}")
                                  for i in range(chunk * 5_000, (chunk + 1) * 5_000))
                emitter.flush()

    sender = threading.Thread(target=send_history, daemon=True)
    sender.start()
    seen_busy: list[str] = []
    behind_since: float | None = None
    behind_for = 0.0
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        health = (read_heartbeat(live, "notifier") or {}).get("health") or {}
        lag = health.get("worker_lag")
        seen_busy += [b for b in (health.get("busy") or {}).values() if b not in seen_busy]
        if lag is not None and lag > BACKLOG_MIN:
            behind_since = behind_since or time.monotonic()
            behind_for = time.monotonic() - behind_since
            if behind_for > STALL_AFTER_S + 4:
                enough.set()
        elif behind_since is not None and lag is not None and not sender.is_alive():
            break
        time.sleep(0.5)
    enough.set()
    sender.join(60)
    assert behind_for > STALL_AFTER_S + 2, f"the backlog lasted {behind_for:.1f} s: too short to show anything"
    assert seen_busy and seen_busy[0].startswith("busy: "), seen_busy
    stalls = [a for a in _alerts(live) if a["rule"] == PIPELINE_RULE and a["kind"] == "triggered"
              and a["reason"].startswith("worker-")]  # the sink's own heartbeat is judged apart
    assert stalls == [], [(a["at"], a["reason"]) for a in stalls]
