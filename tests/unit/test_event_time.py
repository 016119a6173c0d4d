"""Which clock to believe (issue 17, cases 1, 2 and 8): the event time of a touchpoint from its
three times, and the low watermark of a backfill whose partitions end at different times."""

from __future__ import annotations

from streams.domain.config import load_detection_config
from streams.domain.event_time import event_time, receive_time, trusted
from streams.domain.processor import Detector
from streams.intake.marks import Mark, SourceClocks
from streams.journeys.low_watermark import LowWatermark

NOW = 1_764_500_000_000
H = 3_600_000
TOL = 5_000


def test_a_fast_clock_without_sent_at_is_capped_at_its_receive_time() -> None:
    """Case 1: a POS 2 h fast sends ORDER_PLACED; received now."""
    t = event_time(occurred=NOW + 2 * H, sent=None, received=NOW, tolerance_ms=TOL)
    assert t.at == NOW + TOL and t.capped and t.flagged and t.skew_ms is None


def test_a_fast_clock_with_sent_at_is_corrected_by_its_skew() -> None:
    t = event_time(occurred=NOW + 2 * H - 30_000, sent=NOW + 2 * H, received=NOW, tolerance_ms=TOL)
    assert t.skew_ms == -2 * H and t.corrected and t.at == NOW - 30_000


def test_a_slow_clock_complaint_is_corrected_to_when_it_really_happened() -> None:
    """Case 2: a device 3 h slow complains; its batch is sent at once and received now."""
    t = event_time(occurred=NOW - 3 * H - 2_000, sent=NOW - 3 * H, received=NOW, tolerance_ms=TOL)
    assert t.skew_ms == 3 * H and t.corrected and t.at == NOW - 2_000


def test_a_late_upload_from_a_correct_clock_stays_late() -> None:
    """An offline POS with a right clock: occurred 40 s before it could send; skew is transit only."""
    t = event_time(occurred=NOW - 40_000, sent=NOW - 300, received=NOW, tolerance_ms=TOL)
    assert t.at == NOW - 40_000 and not t.flagged and t.skew_ms == 300


def test_history_keeps_its_times_exactly() -> None:
    """`journey emit --file` of last month: sent now, received now, occurred long ago."""
    t = event_time(occurred=NOW - 30 * 24 * H, sent=NOW - 2, received=NOW, tolerance_ms=TOL)
    assert t.at == NOW - 30 * 24 * H and not t.flagged


def test_receive_time_is_the_collector_stamp_else_the_record_timestamp_never_after_now() -> None:
    assert receive_time(NOW - 10, NOW - 5, NOW) == NOW - 10
    assert receive_time(None, NOW - 5, NOW) == NOW - 5
    assert receive_time(None, None, NOW) == NOW
    assert receive_time(None, NOW + 2 * H, NOW) == NOW  # a producer whose own clock runs fast
    event = {"occurred_at": NOW + 2 * H, "sent_at": None, "received_at": None}
    assert trusted(event, NOW + 2 * H, NOW, TOL).at == NOW + TOL


def test_one_fast_clock_fires_no_other_journeys_deadline() -> None:
    """Case 1 end to end in the detector: pending promises on the partition stay pending."""
    detector = Detector(load_detection_config())
    pending = [{"event_id": f"r{i}", "journey_id": f"j{i}", "customer_id": None, "type": "ITEM_REQUESTED",
                "stage": "during", "channel": "pos", "occurred_at": NOW - 60_000, "store_id": "s", "staff_id": None,
                "request_id": "spoon", "promised_within_s": 600, "incident_id": None, "attrs": {}, "source": None}
               for i in range(3)]
    detector.process([(0, e) for e in pending], NOW)
    fast = dict(pending[0], event_id="fast", journey_id="fast-pos", type="ORDER_PLACED", occurred_at=NOW + 2 * H)
    fast["occurred_at"] = trusted(fast, NOW, NOW, TOL).at
    result = detector.process([(0, fast)], NOW)
    assert result.incident_changes == [] and detector.watermarks[0] == NOW + TOL
    fresh = dict(pending[0], event_id="new", journey_id="new", promised_within_s=60, occurred_at=NOW + 1_000)
    assert detector.process([(0, fresh)], NOW + 1_000).incident_changes == []  # a new promise does not breach at once


def test_an_idle_source_follows_the_topic_less_the_allowed_lateness() -> None:
    """Case 8: partition 1's data ended a week before partition 0's; both are read to the end."""
    lateness = 300_000
    low = LowWatermark(lateness)
    low.update(Mark(0, 2, NOW, True, idle=True))
    low.update(Mark(1, 2, NOW - 7 * 24 * H, True, idle=False))  # caught up a moment ago: may have more
    assert low.low() == NOW - 7 * 24 * H
    low.update(Mark(1, 2, NOW - 7 * 24 * H, True, idle=True))
    assert low.low() == NOW - lateness  # every deadline inside the data (but the last 5 min) fires
    low.update(Mark(1, 2, NOW - 7 * 24 * H + 1, False))  # it has a backlog again: holds back as before
    assert low.low() == NOW - lateness  # never back


def test_intake_calls_a_source_idle_only_after_a_quiet_while() -> None:
    clocks = SourceClocks()
    clocks.saw(0, at=NOW - H, now_ms=NOW)
    assert not clocks.mark(0, 1, caught_up=True, now_ms=NOW + 9_000, idle_after_ms=10_000).idle
    assert clocks.mark(0, 1, caught_up=True, now_ms=NOW + 10_000, idle_after_ms=10_000).idle
    assert not clocks.mark(0, 1, caught_up=False, now_ms=NOW + 60_000, idle_after_ms=10_000).idle
    assert Mark.decode(Mark(0, 1, NOW, True, True).encode()).idle


def test_a_backlog_of_old_events_does_not_hold_a_caught_up_source_back() -> None:
    """Case 10's kind: 60 s of history read behind live traffic; caught up again, the source's clock
    is where the wall clock says, not 60 s behind (and the history kept it from being idle)."""
    clocks = SourceClocks()
    clocks.saw(0, at=NOW, now_ms=NOW)
    for k in range(60):
        clocks.saw(0, at=NOW - 7 * 24 * H + k, now_ms=NOW + k * 1_000)
    mark = clocks.mark(0, 1, caught_up=True, now_ms=NOW + 65_000, idle_after_ms=10_000)
    assert mark.watermark == NOW + 65_000 and not mark.idle
