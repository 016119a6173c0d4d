"""What a restart re-seeds (infra/local/restore.py), without Kafka or ClickHouse."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from infra.base.config import Settings
from infra.base.restart_record import keep_first_detection, restored_incident_versions, versions_path
from infra.local.restore import (
    alert_record,
    clock_events,
    describe,
    order_alerts,
    touchpoint_record,
)
from schemas.codec import decode, encode
from schemas.contract import check_contract
from streams.domain.config import load_detection_config

NOW = 1_796_000_000_000
CONFIG = load_detection_config()


def _row(**changes: object) -> dict[str, object]:
    """A `journey.touchpoints` row as clickhouse-connect returns it."""
    row: dict[str, object] = {
        "event_id": "e-1", "journey_id": "j-1", "customer_id": "c-1", "type": "ITEM_REQUESTED", "stage": "during",
        "channel": "pos", "occurred_at": datetime.fromtimestamp((NOW - 60_000) / 1000, tz=UTC),
        "store_id": "seoul-01", "staff_id": None, "request_id": "spoon", "promised_within_s": 600,
        "incident_id": None, "attrs": {}, "source": None,
    }
    row.update(changes)
    return row


def test_a_stored_touchpoint_goes_back_as_the_event_it_was() -> None:
    record = touchpoint_record(_row(attrs={"item": "spoon"}))
    assert record["occurred_at"] == NOW - 60_000 and record["event_id"] == "e-1"
    assert decode(encode("touchpoint", record), "touchpoint") == record
    assert touchpoint_record(_row())["attrs"] == {}  # an empty map, never None (Avro map)
    check_contract(record, NOW)


def test_alerts_go_back_in_lifecycle_order_within_one_millisecond() -> None:
    base = {"incident_id": "inc-1", "level": 0, "severity": "high", "rule": "complaint", "store_id": "s",
            "journey_id": "j", "customer_id": None, "paged": True, "reason": None, "message": "m",
            "channels": ["topic"]}
    rows = [{**base, "alert_id": f"inc-1:{kind}:0", "kind": kind, "at": datetime.fromtimestamp(at, tz=UTC),
             "failed_at": datetime.fromtimestamp(1, tz=UTC)}
            for kind, at in (("resolved", 5), ("acknowledged", 5), ("triggered", 2))]
    ordered = order_alerts(alert_record(row) for row in rows)
    assert [a["kind"] for a in ordered] == ["triggered", "acknowledged", "resolved"]
    assert ordered[0]["at"] == 2000 and ordered[0]["failed_at"] == 1000


def test_clock_events_only_for_journeys_whose_deadlines_may_still_be_pending() -> None:
    since = NOW - 120_000  # the old stack was last seen two minutes ago
    events = [
        touchpoint_record(_row(journey_id="due-later", promised_within_s=600)),  # due in 9 min
        touchpoint_record(_row(journey_id="fired-long-ago", promised_within_s=10,
                               occurred_at=datetime.fromtimestamp((NOW - 3_600_000) / 1000, tz=UTC))),
        touchpoint_record(_row(journey_id="complaint", type="COMPLAINT_FILED", stage="after", request_id=None,
                               promised_within_s=None)),
        touchpoint_record(_row(journey_id="browsing", type="BROWSE", stage="before", request_id=None,
                               promised_within_s=None)),
    ]
    clocks = clock_events(events, {"complaint"}, since, NOW, CONFIG)
    assert sorted(c["journey_id"] for c in clocks) == ["complaint", "due-later"]
    for clock in clocks:
        assert clock["occurred_at"] == NOW and clock["source"] == "journey-restore" and clock["type"] == "VISIT"
        check_contract(clock, NOW)
        assert decode(encode("touchpoint", clock), "touchpoint") == clock


def test_a_request_without_a_promise_counts_with_the_longest_default_window() -> None:
    event = touchpoint_record(_row(promised_within_s=None, occurred_at=datetime.fromtimestamp(
        (NOW - 1_500_000) / 1000, tz=UTC)))  # 25 min ago; ORDER_PLACED/abandonment windows are 30 min
    assert [c["journey_id"] for c in clock_events([event], set(), NOW - 60_000, NOW, CONFIG)] == ["j-1"]


def test_the_sink_drops_versions_it_has_and_keeps_the_first_detection() -> None:
    restored = {"inc-1": (2, NOW - 50_000)}
    changes = [{"incident_id": "inc-1", "version": v, "failed_at": NOW - 60_000, "detected_at": NOW,
                "detection_lag_s": 60.0} for v in (1, 2, 3)]
    other = {"incident_id": "inc-2", "version": 1, "failed_at": NOW, "detected_at": NOW, "detection_lag_s": 0.0}
    kept = keep_first_detection([*changes, other], restored)
    assert [(k["incident_id"], k["version"]) for k in kept] == [("inc-1", 3), ("inc-2", 1)]
    assert kept[0]["detected_at"] == NOW - 50_000 and kept[0]["detection_lag_s"] == 10.0
    assert kept[1] == other


def test_a_missing_or_broken_versions_file_restores_nothing(tmp_path: Path) -> None:
    settings = Settings.from_env({"JOURNEY_HOME": str(tmp_path)})
    assert restored_incident_versions(settings) == {}
    versions_path(settings).parent.mkdir(parents=True)
    versions_path(settings).write_text("[1, 2]")
    assert restored_incident_versions(settings) == {}
    versions_path(settings).write_text(json.dumps({"inc-1": [3, NOW]}))
    assert restored_incident_versions(settings) == {"inc-1": (3, NOW)}


def test_describe_names_every_count() -> None:
    line = describe({"touchpoints": 7, "journeys": 3, "clock_events": 2, "incidents": 2, "open_incidents": 1,
                     "alerts": 4, "silences": 1})
    assert line == ("7 touchpoints of 3 journeys (1 open incidents of 2), 4 alerts, 1 silence records, "
                    "2 clock events")
