"""Issue 17: a producer's explicit end of data makes its partition idle at once (no silence wait),
and only while no other producer still writes there (pure: the rule, the control records)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from schemas.codec import DecodeError, decode
from schemas.control import BEGIN, END, HEADER, Control, is_control, parse
from streams.intake.batch import sort_batch
from streams.intake.marks import SourceClocks, newest_is_end, take_controls
from streams.journeys.low_watermark import LowWatermark

NOW = 1_780_000_000_000
H = 3_600_000
IDLE = 60_000  # JOURNEY_SOURCE_IDLE_S's default, in ms


@dataclass
class Msg:
    """The two fields intake reads to sort controls from touchpoints."""

    partition: int
    value: bytes


def begin(session: str, partition: int = 0) -> Msg:
    return Msg(partition, Control(BEGIN, session).encode())


def end(session: str, partition: int = 0) -> Msg:
    return Msg(partition, Control(END, session).encode())


def event(partition: int = 0) -> Msg:
    return Msg(partition, b"\x00\x00\x00\x00\x01avro")  # a touchpoint's framing: not a control


def idle(clocks: SourceClocks, partition: int = 0, now_ms: int = NOW + 1) -> bool:
    return clocks.mark(partition, 1, caught_up=True, now_ms=now_ms, idle_after_ms=IDLE).idle


def test_a_control_record_round_trips_and_no_avro_reader_takes_it_for_a_touchpoint() -> None:
    control = Control(END, "s1")
    assert parse(control.encode()) == control and is_control(control.encode())
    assert control.headers() == [(HEADER, b"end")]
    assert not is_control(b"") and not is_control(None) and not is_control(b"\x00\x00\x00\x00\x01")
    assert parse(b"journey-control stop s1") is None and parse(b"journey-control end ") is None
    with pytest.raises(DecodeError):  # ClickHouse's sink, `journey tail`, `journey import`'s guard
        decode(control.encode(), "touchpoint")


def test_an_end_of_data_makes_its_partition_idle_at_once_without_the_silence() -> None:
    clocks = SourceClocks()
    clocks.saw(0, at=NOW - 30 * 24 * H, now_ms=NOW)  # the last event of a month's backfill
    data = take_controls(clocks, [begin("a"), event(), event(), end("a")], NOW)
    assert data == [event(), event()]  # the controls never become touchpoints
    assert idle(clocks, now_ms=NOW + 1)  # 1 ms after the end, not 60 s
    assert not clocks.mark(0, 1, caught_up=False, now_ms=NOW + 1, idle_after_ms=IDLE).idle  # more to read


def test_an_end_counts_only_while_it_is_the_newest_record_read() -> None:
    clocks = SourceClocks()
    clocks.saw(0, at=NOW - H, now_ms=NOW)
    take_controls(clocks, [begin("a"), event(), end("a"), event()], NOW)  # someone wrote after the end
    assert not idle(clocks)
    take_controls(clocks, [end("b")], NOW)  # another session's end, none open: ended again
    assert idle(clocks)
    take_controls(clocks, [Msg(0, b"\x00garbage")], NOW + 5)  # even a record intake dead-letters
    assert not idle(clocks, now_ms=NOW + 6)
    assert idle(clocks, now_ms=NOW + 5 + IDLE)  # and then the silence rule, as for any producer


def test_one_producers_end_does_not_end_a_partition_another_producer_still_writes() -> None:
    """Two `journey emit --file` runs into one topic: `a` ends first while `b` is mid-way."""
    clocks = SourceClocks()
    clocks.saw(0, at=NOW - H, now_ms=NOW)
    take_controls(clocks, [begin("a"), begin("b"), event(), end("a")], NOW)
    assert not idle(clocks)  # b began and has not ended: its next events may be on their way
    take_controls(clocks, [event(), end("b")], NOW)
    assert idle(clocks)


def test_a_producer_killed_before_its_end_leaves_the_silence_rule_which_then_closes_it() -> None:
    clocks = SourceClocks()
    clocks.saw(0, at=NOW - H, now_ms=NOW)
    take_controls(clocks, [begin("killed"), event()], NOW)
    assert not idle(clocks, now_ms=NOW + IDLE - 1)
    assert idle(clocks, now_ms=NOW + IDLE)  # silent: it follows the topic as before
    take_controls(clocks, [begin("next"), event(), end("next")], NOW + 2 * IDLE)
    assert idle(clocks, now_ms=NOW + 2 * IDLE + 1)  # the killed session no longer holds later ends back


def test_ends_are_per_partition_and_a_new_begin_takes_an_end_back() -> None:
    clocks = SourceClocks()
    for p in (0, 1):
        clocks.saw(p, at=NOW - H, now_ms=NOW)
    take_controls(clocks, [begin("a", 0), begin("a", 1), event(0), event(1), end("a", 0)], NOW)
    assert idle(clocks, 0) and not idle(clocks, 1)
    take_controls(clocks, [begin("c", 0)], NOW)
    assert not idle(clocks, 0)
    clocks.forget(0)  # a rebalance took it away: nothing of it is kept
    clocks.saw(0, at=NOW - H, now_ms=NOW)
    assert not idle(clocks, 0)


def test_a_restarted_intake_resumes_an_ended_partition_as_ended() -> None:
    values = [event().value, Control(END, "a").encode()]
    assert newest_is_end(values) == "a"
    assert newest_is_end([Control(END, "a").encode(), event().value]) is None
    assert newest_is_end([Control(BEGIN, "a").encode()]) is None and newest_is_end([]) is None


def test_a_malformed_control_record_is_dead_lettered_not_swallowed() -> None:
    clocks = SourceClocks()
    bad = Msg(0, b"journey-control finish a")
    assert take_controls(clocks, [bad], NOW) == [bad]
    assert 0 in sort_batch([bad.value], NOW).rejected


def test_a_backfills_end_fires_its_last_deadlines_while_a_starved_partition_holds_them() -> None:
    """Downstream (the journeys stage): partition 0 ended a day before partition 1's data ends;
    partition 1's producer is still sending (starved, no end): nothing past it fires."""
    lateness = 300_000
    clocks = SourceClocks()
    clocks.saw(0, at=NOW - 24 * H, now_ms=NOW)
    clocks.saw(1, at=NOW - 20 * 24 * H, now_ms=NOW)  # starved: its producer sends the other partition first
    clocks.saw(2, at=NOW, now_ms=NOW)
    take_controls(clocks, [begin("a", 0), event(0), end("a", 0)], NOW)
    low = LowWatermark(lateness)
    for p in (0, 1, 2):
        low.update(clocks.mark(p, 3, caught_up=True, now_ms=NOW + 1_000, idle_after_ms=IDLE))
    assert low.low() == NOW - 20 * 24 * H + 1_000  # the starved partition holds: no early breach there
    clocks.saw(1, at=NOW - 23 * H, now_ms=NOW + 2_000)
    take_controls(clocks, [event(1), end("b", 1)], NOW + 2_000)
    for p in (0, 1, 2):
        low.update(clocks.mark(p, 3, caught_up=True, now_ms=NOW + 3_000, idle_after_ms=IDLE))
    assert low.low() == NOW + 3_000 - lateness  # both ended: they follow the topic at once
