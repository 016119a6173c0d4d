"""Detection rules, deadlines on event time, incidents and recovery metrics (fake clock: ints)."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.event_types import STAGE_OF_TYPE
from streams.domain.config import load_detection_config
from streams.domain.incidents import incident_id
from streams.domain.journey import Journey
from streams.domain.processor import Detector
from streams.reference import reference_incidents

T0 = 1_763_899_200_000  # 2025-11-23T12:00:00Z
S = 1000
MIN = 60 * S
CONFIG = load_detection_config()
_ids = itertools.count()


def ev(type_: str, at_s: float, journey: str = "j-1", **extra: Any) -> dict[str, Any]:
    event = {
        "event_id": extra.pop("event_id", f"e-{next(_ids)}"), "journey_id": journey,
        "customer_id": extra.pop("customer_id", "c-1"), "type": type_, "stage": STAGE_OF_TYPE[type_],
        "channel": "pos", "occurred_at": T0 + int(at_s * S), "store_id": "seoul-01", "staff_id": None,
        "request_id": None, "promised_within_s": None, "incident_id": None, "attrs": {}, "source": None,
    }
    event.update(extra)
    return event


def run(events: list[dict[str, Any]], now_s: float | None = None, detector: Detector | None = None) -> Detector:
    detector = detector or Detector(CONFIG)
    detector.process([(0, e) for e in events], now_ms=T0 + int((now_s or 0) * S))
    return detector


def incidents(detector: Detector) -> list[dict[str, Any]]:
    return [i for j in detector.journeys.values() for i in j.incidents()]


def test_breach_fires_at_the_deadline_with_no_further_event() -> None:
    d = run([ev("ITEM_REQUESTED", 0, request_id="r-1", promised_within_s=600)], now_s=0)
    assert d.tick(T0 + 599 * S).incident_changes == []
    [opened] = d.tick(T0 + 600 * S).incident_changes
    assert opened["rule"] == "promise_breach" and opened["failed_at"] == T0 + 600 * S
    assert opened["incident_id"] == incident_id("j-1", "promise_breach", "r-1")
    assert opened["servqual"] == "reliability" and opened["status"] == "open"


def test_delivery_before_the_deadline_prevents_the_breach() -> None:
    d = run([ev("ITEM_REQUESTED", 0, request_id="r-1"), ev("ITEM_DELIVERED", 599, request_id="r-1")])
    assert d.tick(T0 + 3600 * S).incident_changes == [] and incidents(d) == []


def test_delivery_exactly_at_the_deadline_is_late() -> None:
    # The design: deadlines at or before an event's time fire before the event is applied.
    d = run([ev("ITEM_REQUESTED", 0, request_id="r-1"), ev("ITEM_DELIVERED", 600, request_id="r-1")])
    [incident] = incidents(d)
    assert incident["late_fulfilment_at"] == T0 + 600 * S


def test_late_fulfilment_is_recorded_but_does_not_erase_the_breach() -> None:
    d = run([ev("ORDER_PLACED", 0, promised_within_s=900)])
    d.tick(T0 + 901 * S)
    result = d.process([(0, ev("ORDER_SERVED", 1200))], T0 + 1200 * S)
    change = result.incident_changes[-1]  # before it: the acknowledge SLA breach (due at 1020 s)
    assert change["late_fulfilment_at"] == T0 + 1200 * S and change["sla_acknowledge_breached"]
    assert change["failed_at"] == T0 + 900 * S


def test_default_promise_applies_without_promised_within_s() -> None:
    d = run([ev("ORDER_PLACED", 0), ev("VISIT", 1800, journey="j-2")])
    [incident] = incidents(d)
    assert incident["failed_at"] == T0 + 1800 * S


def test_fulfilment_arriving_before_its_request_matches_it() -> None:
    d = run([ev("ITEM_DELIVERED", 100, request_id="r-9"), ev("ITEM_REQUESTED", 50, request_id="r-9")])
    d.tick(T0 + 10_000 * S)
    assert incidents(d) == []


def test_matching_without_request_id_takes_the_oldest_open_request() -> None:
    d = run([ev("ITEM_REQUESTED", 0), ev("ITEM_REQUESTED", 60), ev("ITEM_DELIVERED", 100), ev("VISIT", 700)])
    [incident] = incidents(d)  # the second request (due at 660) breached, the first was fulfilled
    assert incident["failed_at"] == T0 + 660 * S


def test_abandonment_and_payment_grace() -> None:
    d = run([
        ev("CHECKOUT_STARTED", 0, journey="web-1"),
        ev("PAYMENT_FAILED", 0, journey="pay-ok"), ev("PAYMENT_SUCCEEDED", 60, journey="pay-ok"),
        ev("PAYMENT_FAILED", 0, journey="pay-bad"),
        ev("CHECKOUT_STARTED", 0, journey="web-2"), ev("CHECKOUT_COMPLETED", 100, journey="web-2"),
        ev("VISIT", 1800, journey="other"),
    ])
    rules = sorted((i["journey_id"], i["rule"]) for i in incidents(d))
    assert rules == [("pay-bad", "payment_failed"), ("web-1", "abandonment")]


def test_immediate_rules_complaint_error_and_bad_feedback() -> None:
    d = run([
        ev("COMPLAINT_FILED", 0, journey="a"), ev("RETURN_REQUESTED", 0, journey="b", customer_id="c-2"),
        ev("SERVICE_ERROR", 0, journey="c", customer_id="c-3"),
        ev("FEEDBACK_SUBMITTED", 0, journey="d", customer_id="c-4", attrs={"score": "2"}),
        ev("FEEDBACK_SUBMITTED", 0, journey="e", customer_id="c-5", attrs={"score": "3"}),
    ])
    assert sorted((i["journey_id"], i["rule"]) for i in incidents(d)) == [
        ("a", "complaint"), ("b", "complaint"), ("c", "service_error"), ("d", "negative_feedback")]


def test_recovery_metrics_and_sla_flags() -> None:
    d = run([ev("COMPLAINT_FILED", 0)])
    [opened] = incidents(d)
    result = d.process([(0, e) for e in [
        ev("FAILURE_ACKNOWLEDGED", 90, staff_id="s-7"),
        ev("CUSTOMER_CONTACTED", 1000),  # SLA first response for complaint: 900 s -> breached
        ev("COMPENSATION_GIVEN", 1100, attrs={"kind": "voucher", "amount": "5.0"}),
        ev("COMPENSATION_GIVEN", 1150, attrs={"kind": "voucher", "amount": "2.5"}),
        ev("RECOVERY_RESOLVED", 1200),
        ev("FOLLOW_UP_DONE", 86_000),
        ev("FEEDBACK_SUBMITTED", 90_000, attrs={"score": "5"}),
    ]], T0 + 90_000 * S)
    final = result.incident_changes[-1]
    assert final["incident_id"] == opened["incident_id"]
    assert (final["time_to_acknowledge_s"], final["time_to_first_response_s"], final["time_to_resolve_s"]) == (
        90.0, 1000.0, 1200.0)
    assert final["acknowledged_by"] == "s-7" and final["status"] == "resolved"
    assert (final["sla_acknowledge_breached"], final["sla_first_response_breached"],
            final["sla_resolve_breached"]) == (False, True, False)
    assert (final["compensation_kind"], final["compensation_amount"]) == ("voucher", 7.5)
    assert final["followed_up_at"] == T0 + 86_000 * S
    assert (final["post_recovery_score"], final["recovered"]) == (5, True)
    assert [c["version"] for c in result.incident_changes] == list(range(2, 2 + len(result.incident_changes)))


def test_unacknowledged_incident_breaches_its_sla_on_the_watermark() -> None:
    d = run([ev("SERVICE_ERROR", 0)])
    changes = d.tick(T0 + 121 * S).incident_changes
    assert [c["sla_acknowledge_breached"] for c in changes] == [True]


def test_recovery_by_incident_id_and_unmatched_ones_are_kept() -> None:
    d = run([ev("COMPLAINT_FILED", 0), ev("SERVICE_ERROR", 10)])
    first = incident_id("j-1", "complaint", d.journeys["j-1"].seen_ids()[0])
    result = d.process([(0, ev("FAILURE_ACKNOWLEDGED", 20, incident_id=first)),
                        (0, ev("FAILURE_ACKNOWLEDGED", 20, journey="nobody", customer_id="c-9"))], T0)
    assert [c["incident_id"] for c in result.incident_changes] == [first]
    assert [u["journey_id"] for u in result.unmatched_recovery] == ["nobody"]


def test_without_incident_id_the_newest_open_incident_is_acknowledged() -> None:
    d = run([ev("COMPLAINT_FILED", 0), ev("SERVICE_ERROR", 10), ev("RECOVERY_RESOLVED", 20)])
    result = d.process([(0, ev("FAILURE_ACKNOWLEDGED", 30))], T0)
    [change] = result.incident_changes
    assert change["rule"] == "complaint"  # the service error was resolved already


def test_duplicates_change_nothing() -> None:
    request = ev("ITEM_REQUESTED", 0, request_id="r-1")
    complaint = ev("COMPLAINT_FILED", 5, event_id="dup")
    d = run([request, dict(request), complaint, dict(complaint)])
    assert len(incidents(d)) == 1
    d.take_dirty()
    assert d.process([(0, dict(request))], T0).duplicates == 1
    # ... but the journey is written again: a replayed event may find a state its changelog lacks
    # (a worker killed between its RocksDB write and its changelog record, on a shared JOURNEY_HOME)
    assert d.take_dirty() == {request["journey_id"]: 0}


def test_repeat_customer_gets_higher_severity() -> None:
    rows = reference_incidents([ev("SERVICE_ERROR", 0, journey="j-a"), ev("SERVICE_ERROR", 3600, journey="j-b"),
                                ev("SERVICE_ERROR", 7200, journey="j-c", customer_id="c-new")], CONFIG, T0, T0)
    by_journey = {i["journey_id"]: i for i in rows.values()}
    assert (by_journey["j-a"]["severity"], by_journey["j-a"]["repeat_customer"]) == ("medium", False)
    assert (by_journey["j-b"]["severity"], by_journey["j-b"]["repeat_customer"]) == ("high", True)
    assert by_journey["j-c"]["severity"] == "medium"


def test_customer_coming_back_marks_recovered() -> None:
    rows = reference_incidents([ev("SERVICE_ERROR", 0, journey="j-a"), ev("VISIT", 86_400, journey="j-b")],
                               CONFIG, T0, T0)
    [incident] = rows.values()
    assert incident["recovered"] is True and incident["journey_id"] == "j-a"


def test_out_of_order_within_a_partition_uses_event_time() -> None:
    d = run([ev("ITEM_REQUESTED", 0, journey="j-1", request_id="r"), ev("VISIT", 300, journey="j-2"),
             ev("ITEM_DELIVERED", 200, journey="j-1", request_id="r")])  # older than the watermark
    d.tick(T0 + 5000 * S, partitions=[])
    assert incidents(d) == []


def test_detected_at_is_wall_clock_and_the_lag_is_measured() -> None:
    d = run([ev("SERVICE_ERROR", 0)], now_s=2.5)
    [incident] = incidents(d)
    assert incident["detected_at"] == T0 + 2500 and incident["detection_lag_s"] == 2.5


def test_restart_from_persisted_state_continues_the_same_way() -> None:
    events = [ev("ITEM_REQUESTED", 0, request_id="r"), ev("COMPLAINT_FILED", 10), ev("VISIT", 20, journey="x")]
    live = run(events, now_s=20)
    live_result = live.tick(T0 + 700 * S)
    restored = Detector(CONFIG)
    persisted = {k: _json_copy(v.to_state()) for k, v in run(events, now_s=20).journeys.items()}
    restored.load(((k, Journey.from_state(v)) for k, v in persisted.items()), now_ms=T0 + 20 * S)
    restored_result = restored.tick(T0 + 700 * S)
    assert _strip(live_result.incident_changes) == _strip(restored_result.incident_changes)
    assert restored_result.incident_changes  # the breach and the SLA breaches fired after the restart


def _json_copy(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value))


def _strip(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in c.items() if k not in ("detected_at", "detection_lag_s")} for c in changes]


def _final_states(detector: Detector) -> dict[str, dict[str, Any]]:
    return {i["incident_id"]: _strip([i])[0] for i in incidents(detector)}


TYPES = ["ITEM_REQUESTED", "ITEM_DELIVERED", "ORDER_PLACED", "ORDER_SERVED", "CHECKOUT_STARTED",
         "CHECKOUT_COMPLETED", "PAYMENT_FAILED", "PAYMENT_SUCCEEDED", "COMPLAINT_FILED", "SERVICE_ERROR",
         "FEEDBACK_SUBMITTED", "FAILURE_ACKNOWLEDGED", "CUSTOMER_CONTACTED", "RECOVERY_RESOLVED", "VISIT"]


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=1, max_value=50))
def test_replay_in_any_batches_equals_live_processing(seed: int, batch: int) -> None:
    rng = random.Random(seed)
    clock = 0.0
    events = []
    for i in range(120):
        clock += rng.expovariate(1 / 40)
        journey = f"j-{rng.randrange(6)}"
        events.append(ev(rng.choice(TYPES), clock, journey=journey, event_id=f"s{seed}-{i}",
                         customer_id=f"c-{rng.randrange(3)}", request_id=rng.choice([None, "r-1", "r-2"]),
                         attrs={"score": str(rng.randint(1, 5))}))
    # live: one event at a time, with idle ticks between events at wall-clock pace
    live = Detector(CONFIG)
    for event in events:
        live.tick(event["occurred_at"] - 1)
        live.process([(0, event)], now_ms=event["occurred_at"])
    live.tick(T0 + int(clock * S) + 10 * DAY_S)
    # replay: big batches, wall clock far in the future, one tick at the end
    replay = Detector(CONFIG)
    for start in range(0, len(events), batch):
        replay.process([(0, e) for e in events[start:start + batch]], now_ms=T0 + 400 * DAY_S)
    replay.tick(T0 + 400 * DAY_S + int(clock * S) + 10 * DAY_S)
    assert _final_states(live) == _final_states(replay)


DAY_S = 86_400_000


@pytest.mark.parametrize("store, severity", [("seoul-01", "high"), ("busan-02", "medium")])
def test_per_store_override(tmp_path, store: str, severity: str) -> None:
    from streams.domain.config import DEFAULT_RULES_FILE

    path = tmp_path / "rules.toml"
    override = '\n[overrides."store:seoul-01".service_error]\nseverity = "high"\n'
    path.write_text(DEFAULT_RULES_FILE.read_text() + override)
    d = Detector(load_detection_config(path))
    d.process([(0, ev("SERVICE_ERROR", 0, store_id=store))], T0)
    [incident] = incidents(d)
    assert incident["severity"] == severity


def test_journey_state_expires_on_event_time_and_incidents_keep_theirs_longer() -> None:
    d = run([ev("VISIT", 0, journey="quiet"), ev("SERVICE_ERROR", 0, journey="trouble", customer_id="c-2")])
    d.process([(0, ev("VISIT", 3 * 86_400, journey="later", customer_id="c-3"))], T0)
    assert "quiet" not in d.journeys  # 2 days after its last event
    assert "trouble" in d.journeys  # had an incident: kept 30 days
    assert "quiet" in d.take_dirty()  # the adapter persists the deletion
    d.process([(0, ev("VISIT", 31 * 86_400, journey="much-later", customer_id="c-4"))], T0)
    assert set(d.journeys) == {"much-later"}  # "later" went 2 days after day 3, "trouble" after 30


def test_an_active_journey_is_not_expired() -> None:
    d = run([ev("VISIT", 0, journey="regular")])
    for day in range(1, 6):
        d.process([(0, ev("VISIT", day * 86_400, journey="regular"))], T0)
    assert "regular" in d.journeys


def test_a_promise_longer_than_the_journey_ttl_breaches_instead_of_looping() -> None:
    # 3-day promise against the 2-day journey TTL: the expiry check comes due first while the
    # request is pending; it must move past the request's deadline, not fire again forever.
    three_days = 3 * 86_400
    d = run([ev("ORDER_PLACED", 0, journey="slow", request_id="o-1", promised_within_s=three_days)])
    assert d.tick(T0 + 2 * 86_400 * S + 1).incident_changes == []
    assert "slow" in d.journeys  # still waiting on the order
    [opened] = d.tick(T0 + three_days * S).incident_changes
    assert opened["rule"] == "promise_breach" and opened["failed_at"] == T0 + three_days * S
    d.tick(T0 + 40 * 86_400 * S)
    assert "slow" not in d.journeys  # the incident's longer TTL then runs out as usual
