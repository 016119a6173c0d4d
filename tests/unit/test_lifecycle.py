"""Issue #17, the lifecycle half: final deadlines and withdrawal (case 3), long promises (4), expiry
keyed to what can still arrive (5), an event never expires its own journey (6), a request id used
again (7). Fake clock: ints; the values of the issue's cases are the assertions."""

from __future__ import annotations

import json
from typing import Any

import pytest

from consumers.alert_book import AlertBook
from consumers.alert_policy import AlertPolicy
from infra.base.config import ConfigError, Settings, max_promise_s
from schemas.contract import MAX_PROMISE_S, ContractError, validate_event
from streams.customers.book import CustomerBook, CustomerRules
from streams.domain.config import load_detection_config
from streams.domain.incidents import incident_id
from streams.domain.processor import Detector
from streams.state_codec import decode_journey, encode_journey, encode_tombstone
from tests.unit.test_domain_detector import CONFIG, T0, S, ev, incidents, run

DAY = 86_400 * S


def by_id(detector: Detector) -> dict[str, dict[str, Any]]:
    return {i["incident_id"]: i for i in incidents(detector)}


# ---- case 3: a deadline is final only after the allowed lateness ---------------------------------

def test_on_time_delivery_uploaded_late_withdraws_the_breach_paged_at_the_deadline() -> None:
    # Water promised in 60 s, delivered at 50 s, uploaded at 90 s (the POS was offline).
    d = run([ev("ITEM_REQUESTED", 0, request_id="water", promised_within_s=60)], now_s=0)
    [paged] = d.tick(T0 + 60 * S).incident_changes  # on-call is paged at the deadline
    assert paged["status"] == "open" and paged["failed_at"] == T0 + 60 * S
    d.tick(T0 + 90 * S)
    result = d.process([(0, ev("ITEM_DELIVERED", 50, request_id="water"))], T0 + 90 * S)
    [withdrawn] = result.incident_changes
    assert withdrawn["incident_id"] == paged["incident_id"] and withdrawn["version"] == 2
    assert withdrawn["status"] == "withdrawn" and withdrawn["late_fulfilment_at"] == T0 + 50 * S
    assert result.withdrawn == 1 and result.late_events == 0  # 40 s late: within the 300 s allowed
    # nothing failed: no SLA clock runs on it any more
    assert d.tick(T0 + 3 * 86_400 * S).incident_changes == []


def test_on_time_delivery_later_than_the_allowed_lateness_leaves_the_breach_and_is_counted() -> None:
    d = run([ev("ITEM_REQUESTED", 0, request_id="water", promised_within_s=60)], now_s=0)
    d.tick(T0 + 361 * S)  # deadline 60 s + 300 s allowed lateness: final
    result = d.process([(0, ev("ITEM_DELIVERED", 50, request_id="water"))], T0 + 361 * S)
    [kept] = result.incident_changes
    assert kept["status"] == "open" and kept["late_fulfilment_at"] == T0 + 50 * S
    assert result.withdrawn == 0 and result.late_events == 1 and d.late_by_partition == {0: 1}


def test_a_delivery_after_the_deadline_never_withdraws() -> None:
    d = run([ev("ITEM_REQUESTED", 0, request_id="water", promised_within_s=60)], now_s=0)
    d.tick(T0 + 90 * S)
    [kept] = d.process([(0, ev("ITEM_DELIVERED", 70, request_id="water"))], T0 + 90 * S).incident_changes
    assert kept["status"] == "open" and kept["late_fulfilment_at"] == T0 + 70 * S


def test_withdrawal_on_the_marks_clock_of_the_journeys_stage() -> None:
    d = Detector(CONFIG, clock="marks")
    d.process([(2, ev("ITEM_REQUESTED", 0, request_id="water", promised_within_s=60))], T0)
    [paged] = d.advance(2, T0 + 60 * S, T0 + 60 * S).incident_changes
    d.advance(2, T0 + 90 * S, T0 + 90 * S)
    [withdrawn] = d.process([(2, ev("ITEM_DELIVERED", 50, request_id="water"))], T0 + 90 * S).incident_changes
    assert withdrawn["status"] == "withdrawn" and paged["status"] == "open"
    d.advance(2, T0 + 1000 * S, T0 + 1000 * S)
    late = d.process([(2, ev("VISIT", 600, journey="other"))], T0 + 1000 * S)  # 400 s behind the watermark
    assert late.late_events == 1 and d.late_by_partition == {2: 1}


