"""The simulator: seeded, ordered, one failure per journey, truth consistent with its events."""

from __future__ import annotations

from streams.demo import compare
from streams.domain.config import load_detection_config
from streams.domain.processor import Detector
from streams.simulator import simulate

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


def test_the_detector_finds_exactly_the_injected_failures() -> None:
    sim = simulate(9, 400, T0, 3600 * 8)
    detector = Detector(load_detection_config())
    detector.process([(hash(e["journey_id"]) % 4, e) for e in sim.events], now_ms=T0)
    detector.tick(sim.end_ms + 10 * 86_400_000)  # long after the day: every deadline has fired
    incidents = [i for j in detector.journeys.values() for i in j["inc"].values()]
    result = compare(sim, incidents)
    assert (result["missed"], result["false_alarms"], result["metric_mismatches"]) == (0, 0, 0)
    assert result["detected"] == len(sim.truth) > 20
