"""Source-partition marks and the low watermark of an internal partition (pure; fake wall clock)."""

from __future__ import annotations

from streams.intake.marks import Mark, SourceClocks, is_mark
from streams.journeys.low_watermark import LowWatermark


def test_a_mark_round_trips_and_is_told_apart_from_an_event() -> None:
    for mark in (Mark(3, 8, 1_763_899_200_000, True), Mark(0, 4, None, False)):
        assert Mark.decode(mark.encode()) == mark and is_mark(mark.encode())
    assert not is_mark(b'{"event_id": "e-1"}')


def test_a_caught_up_source_advances_with_the_wall_clock_one_behind_does_not() -> None:
    clocks = SourceClocks()
    clocks.saw(0, at=1000, now_ms=50_000)
    assert clocks.mark(0, 2, caught_up=True, now_ms=53_000).watermark == 4000
    assert clocks.mark(0, 2, caught_up=False, now_ms=53_000).watermark == 1000
    assert clocks.mark(1, 2, caught_up=False, now_ms=53_000).watermark is None


def test_nothing_is_known_until_every_source_reported() -> None:
    low = LowWatermark()
    low.update(Mark(0, 2, 5000, False))
    assert low.low() is None
    low.update(Mark(1, 2, 9000, False))
    assert low.low() == 5000


def test_every_source_holds_the_watermark_at_its_progress_an_empty_one_does_not() -> None:
    low = LowWatermark()
    low.update(Mark(0, 3, 5000, False))
    low.update(Mark(1, 3, 9000, True))
    low.update(Mark(2, 3, None, True))  # an empty partition
    assert low.low() == 5000
    low.update(Mark(0, 3, 12_000, True))
    assert low.low() == 9000  # caught up too: its next event may already be on its way
    low.update(Mark(2, 3, None, False))  # a backlog nobody read yet
    assert low.low() is None
    low.update(Mark(2, 3, 10_000, False))
    low.update(Mark(0, 3, None, False))  # a restarted intake, before it read anything again
    assert low.low() == 9000  # never back


def test_a_grown_source_topic_counts_its_new_partitions() -> None:
    low = LowWatermark()
    for source in range(4):
        low.update(Mark(source, 4, 1000, False))
    low.update(Mark(5, 8, 3000, False))
    assert low.low() is None  # partitions 4, 6, 7 not heard from yet