def test_a_withdrawn_incident_takes_no_recovery_and_feedback_is_not_its_score() -> None:
    d = run([ev("ITEM_REQUESTED", 0, request_id="water", promised_within_s=60)], now_s=0)
    d.tick(T0 + 90 * S)
    d.process([(0, ev("ITEM_DELIVERED", 50, request_id="water"))], T0 + 90 * S)
    result = d.process([(0, ev("FAILURE_ACKNOWLEDGED", 95, staff_id="s-1")),
                        (0, ev("FEEDBACK_SUBMITTED", 120, attrs={"score": "1"}))], T0 + 120 * S)
    assert [e["type"] for e in result.unmatched_recovery] == ["FAILURE_ACKNOWLEDGED"]
    [bad] = result.incident_changes  # the low score is a failure of its own, not a post-recovery score
    assert bad["rule"] == "negative_feedback"
    assert by_id(d)[incident_id("j-1", "promise_breach", "water")]["status"] == "withdrawn"


def test_withdrawn_clears_the_page_for_on_call() -> None:
    book = AlertBook(AlertPolicy(), load_detection_config(), ["oncall"])
    now = T0 + 60 * S
    base = {"incident_id": "inc-w", "version": 1, "journey_id": "j-1", "customer_id": "c-1",
            "rule": "promise_breach", "severity": "medium", "store_id": "seoul-01", "channel": "pos",
            "status": "open", "failed_at": now, "repeat_customer": False, "acknowledged_at": None,
            "acknowledged_by": None, "time_to_acknowledge_s": None, "time_to_resolve_s": None,
            "sla_acknowledge_breached": False, "late_fulfilment_at": None}
    assert [a["kind"] for a in book.on_incident(base, now)] == ["triggered"]
    [cleared] = book.on_incident({**base, "version": 2, "status": "withdrawn", "late_fulfilment_at": now - 10_000},
                                 now + 30_000)
    assert cleared["kind"] == "withdrawn" and cleared["message"].startswith("[WITHDRAWN]")
    assert "fulfilled on time" in cleared["reason"] and book.open == {} and book.is_closed("inc-w")
    restarted = AlertBook(AlertPolicy(), load_detection_config(), ["oncall"])
    restarted.restore(cleared)
    assert restarted.is_closed("inc-w")


def test_a_withdrawn_incident_makes_no_repeat_customer_and_is_not_counted() -> None:
    book = CustomerBook(CustomerRules())
    first = {"k": "i", "incident_id": "a", "journey_id": "j-a", "customer_id": "c-1", "failed_at": T0,
             "severity": "medium", "version": 2, "recovered": None, "repeat_customer": False, "status": "withdrawn"}
    book.take(first)
    [row] = book.take({**first, "incident_id": "b", "journey_id": "j-b", "failed_at": T0 + DAY, "version": 1,
                       "status": "open"})
    assert row["repeat_customer"] is False and row["severity"] == "medium"
    assert book.profile("c-1")["incidents"] == 1
    book.take({"k": "s", "journey_id": "j-later", "customer_id": "c-1", "at": T0 + 100 * DAY})
    book.expire(T0 + 100 * DAY)  # both incidents expire from the book: still one counted
    assert book.profile("c-1")["incidents"] == 1


# ---- case 4: long promises ---------------------------------------------------------------------

@pytest.mark.parametrize("days", [23, 90, 365])
def test_real_promises_are_accepted(days: int) -> None:
    event = validate_event({"event_id": "o-1", "journey_id": "order-1", "type": "ORDER_PLACED", "channel": "web",
                            "occurred_at": "2026-11-23T12:00:00Z", "promised_within_s": days * 86_400})
    assert event["promised_within_s"] == days * 86_400


def test_the_promise_limit_is_configurable_and_refused_beyond_it() -> None:
    assert MAX_PROMISE_S == max_promise_s({}) == 365 * 86_400
    assert max_promise_s({"JOURNEY_MAX_PROMISE_DAYS": "730"}) == 730 * 86_400
    assert Settings.from_env({"JOURNEY_MAX_PROMISE_DAYS": "90"}).to_env()["JOURNEY_MAX_PROMISE_DAYS"] == "90"
    with pytest.raises(ConfigError, match="JOURNEY_MAX_PROMISE_DAYS=30000"):
        max_promise_s({"JOURNEY_MAX_PROMISE_DAYS": "30000"})  # beyond an Avro int of seconds
    with pytest.raises(ContractError, match=f"up to {MAX_PROMISE_S}"):
        validate_event({"event_id": "o-1", "journey_id": "order-1", "type": "ORDER_PLACED", "channel": "web",
                        "occurred_at": "2026-11-23T12:00:00Z", "promised_within_s": MAX_PROMISE_S + 1})


def test_platform_orders_keep_a_23_day_promise() -> None:
    from streams.platforms.common import promise_s

    placed = 1_700_000_000_000
    assert promise_s(until_ms=placed + 23 * DAY, from_ms=placed) == 23 * 86_400  # "promised by" in 23 days
    assert promise_s(str(400 * 86_400)) == MAX_PROMISE_S  # beyond the limit: clamped, the order kept


