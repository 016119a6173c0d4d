"""Self-monitoring tells busy from stalled (issue 17, case 10): plain logic over snapshots."""

from __future__ import annotations

from typing import Any

from consumers.pipeline_health import StallDetector

T0 = 1_764_500_000_000


def snapshot(at_s: float, lag: int, events: int, watermark: int = T0 - 86_400_000) -> dict[str, Any]:
    at = T0 + int(at_s * 1000)
    worker = {"heartbeat_age_s": 0.5, "watermarks": {"0": watermark, "1": watermark}, "events": events,
              "intake_events": events}
    return {"at": at, "workers": {"worker-0": worker}, "sink": None, "worker_lag": lag, "dead_letters": None}


def test_a_backlog_worked_through_is_busy_not_stalled() -> None:
    """258k events of old history: the watermark stands still for a minute while the worker works."""
    detector = StallDetector(stall_after_s=30, sink_lag_alert=10_000)
    for step in range(31):  # every 2 s for 60 s, 2,000 events each
        problems = detector.assess(snapshot(step * 2, lag=258_000 - step * 2_000, events=step * 2_000))
        assert problems == {"worker-0": None}
    assert detector.busy["worker-0"] == "busy: 198000 messages behind, working through them at 1000 events/s"


def test_a_backlog_without_progress_is_stalled() -> None:
    detector = StallDetector(stall_after_s=30, sink_lag_alert=10_000)
    for step in range(17):
        problems = detector.assess(snapshot(step * 2, lag=258_000, events=5_000))
    assert problems["worker-0"] == "worker-0: watermark of partition 0 stuck for 32 s (promise breaches stopped firing)"
    assert detector.busy == {}


def test_caught_up_with_a_watermark_standing_still_is_stalled_even_while_events_flow() -> None:
    """No backlog: every partition's watermark must move with the wall clock; events alone do not excuse it."""
    detector = StallDetector(stall_after_s=30, sink_lag_alert=10_000)
    for step in range(17):
        problems = detector.assess(snapshot(step * 2, lag=0, events=step * 100))
    assert problems["worker-0"] is not None and "stuck for 32 s" in problems["worker-0"]


def test_busy_ends_when_the_backlog_is_gone() -> None:
    detector = StallDetector(stall_after_s=30, sink_lag_alert=10_000)
    detector.assess(snapshot(0, lag=5_000, events=0))
    detector.assess(snapshot(2, lag=2_000, events=4_000))
    assert "worker-0" in detector.busy
    detector.assess(snapshot(4, lag=0, events=5_000, watermark=T0))
    assert detector.busy == {}


def test_a_shrinking_lag_is_progress_while_one_long_batch_runs() -> None:
    """Counters move only when a batch is committed; the group's lag shrinking says the same sooner."""
    detector = StallDetector(stall_after_s=30, sink_lag_alert=10_000)
    for step in range(31):
        problems = detector.assess(snapshot(step * 2, lag=100_000 - step * 100, events=0))
        assert problems == {"worker-0": None}


def test_the_few_progress_marks_in_flight_are_no_backlog() -> None:
    """Idle, the stages' marks keep a few messages in flight (the lag wobbles): a watermark standing
    still then is a stall, whatever the lag does."""
    detector = StallDetector(stall_after_s=30, sink_lag_alert=10_000)
    for step in range(17):
        problems = detector.assess(snapshot(step * 2, lag=40 - step % 3 * 10, events=100))
    assert problems["worker-0"] is not None and "stuck for 32 s" in problems["worker-0"]
