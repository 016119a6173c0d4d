"""The alert lifecycle as a plain state machine (fake clock, no Kafka)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from consumers.alert_book import AlertBook, delivery_failed_alert
from consumers.alert_policy import AlertPolicy, load_alert_policy
from consumers.silences import Silence, new_silence, silence_record
from streams.domain.config import DEFAULT_RULES_FILE, RuleConfigError, load_detection_config

NOW = 1_800_000_000_000
POLICY = AlertPolicy(repeat_interval_s=60, max_level=2)


def incident(version: int = 1, **changes: Any) -> dict[str, Any]:
    base = {
        "incident_id": "inc-1", "version": version, "journey_id": "j-1", "customer_id": "c-1",
        "rule": "promise_breach", "severity": "medium", "store_id": "seoul-01", "channel": "pos",
        "status": "open", "failed_at": NOW - 5_000, "repeat_customer": False, "acknowledged_at": None,
        "acknowledged_by": None, "time_to_acknowledge_s": None, "time_to_resolve_s": None,
        "sla_acknowledge_breached": False,
    }
    return {**base, **changes}


def book(policy: AlertPolicy = POLICY, webhooks: tuple[str, ...] = ("oncall",)) -> AlertBook:
    return AlertBook(policy, load_detection_config(), list(webhooks))


def kinds(alerts: list[dict[str, Any]]) -> list[str]:
    return [a["kind"] for a in alerts]


def test_one_page_per_incident_however_many_changes_repeat_it() -> None:
    b = book()
    first = b.on_incident(incident(), NOW)
    assert kinds(first) == ["triggered"] and first[0]["paged"]
    assert first[0]["channels"] == ["topic", "terminal", "page", "webhook:oncall"]
    assert b.on_incident(incident(), NOW + 1) == []  # the same version again
    assert b.on_incident(incident(version=2, compensation_amount=5.0), NOW + 2) == []  # a change that pages nobody


def test_escalates_at_the_ack_sla_then_every_repeat_interval_up_to_max_then_reminds() -> None:
    b = book(replace(POLICY, group_interval_s=0.001))  # a group of one: no folding in the way
    b.on_incident(incident(), NOW)
    assert b.tick(NOW + 600_000) == []  # nothing is due before the SLA breach
    escalated = b.on_incident(incident(version=2, sla_acknowledge_breached=True), NOW + 1_000)
    assert kinds(escalated) == ["escalated"] and escalated[0]["level"] == 1
    assert "not acknowledged within 2 min" in escalated[0]["reason"]
    assert b.tick(NOW + 1_000 + 59_999) == []
    second = b.tick(NOW + 61_000)
    assert kinds(second) == ["escalated"] and second[0]["level"] == 2
    third = b.tick(NOW + 121_000)
    assert kinds(third) == ["reminded"] and third[0]["level"] == 2
    assert third[0]["alert_id"] != b.tick(NOW + 181_000)[0]["alert_id"]  # each reminder is its own record


def test_acknowledgement_stops_escalation_and_resolution_closes_for_good() -> None:
    b = book()
    b.on_incident(incident(), NOW)
    b.on_incident(incident(version=2, sla_acknowledge_breached=True), NOW)
    acked = b.on_incident(incident(version=3, status="acknowledged", acknowledged_at=NOW + 10_000,
                                   acknowledged_by="s-7", time_to_acknowledge_s=15.0), NOW + 10_000)
    assert kinds(acked) == ["acknowledged"] and "by s-7 after 15 s" in acked[0]["reason"]
    # no more escalation; the ack, folded within the group interval, is in the group's next summary
    assert kinds(b.tick(NOW + 1_000_000)) == ["grouped"] and b.tick(NOW + 1_700_000) == []
    resolved = b.on_incident(incident(version=4, status="resolved", acknowledged_at=NOW + 10_000,
                                      time_to_resolve_s=300.0), NOW + 20_000)
    assert kinds(resolved) == ["resolved"]
    assert b.open == {}
    assert b.on_incident(incident(version=5, status="resolved"), NOW + 30_000) == []  # feedback later: nothing


def test_incidents_older_than_the_paging_horizon_are_recorded_not_paged_nor_escalated() -> None:
    b = book()
    old = b.on_incident(incident(failed_at=NOW - 2 * 3_600_000), NOW)
    assert kinds(old) == ["suppressed"] and not old[0]["paged"] and old[0]["channels"] == ["topic"]
    assert "replay or backfill" in old[0]["reason"]
    assert b.on_incident(incident(version=2, sla_acknowledge_breached=True, failed_at=NOW - 2 * 3_600_000), NOW) == []


def test_silenced_store_pages_nobody_but_is_recorded_and_other_stores_still_page() -> None:
    b = book()
    silence = new_silence("seoul-01", None, NOW - 1000, 3600, "manager", "renovation")
    b.silences.apply(silence_record(silence, "create", NOW - 1000))
    muted = b.on_incident(incident(), NOW)
    assert kinds(muted) == ["suppressed"] and "silenced by sil-" in muted[0]["reason"]
    paged = b.on_incident(incident(incident_id="inc-2", store_id="busan-01"), NOW)
    assert kinds(paged) == ["triggered"]
    b.silences.apply(silence_record(silence, "expire", NOW + 1))
    assert kinds(b.on_incident(incident(incident_id="inc-3"), NOW + 2)) == ["triggered"]


def test_a_silence_needs_a_scope_and_a_duration() -> None:
    with pytest.raises(ValueError, match="--store and/or --rule"):
        new_silence(None, None, NOW, 60, "x", None)
    with pytest.raises(ValueError, match="positive duration"):
        new_silence("s", None, NOW, 0, "x", None)
    assert Silence("s1", None, "complaint", NOW, NOW + 10, "x").matches("any-store", "complaint", NOW + 9)


def test_severity_routes_webhooks_and_escalation_adds_the_escalation_hooks() -> None:
    policy = replace(POLICY, routes={"low": (), "medium": ("oncall",), "high": ("oncall",), "critical": ("*",)},
                     escalation_adds=("managers",))
    b = book(policy, webhooks=("oncall", "managers"))
    low = b.on_incident(incident(severity="low"), NOW)
    assert low[0]["channels"] == ["topic", "terminal", "page"]  # paged on the page and terminal only
    medium = b.on_incident(incident(incident_id="inc-2", store_id="seoul-02"), NOW)  # its own group
    assert medium[0]["channels"][-1:] == ["webhook:oncall"]
    up = b.on_incident(incident(incident_id="inc-2", store_id="seoul-02", version=2, sla_acknowledge_breached=True),
                       NOW + 60_000)
    assert up[0]["channels"][-2:] == ["webhook:oncall", "webhook:managers"]


def test_a_restarted_book_restored_from_published_alerts_pages_nobody_twice() -> None:
    b = book()
    published = b.on_incident(incident(), NOW) + b.on_incident(incident(version=2, sla_acknowledge_breached=True), NOW)
    published += b.on_incident(incident(incident_id="inc-old", failed_at=NOW - 7_200_000), NOW)
    restarted = book()
    for alert in published:
        restarted.restore(alert)
    # the notifier replays the incidents topic after restoring: nothing is published again
    replayed = restarted.on_incident(incident(), NOW + 5_000)
    replayed += restarted.on_incident(incident(version=2, sla_acknowledge_breached=True), NOW + 5_000)
    replayed += restarted.on_incident(incident(incident_id="inc-old", failed_at=NOW - 7_200_000), NOW + 5_000)
    assert replayed == []
    assert kinds(restarted.tick(NOW + 61_000)) == ["escalated"]  # the escalation clock carried over


def test_pipeline_stall_pages_once_and_resolves_once() -> None:
    b = book()
    stalled = b.on_pipeline("worker-0", "heartbeat 40 s old", NOW)
    assert kinds(stalled) == ["triggered"] and stalled[0]["severity"] == "critical"
    assert b.on_pipeline("worker-0", "heartbeat 41 s old", NOW + 1000) == []
    assert kinds(b.on_pipeline("worker-0", None, NOW + 2000)) == ["resolved"]
    assert b.on_pipeline("worker-0", None, NOW + 3000) == []


def test_open_incidents_show_age_countdown_and_customer_history() -> None:
    b = book()
    b.on_incident(incident(failed_at=NOW - 10 * 86_400_000 + 1, incident_id="inc-0"), NOW - 10 * 86_400_000 + 1)
    b.on_incident(incident(), NOW)
    rows = {r["incident_id"]: r for r in b.open_incidents(NOW)}
    assert rows["inc-1"]["age_s"] == 5.0 and rows["inc-1"]["ack_due_in_s"] == 115.0
    assert rows["inc-1"]["customer_incidents_30d"] == 2


def test_delivery_failure_record_names_the_webhook_never_its_url() -> None:
    alert = book().on_incident(incident(), NOW)[0]
    failed = delivery_failed_alert(alert, "oncall", "HTTP 500", 6, NOW + 1)
    assert failed["kind"] == "delivery_failed" and failed["alert_id"].endswith(":failed:oncall")
    assert "http" not in failed["reason"].lower().replace("http 500", "")


def test_alerting_policy_loads_from_the_rules_file(tmp_path) -> None:
    assert load_alert_policy().paging_horizon_s == 3600
    bad = tmp_path / "rules.toml"
    bad.write_text(DEFAULT_RULES_FILE.read_text()
                   + '\n[alerting.routes.extra]\n')
    with pytest.raises(RuleConfigError):
        load_alert_policy(bad)