def test_a_23_day_promise_breaches_on_day_23() -> None:
    d = run([ev("ORDER_PLACED", 0, journey="order", request_id="o", promised_within_s=23 * 86_400)])
    assert d.tick(T0 + 23 * DAY - 1).incident_changes == []
    [breach] = d.tick(T0 + 23 * DAY).incident_changes
    assert breach["failed_at"] == T0 + 23 * DAY


# ---- case 5: links stay while follow-up, feedback and late fulfilment can still come -----------------

def test_late_delivery_and_review_of_a_long_promise_find_their_breach() -> None:
    # Promised in 23 days; breached on day 23; delivered on day 31 (the old rule dropped the
    # journey 30 days after its last event, day 30); reviewed on day 50.
    d = run([ev("ORDER_PLACED", 0, journey="order", request_id="o", promised_within_s=23 * 86_400)])
    d.tick(T0 + 31 * DAY)
    late = d.process([(0, ev("ORDER_SERVED", 31 * 86_400, journey="order", request_id="o"))], T0)
    assert late.incident_changes[-1]["late_fulfilment_at"] == T0 + 31 * DAY and late.journey_starts == []
    review = d.process([(0, ev("FEEDBACK_SUBMITTED", 50 * 86_400, journey="order", attrs={"score": "2"}))], T0)
    [scored] = review.incident_changes
    assert scored["rule"] == "promise_breach" and scored["post_recovery_score"] == 2 and scored["recovered"] is False
    assert review.journey_starts == []  # not a new journey: not "the customer came back"
    # kept until the incident's last change (day 50) + max(30 days, 23 days of promise)
    assert d.keep_until(d.journeys["order"]) == T0 + 80 * DAY


def test_an_expired_journey_is_not_new_when_a_late_event_of_it_arrives() -> None:
    d = run([ev("COMPLAINT_FILED", 0, journey="order", customer_id="c-9")])
    d.tick(T0 + 31 * DAY)
    assert "order" not in d.journeys and d.tombstone_count() == 1
    late = d.process([(0, ev("FEEDBACK_SUBMITTED", 40 * 86_400, journey="order", customer_id="c-9",
                             attrs={"score": "1"}))], T0)
    assert late.journey_starts == []  # no return of the customer
    assert late.incident_changes == []  # feedback on the expired incident: not a fresh (repeat) failure
    assert [e["type"] for e in late.unmatched_recovery] == ["FEEDBACK_SUBMITTED"]
    assert d.journeys["order"].first == T0  # its start stays where it was


def test_a_tombstone_survives_a_restart_and_runs_out() -> None:
    d = run([ev("SERVICE_ERROR", 0, journey="broken", customer_id="c-7"), ev("VISIT", 0, journey="quiet")])
    d.tick(T0 + 31 * DAY)
    assert {"broken", "quiet"} <= set(d.take_dirty())
    assert d.tombstone("quiet", 0) is None  # no incident: a deletion (the customers stage knows its start)
    tomb = d.tombstone("broken", 0)
    assert tomb is not None and d.tombstone_count() == 1
    restored = Detector(CONFIG)
    restored.load([("broken", decode_journey(encode_tombstone(tomb)))], now_ms=T0)
    late = restored.process([(0, ev("FEEDBACK_SUBMITTED", 40 * 86_400, journey="broken", customer_id="c-7",
                                    attrs={"score": "1"}))], T0)
    assert late.journey_starts == [] and late.incident_changes == [] and restored.journeys["broken"].first == T0
    # unrevived tombstones run out `tombstone_days` (60) after the expiry and are persisted as deletions
    d.tick(T0 + 92 * DAY)
    assert d.tombstone_count() == 0 and "broken" in d.take_dirty() and d.tombstone("broken", 0) is None


def test_revived_journey_state_round_trips() -> None:
    d = run([ev("SERVICE_ERROR", 0, journey="j")])
    d.tick(T0 + 31 * DAY)
    d.process([(0, ev("VISIT", 40 * 86_400, journey="j"))], T0)
    again = decode_journey(encode_journey(d.journeys["j"]))
    assert again.old is True and again.first == T0 and json.loads(encode_journey(again))["old"] == 1


# ---- case 6: an event never expires its own journey --------------------------------------------

def test_a_request_that_moves_the_watermark_past_its_own_journeys_expiry_still_breaches() -> None:
    d = run([ev("VISIT", 0, journey="table-4")])
    d.process([(0, ev("ITEM_REQUESTED", 3 * 86_400, journey="table-4", request_id="spoon",
                      promised_within_s=60))], T0)
    assert "table-4" in d.journeys
    [breach] = [c for c in d.tick(T0 + 3 * DAY + 60 * S).incident_changes if c["version"] == 1]
    assert breach["failed_at"] == T0 + 3 * DAY + 60 * S and breach["journey_id"] == "table-4"


