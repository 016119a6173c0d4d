"""Issue 21 as plain functions (fake clocks): store hours and business time, pauses, unknown config
keys, grouping, inhibition, silences that end, out-of-hours routing, the ack timeout, page order."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from consumers.alert_book import AlertBook
from consumers.alert_policy import AlertPolicy, load_alert_policy
from consumers.silences import new_silence, parse_weekdays, silence_record
from streams.domain.business_time import (
    StoreCalendar,
    add_business_seconds,
    business_seconds,
    is_open,
    next_opening,
    parse_interval,
)
from streams.domain.config import DEFAULT_RULES_FILE, RuleConfigError, load_detection_config
from streams.domain.stores import load_store_calendars
from tests.unit.test_domain_detector import MIN, S, ev, incidents, run

LA = StoreCalendar("America/Los_Angeles", dict.fromkeys(range(7), parse_interval("10:00-22:00")))


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).astimezone(UTC).timestamp() * 1000)


# ---- store hours and business time ----------------------------------------------------------------

def test_business_time_counts_only_opening_hours_in_the_store_zone() -> None:
    night = ms("2026-11-30T03:41:00-08:00")  # 03:41 in Los Angeles
    assert not is_open(LA, night) and is_open(LA, ms("2026-11-30T10:00:00-08:00"))
    assert next_opening(LA, night) == ms("2026-11-30T10:00:00-08:00")
    assert business_seconds(LA, night, ms("2026-11-30T10:05:00-08:00")) == 300
    # the acknowledge target (300 s) of a complaint at 03:41 falls due at 10:05 local, not 03:46
    assert add_business_seconds(LA, night, 300) == ms("2026-11-30T10:05:00-08:00")
    # across closing time: 21:58 + 5 min of open time = 10:03 the next day
    assert add_business_seconds(LA, ms("2026-11-30T21:58:00-08:00"), 300) == ms("2026-12-01T10:03:00-08:00")
    # a store without hours is open around the clock: business time is calendar time
    assert business_seconds(None, 0, 5000) == 5.0 and add_business_seconds(StoreCalendar(), 0, 5) == 5000


def test_holidays_and_closed_weekdays_count_nothing_and_dst_keeps_local_hours() -> None:
    cal = StoreCalendar("America/Los_Angeles", {0: (36000, 79200)}, frozenset({datetime(2026, 12, 7).date()}))
    # Mondays only; 2026-12-07 (a Monday) is a holiday: the next opening is Monday 2026-12-14
    assert next_opening(cal, ms("2026-12-01T12:00:00-08:00")) == ms("2026-12-14T10:00:00-08:00")
    # DST began on Sunday 2026-03-08: Monday opens at 10:00 local = 17:00 UTC (18:00 UTC before)
    assert next_opening(cal, ms("2026-03-08T12:00:00-08:00")) == ms("2026-03-09T17:00:00+00:00")


def test_stores_file_hours_and_its_unknown_keys_are_errors_naming_key_and_file(tmp_path: Path) -> None:
    calendars = load_store_calendars()
    assert calendars["la-01"].timezone == "America/Los_Angeles" and calendars["la-01"].hours[0] == (36000, 79200)
    assert calendars["seoul-01"].hours is None  # no hours: open around the clock
    bad = tmp_path / "stores.toml"
    bad.write_text('[stores."x"]\ntimezone = "UTC"\nopening = "10:00"\n')
    with pytest.raises(RuleConfigError, match=r"stores.toml: unknown key \"stores.'x'.opening\"|unknown key"):
        load_store_calendars(bad)
    with pytest.raises(RuleConfigError, match="opening") as err:
        load_store_calendars(bad)
    assert str(bad) in str(err.value)
    bad.write_text('[stores."x"]\nhours = "22:00-10:00"\n')
    with pytest.raises(RuleConfigError, match="close must come after the open"):
        load_store_calendars(bad)


def test_unknown_keys_in_the_rules_file_are_errors_naming_key_and_file(tmp_path: Path) -> None:
    case = tmp_path / "09-rules-business-hours.toml"  # case 09: what a shop manager would write
    case.write_text(DEFAULT_RULES_FILE.read_text() + '\n[rules.complaint.business_hours]\ntimezone = "Asia/Seoul"\n'
                    'open = "10:00"\nclose = "22:00"\n')
    with pytest.raises(RuleConfigError, match=r"rules.complaint.business_hours") as err:
        load_detection_config(case)
    assert str(case) in str(err.value)
    for extra, key in (("\n[detection]\nsla_clok = 'business'\n", "detection.sla_clok"),
                       ("\n[alerting.grouping]\ngroup_intervall_s = 5\n", "alerting.grouping.group_intervall_s")):
        path = tmp_path / "rules.toml"
        text = DEFAULT_RULES_FILE.read_text()
        if "[detection]" in extra:
            text = text.replace("[detection]\n", "[detection]\nsla_clok = 'business'\n", 1)
            extra = ""
        if "[alerting.grouping]" in extra:
            text = text.replace("group_interval_s = 60", "group_intervall_s = 5")
            extra = ""
        path.write_text(text + extra)
        with pytest.raises(RuleConfigError, match=key.replace(".", r"\.")):
            load_detection_config(path) if key.startswith("detection") else load_alert_policy(path)


# ---- the detector: business-time SLA clocks and pauses ------------------------------------------

def _la_config(**changes: Any) -> Any:
    return replace(load_detection_config(), calendars={"la-01": LA}, **changes)


def test_overnight_complaint_sla_counts_from_opening_and_records_both_durations() -> None:
    from streams.domain.processor import Detector

    night = ms("2026-11-30T03:41:00-08:00")
    d = Detector(_la_config())
    complaint = ev("COMPLAINT_FILED", 0, "j-la", store_id="la-01", channel="web", occurred_at=night,
                   attrs={"text": "wrong size delivered"})
    [opened] = d.process([(0, complaint)], night).incident_changes
    assert opened["about"] == "wrong size delivered"
    assert opened["sla_acknowledge_due_at"] == ms("2026-11-30T10:05:00-08:00")
    # the whole night passes: no acknowledge breach before 10:05 local
    assert d.tick(ms("2026-11-30T10:04:59-08:00")).incident_changes == []
    ack = ev("FAILURE_ACKNOWLEDGED", 0, "j-la", store_id="la-01", occurred_at=ms("2026-11-30T10:02:00-08:00"))
    [acked] = d.process([(0, ack)], ms("2026-11-30T10:02:00-08:00")).incident_changes
    assert acked["time_to_acknowledge_s"] == (6 * 60 + 21) * 60  # calendar: 6 h 21 min
    assert acked["business_time_to_acknowledge_s"] == 120 and not acked["sla_acknowledge_breached"]
    calendar_clock = Detector(_la_config(sla_clock="calendar"))
    calendar_clock.process([(0, {**complaint, "event_id": "other"})], night)
    [breached] = calendar_clock.tick(night + 301 * S).incident_changes  # counted the night
    assert breached["sla_acknowledge_breached"]


def feed(d: Any, *events: dict[str, Any]) -> list[dict[str, Any]]:
    """Events in, as they arrive (the wall clock at the newest event time)."""
    return d.process([(0, e) for e in events], max(e["occurred_at"] for e in events)).incident_changes


def test_waiting_on_the_customer_pauses_the_resolve_clock_and_records_the_pause() -> None:
    # case 12: payment fails, staff ack and ask the customer to retry; the customer is back 10 min later
    events = [ev("PAYMENT_FAILED", 0, "j-pay", channel="web", store_id="web-shop")]
    d = run(events)
    [opened] = d.tick(ev("VISIT", 120)["occurred_at"]).incident_changes
    assert opened["rule"] == "payment_failed" and opened["sla_resolve_due_at"] == opened["failed_at"] + 600 * S
    t = 120  # failed_at, in seconds after T0
    feed(d, ev("FAILURE_ACKNOWLEDGED", t + 5, "j-pay"), ev("CUSTOMER_CONTACTED", t + 5, "j-pay"),
         ev("WAITING_ON_CUSTOMER", t + 5, "j-pay", attrs={"note": "asked to retry with another card"}))
    waiting = incidents(d)[0]
    assert waiting["waiting_since"] is not None and waiting["sla_resolve_due_at"] is None
    # 600 s pass (the resolve target): nothing breaches while waiting
    assert d.tick(ev("VISIT", t + 601)["occurred_at"]).incident_changes == []
    back = feed(d, ev("PAYMENT_SUCCEEDED", t + 605, "j-pay"))[-1]  # the customer is back (and paid, late)
    assert back["waiting_since"] is None and back["paused_s"] == 600.0
    assert back["sla_resolve_due_at"] == back["failed_at"] + 1200 * S  # moved on by the pause
    [resolved] = feed(d, ev("RECOVERY_RESOLVED", t + 635, "j-pay"))
    assert resolved["time_to_resolve_s"] == 635 and resolved["paused_s"] == 600
    assert not resolved["sla_resolve_breached"]


def test_customer_replied_resumes_and_an_unpaused_resolve_still_breaches() -> None:
    d = run([ev("COMPLAINT_FILED", 0, "j-c", event_id="cf")])
    feed(d, ev("WAITING_ON_CUSTOMER", 10, "j-c"), ev("CUSTOMER_REPLIED", 70, "j-c"))
    [inc] = incidents(d)
    assert inc["paused_s"] == 60 and inc["sla_resolve_due_at"] == inc["failed_at"] + (86_400 + 60) * S
    assert not d.tick(inc["failed_at"] + (86_400 + 59) * S).incident_changes[-1]["sla_resolve_breached"]
    assert d.tick(inc["failed_at"] + (86_400 + 60) * S).incident_changes[-1]["sla_resolve_breached"]


# ---- the alert book: groups, holds, ack timeout --------------------------------------------------

NOW = ms("2026-11-30T12:00:00+00:00")
POLICY = AlertPolicy(repeat_interval_s=60, max_level=2, group_interval_s=60)


def inc(iid: str, at: int = NOW, **changes: Any) -> dict[str, Any]:
    base = {"incident_id": iid, "version": 1, "journey_id": f"j-{iid}", "customer_id": f"c-{iid}",
            "rule": "promise_breach", "severity": "medium", "store_id": "busan-01", "channel": "pos",
            "status": "open", "failed_at": at, "repeat_customer": False, "acknowledged_at": None,
            "acknowledged_by": None, "time_to_acknowledge_s": None, "time_to_resolve_s": None,
            "sla_acknowledge_breached": False, "about": "ORDER_PLACED meal"}
    return {**base, **changes}


def book(policy: AlertPolicy = POLICY, calendars: dict[str, StoreCalendar] | None = None) -> AlertBook:
    return AlertBook(policy, replace(load_detection_config(), calendars=calendars or {}), ["oncall"])


def pages(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for a in alerts if "webhook:oncall" in a["channels"] and a["paged"]]


def test_a_storm_of_forty_breaches_pages_once_per_group_interval_and_records_every_incident() -> None:
    b = book()
    published: list[dict[str, Any]] = []
    for i in range(40):  # case 02: one every 15 s over 10 minutes, then their ack SLA breaches
        at = NOW + i * 15 * S
        published += b.tick(at) + b.on_incident(inc(f"inc-{i}", at), at)
        if i >= 8:
            j = i - 8
            published += b.on_incident(inc(f"inc-{j}", NOW + j * 15 * S, version=2, sla_acknowledge_breached=True), at)
    for k in range(1, 30):
        published += b.tick(NOW + 600 * S + k * 10 * S)
    paged = pages(published)
    assert paged[0]["kind"] == "triggered" and paged[0]["incident_id"] == "inc-0"  # the first pages at once
    times = [a["at"] for a in paged]
    assert all(b - a >= 60 * S for a, b in zip(times, times[1:], strict=False))  # at most one per interval
    assert len(paged) <= 1 + (900 // 60)  # 16 at most in 15 min, against 94 before
    summaries = [a for a in paged if a["kind"] == "grouped"]
    assert summaries and summaries[0]["group_key"] == "busan-01/promise_breach"
    assert "open" in summaries[0]["message"] and "newest: journey" in summaries[0]["message"]
    assert {a["incident_id"] for a in published if a["kind"] == "triggered"} == {f"inc-{i}" for i in range(40)}
    assert len(b.group_members("busan-01/promise_breach", "ack")) == 40
    assert summaries[-1]["group_size"] == 40


def test_a_lone_incident_escalates_on_time_despite_grouping() -> None:
    b = book()
    b.on_incident(inc("inc-1"), NOW)
    up = b.on_incident(inc("inc-1", version=2, sla_acknowledge_breached=True), NOW + 120 * S)
    assert [a["kind"] for a in pages(up)] == ["escalated"]


def test_an_open_service_error_inhibits_dependent_pages_of_its_store_until_it_resolves() -> None:
    b = book()
    assert [a["kind"] for a in b.on_incident(inc("err", rule="service_error"), NOW)] == ["triggered"]
    held = b.on_incident(inc("late-1"), NOW + S)
    assert [a["kind"] for a in held] == ["suppressed"] and "inhibited while service_error err" in held[0]["reason"]
    elsewhere = b.on_incident(inc("late-2", store_id="seoul-01"), NOW + S)
    assert [a["kind"] for a in elsewhere] == ["triggered"]  # another store pages
    assert b.tick(NOW + 10 * S) == []
    b.on_incident(inc("err", rule="service_error", version=2, status="resolved"), NOW + 20 * S)
    released = b.tick(NOW + 21 * S)
    assert [(a["kind"], a["incident_id"]) for a in released] == [("triggered", "late-1")]
    assert "inhibition ended" in released[0]["reason"]


def test_a_silence_that_ends_pages_what_it_held_once_and_the_page_never_shows_it_expired() -> None:
    b = book()
    silence = new_silence("seoul-02", None, NOW, 60, "ops", "till replacement")
    b.silences.apply(silence_record(silence, "create", NOW))
    complaint = inc("c03", NOW + 5 * S, rule="complaint", severity="high", store_id="seoul-02")
    assert [a["kind"] for a in b.on_incident(complaint, NOW + 5 * S)] == ["suppressed"]
    assert b.tick(NOW + 59 * S) == []
    row = b.open_incidents(NOW + 59 * S)[0]
    assert "silenced by" in row["not_paged_because"]
    after = b.tick(NOW + 61 * S)
    assert [a["kind"] for a in pages(after)] == ["triggered"] and "silence ended" in after[0]["reason"]
    assert b.tick(NOW + 62 * S) == []  # once
    row = b.open_incidents(NOW + 62 * S)[0]
    assert row["paged"] and row["not_paged_because"] is None
    # ... and escalates from then on when its acknowledge SLA breaches
    up = b.on_incident({**complaint, "version": 2, "sla_acknowledge_breached": True}, NOW + 305 * S)
    assert [a["kind"] for a in up] == ["escalated"]


def test_an_incident_acknowledged_during_the_silence_does_not_page_when_it_ends() -> None:
    b = book()
    b.silences.apply(silence_record(new_silence("seoul-02", None, NOW, 60, "ops", None), "create", NOW))
    b.on_incident(inc("x", store_id="seoul-02"), NOW)
    b.on_incident(inc("x", store_id="seoul-02", version=2, status="acknowledged", acknowledged_at=NOW + S,
                      acknowledged_by="s-1", time_to_acknowledge_s=1.0), NOW + S)
    assert pages(b.tick(NOW + 61 * S)) == []


def test_a_recurring_silence_mutes_only_in_its_local_window() -> None:
    assert parse_weekdays("fri-mon") == ("mon", "fri", "sat", "sun")
    with pytest.raises(ValueError, match="days are"):
        parse_weekdays("funday")
    window = new_silence("la-01", None, NOW - 7 * 86_400_000, 30 * 86_400, "ops", "nightly till sync", "mon-fri",
                         "02:00-04:00")
    monday_3am = ms("2026-11-30T03:00:00-08:00")
    assert window.matches("la-01", "promise_breach", monday_3am, "America/Los_Angeles")
    assert window.window_end(monday_3am, "America/Los_Angeles") == ms("2026-11-30T04:00:00-08:00")
    assert not window.matches("la-01", "promise_breach", ms("2026-11-30T05:00:00-08:00"), "America/Los_Angeles")
    assert not window.matches("la-01", "promise_breach", ms("2026-12-05T03:00:00-08:00"), "America/Los_Angeles")
    with pytest.raises(ValueError, match="between"):
        new_silence("la-01", None, NOW, 60, "ops", None, None, "04:00-02:00")


def test_out_of_hours_pos_waits_for_opening_web_pages_only_critical_then_the_route_at_opening() -> None:
    b = book(calendars={"la-01": LA})
    night = ms("2026-11-30T03:41:00-08:00")
    web = inc("web", night, rule="complaint", severity="high", store_id="la-01", channel="web")
    held = b.on_incident(web, night)
    assert [a["kind"] for a in held] == ["suppressed"] and "waits for opening (Mon 10:00" in held[0]["reason"]
    assert [a["kind"] for a in b.on_incident(inc("pos", night, store_id="la-01"), night)] == ["suppressed"]
    critical = b.on_incident(inc("crit", night, severity="critical", store_id="la-01", channel="web",
                                 rule="complaint"), night)
    assert [a["kind"] for a in critical] == ["triggered"]
    # nothing all night: no escalation, no reminder for the held ones
    quiet = [a for t in range(night, ms("2026-11-30T09:59:00-08:00"), 600 * S) for a in b.tick(t)]
    assert {a["incident_id"] for a in pages(quiet)} <= {"crit"}
    opening = b.tick(ms("2026-11-30T10:00:00-08:00"))
    assert {a["incident_id"] for a in opening if a["kind"] == "triggered"} == {"web", "pos"}


def test_an_acknowledged_incident_not_resolved_in_time_re_notifies_unless_waiting_on_the_customer() -> None:
    b = book(replace(POLICY, ack_timeout_s=600, group_interval_s=0.001))
    b.on_incident(inc("a"), NOW)
    b.on_incident(inc("a", version=2, status="acknowledged", acknowledged_at=NOW + S, acknowledged_by="s-1",
                      time_to_acknowledge_s=1.0), NOW + S)
    assert b.tick(NOW + 600 * S) == []
    again = b.tick(NOW + 602 * S)
    assert [a["kind"] for a in pages(again)] == ["reminded"] and "not resolved within 10 min" in again[0]["reason"]
    b.on_incident(inc("a", version=3, status="acknowledged", acknowledged_at=NOW + S, acknowledged_by="s-1",
                      time_to_acknowledge_s=1.0, waiting_since=NOW + 700 * S), NOW + 700 * S)
    assert b.tick(NOW + 1203 * S) == []


def test_the_page_sorts_by_time_left_within_severity() -> None:
    b = book(replace(POLICY, group_by=("store_id", "rule", "customer_id")))
    b.on_incident(inc("five-min", rule="complaint", severity="high", sla_acknowledge_due_at=NOW + 300 * S), NOW)
    b.on_incident(inc("106-s", NOW - 194 * S, rule="complaint", severity="high",
                      sla_acknowledge_due_at=NOW + 106 * S), NOW)
    b.on_incident(inc("low", rule="abandonment", severity="low", sla_acknowledge_due_at=NOW + 5 * S), NOW)
    b.on_incident(inc("crit", rule="complaint", severity="critical", sla_acknowledge_due_at=NOW + 900 * S), NOW)
    order = [r["incident_id"] for r in b.open_incidents(NOW)]
    assert order == ["crit", "106-s", "five-min", "low"]
    assert b.open_incidents(NOW)[1]["time_left_s"] == 106.0 and b.open_incidents(NOW)[1]["about"]


def test_minutes_and_hours_read_as_people_say_them() -> None:
    from consumers.alert_book import _duration

    assert [_duration(s) for s in (45, 150, 3600 + 20 * 60, 2 * 86400 + 4 * 3600)] == [
        "45 s", "2 min", "1 h 20 min", "2 d 4 h"]
    assert MIN == 60 * S


def test_a_contact_that_says_waiting_on_customer_pauses_as_case_12_writes_it() -> None:
    d = run([ev("COMPLAINT_FILED", 0, "j-w", event_id="cw")])
    feed(d, ev("CUSTOMER_CONTACTED", 5, "j-w", attrs={"status": "waiting on customer", "note": "retry the card"}))
    [inc] = incidents(d)
    assert inc["waiting_since"] == inc["failed_at"] + 5 * S and inc["first_response_at"] is not None
    assert inc["sla_resolve_due_at"] is None
    back = feed(d, ev("VISIT", 65, "j-w"))[-1]  # the customer's own touchpoint ends the wait
    assert back["paused_s"] == 60 and back["sla_resolve_due_at"] == back["failed_at"] + (86_400 + 60) * S


def test_a_paged_pos_incident_is_not_escalated_at_night_but_at_opening() -> None:
    b = book(calendars={"la-01": LA})
    evening = ms("2026-11-30T21:59:00-08:00")  # a minute before closing
    b.on_incident(inc("pos", evening, store_id="la-01"), evening)
    up = b.on_incident(inc("pos", evening, store_id="la-01", version=2, sla_acknowledge_breached=True), evening)
    assert [a["kind"] for a in up] == ["escalated"]  # still open: escalates
    night = [a for t in range(evening + 120 * S, ms("2026-12-01T09:59:00-08:00"), 300 * S) for a in b.tick(t)]
    assert [a for a in night if a["kind"] in ("escalated", "reminded")] == []
    morning = b.tick(ms("2026-12-01T10:00:00-08:00"))
    assert [a["kind"] for a in morning] == ["escalated"]


def test_a_flapping_group_pages_no_faster_than_its_interval_and_a_restart_remembers_it() -> None:
    b = book()
    first = b.on_incident(inc("f1"), NOW)
    b.on_incident(inc("f1", version=2, status="resolved", time_to_resolve_s=5.0), NOW + 5 * S)
    assert b.tick(NOW + 6 * S) == []
    again = b.on_incident(inc("f2", NOW + 10 * S), NOW + 10 * S)  # the same store and rule breaks again
    assert pages(again) == [] and "summarised in the group's next page" in again[0]["reason"]
    [summary] = b.tick(NOW + 60 * S)
    assert summary["kind"] == "grouped" and "1 resolved, 1 new" in summary["message"]
    assert "journey j-f2" in summary["message"] and summary["group_size"] == 1
    restarted = book()
    for alert in first + again + [summary]:
        restarted.restore(alert)
    assert pages(restarted.on_incident(inc("f3", NOW + 70 * S), NOW + 70 * S)) == []  # still within the interval
