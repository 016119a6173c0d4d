"""The simulator: seeded, ordered, one failure per journey, truth consistent with its events."""

from __future__ import annotations

from typing import Any

from streams.domain.config import load_detection_config
from streams.ground_truth import compare
from streams.reference import reference_incidents
from streams.simulator import Simulation, simulate

T0 = 1_763_899_200_000


def test_same_seed_same_day() -> None:
    a, b = simulate(3, 50, T0, 7200), simulate(3, 50, T0, 7200)
    assert a.events == b.events and a.truth == b.truth


def test_events_are_in_event_time_order_and_failures_are_injected() -> None:
    sim = simulate(5, 300, T0, 3600 * 8)
    times = [e["occurred_at"] for e in sim.events]
    assert times == sorted(times)
    assert len({t.journey_id for t in sim.truth}) == len(sim.truth)  # at most one failure per journey
    assert {t.rule for t in sim.truth} >= {"promise_breach", "payment_failed", "complaint"}


def detect(sim: Simulation) -> list[dict[str, Any]]:
    """The detector and the customer book over the day (every deadline fired long after it)."""
    return list(reference_incidents(sim.events, load_detection_config(), sim.end_ms + 10 * 86_400_000, T0).values())


def test_the_detector_finds_exactly_the_injected_failures() -> None:
    sim = simulate(9, 400, T0, 3600 * 8)
    result = compare(sim, detect(sim))
    assert (result["missed"], result["false_alarms"], result["metric_mismatches"]) == (0, 0, 0)
    assert result["duplicate_incidents"] == 0 and result["ok"]
    assert result["detected"] == len(sim.truth) > 20
    # the truth covers compensation and post-recovery feedback, not only the latencies
    assert any(t.compensation_amount for t in sim.truth) and any(t.feedback_score for t in sim.truth)
    # and the customers' history: repeat failures paged higher, recovered by a return
    assert any(i["repeat_customer"] and i["severity"] != "low" for i in detect(sim))


def test_compare_flags_a_wrong_repeat_severity_and_recovered() -> None:
    sim = simulate(9, 400, T0, 3600 * 8)
    incidents = detect(sim)
    repeat = next(i for i in incidents if i["repeat_customer"])
    wrong = {**repeat, "repeat_customer": False, "recovered": not repeat["recovered"]}
    result = compare(sim, [i for i in incidents if i is not repeat] + [wrong])
    assert result["metric_mismatches"] == 1 and not result["ok"]
    assert set(result["mismatch_list"][0]["expected_got"]) == {"repeat_customer", "recovered"}


def test_compare_flags_a_failure_counted_twice_and_a_wrong_figure() -> None:
    sim = simulate(9, 400, T0, 3600 * 8)
    incidents = detect(sim)
    compensated = next(i for i in incidents if i["compensation_amount"])
    twice = {**incidents[0], "incident_id": incidents[0]["incident_id"] + "-again"}
    wrong = {**compensated, "compensation_amount": compensated["compensation_amount"] * 2}
    result = compare(sim, [i for i in incidents if i is not compensated] + [twice, wrong])
    assert (result["duplicate_incidents"], result["metric_mismatches"], result["missed"]) == (1, 1, 0)
    assert result["duplicate_list"] == [(incidents[0]["journey_id"], incidents[0]["rule"])]
    assert result["mismatch_list"][0]["expected_got"] == {"compensation_amount": (5.0, 10.0)}
    assert not result["ok"]