def test_an_event_keeps_its_journeys_old_incident() -> None:
    d = run([ev("SERVICE_ERROR", 0, journey="j")])
    result = d.process([(0, ev("FEEDBACK_SUBMITTED", 31 * 86_400, journey="j", attrs={"score": "5"}))], T0)
    scored = result.incident_changes[-1]  # after the SLA breaches the 31 days brought
    assert scored["rule"] == "service_error" and scored["post_recovery_score"] == 5
    assert len(incidents(d)) == 1


# ---- case 7: a request id used again ------------------------------------------------------------

def test_the_same_request_id_after_a_resolved_breach_is_watched_again() -> None:
    d = run([ev("ITEM_REQUESTED", 0, journey="c06-table-4", request_id="spoon", promised_within_s=20)])
    [first] = d.tick(T0 + 20 * S).incident_changes
    d.process([(0, ev("ITEM_DELIVERED", 28, journey="c06-table-4", request_id="spoon")),
               (0, ev("RECOVERY_RESOLVED", 30, journey="c06-table-4", staff_id="s-2")),
               (0, ev("ITEM_REQUESTED", 35, journey="c06-table-4", request_id="spoon", promised_within_s=20))],
              T0 + 35 * S)
    second = [c for c in d.tick(T0 + 55 * S).incident_changes if c["version"] == 1]
    assert [c["failed_at"] for c in second] == [T0 + 55 * S] and second[0]["request_id"] == "spoon"
    assert second[0]["incident_id"] == incident_id("c06-table-4", "promise_breach", "spoon#2") != first["incident_id"]


def test_a_resent_request_is_not_a_new_watch_but_one_asked_after_fulfilment_is() -> None:
    d = run([ev("ITEM_REQUESTED", 0, request_id="spoon", promised_within_s=20)])
    d.tick(T0 + 20 * S)
    d.process([(0, ev("ITEM_REQUESTED", 0, request_id="spoon", promised_within_s=20))], T0 + 21 * S)  # re-sent
    d.tick(T0 + 100 * S)
    assert len(incidents(d)) == 1
    f = run([ev("ITEM_REQUESTED", 0, request_id="spoon", promised_within_s=20),
             ev("ITEM_DELIVERED", 10, request_id="spoon"),
             ev("ITEM_REQUESTED", 100, request_id="spoon", promised_within_s=20)])
    [breach] = f.tick(T0 + 120 * S).incident_changes
    assert breach["failed_at"] == T0 + 120 * S


# ---- late events flagged on the touchpoint row ---------------------------------------------------

def test_late_events_are_reported_for_the_touchpoint_rows_flag() -> None:
    from consumers.sink import LATE_COLUMNS, to_rows
    from tests.unit.test_sink_rows import SETTINGS, Message

    d = Detector(CONFIG, clock="marks")
    d.advance(1, T0 + 1000 * S, T0 + 1000 * S)
    result = d.process([(1, ev("VISIT", 700, journey="a", event_id="on-time")),
                        (1, ev("VISIT", 600, journey="b", event_id="late-one"))], T0 + 1000 * S)
    assert result.late == [("late-one", "b", 400 * S)]  # 400 s behind, 100 s beyond the allowed 300
    messages = [Message(SETTINGS.topics.late, 0, 0, json.dumps({"event_id": "late-one", "journey_id": "b",
                                                                  "late_by_s": 400.0}).encode()),
                Message(SETTINGS.topics.late, 0, 1, b"not json")]
    batch = to_rows(SETTINGS, messages, T0)
    assert dict(zip(LATE_COLUMNS, [c[0] for c in batch.late], strict=True)) == {"event_id": "late-one",
                                                                               "late_by_s": 400.0}
    assert batch.skipped == 1 and ("late_touchpoints", batch.late, LATE_COLUMNS) in batch.tables()


def test_journey_status_shows_late_events_per_partition_and_withdrawals() -> None:
    from rich.console import Console

    from infra.cli.stack_cmds import _pipeline_table

    worker = {"watermark_lag_s": {"0": 1.0}, "pending_deadlines": 3, "late_events": {"2": 4, "0": 1}, "withdrawn": 2}
    console = Console(width=200, record=True)
    console.print(_pipeline_table({"workers": {"worker-0": worker}, "problems": {}}))
    text = console.export_text()
    assert "events later than the allowed lateness" in text and "p0: 1, p2: 4" in text
    assert "incidents withdrawn" in text and "│ 2" in text
