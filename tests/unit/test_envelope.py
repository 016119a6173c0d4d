"""Envelopes on the by-journey topic: a batch's events and marks in one record, in order, split
below a size; an older intake's envelopes (events beside their record timestamps) still read."""

from __future__ import annotations

import struct

import orjson

from streams.intake.envelope import ENVELOPE_MAX_BYTES, is_envelope, pack, unpack
from streams.intake.marks import Mark, is_mark


def _entries(n: int, pad: int = 0) -> list[dict]:
    return [{"event_id": f"e-{i}", "journey_id": f"j-{i % 7}", "occurred_at": 1000 + i, "attrs": {"x": "y" * pad}}
            for i in range(n)]


def test_events_and_marks_round_trip_in_order() -> None:
    entries = _entries(50)
    marks = [Mark(0, 2, 1049, False), Mark(1, 2, None, True)]
    [value] = pack(entries, marks)
    assert is_envelope(value) and not is_mark(value)
    assert unpack(value) == (entries, marks)


def test_an_older_intakes_envelope_with_record_timestamps_still_reads() -> None:
    """Written by main 6d4cf75 and before: b"E", marks, then [received_at, event] pairs."""
    entries = _entries(5)
    marks = [Mark(1, 2, 1004, True)]
    old = (b"E" + struct.pack(">H", 1) + marks[0].encode()[1:]
           + orjson.dumps([[5000 + i if i % 3 else -1, event] for i, event in enumerate(entries)]))
    assert is_envelope(old) and not is_mark(old)
    assert unpack(old) == (entries, marks)


def test_a_large_share_is_split_below_the_limit_with_the_marks_in_the_last_envelope() -> None:
    entries = _entries(400, pad=300)
    marks = [Mark(3, 4, 1399, True)]
    values = pack(entries, marks, limit=16 * 1024)
    assert len(values) > 5 and all(len(v) <= 16 * 1024 + 64 for v in values)
    unpacked = [unpack(v) for v in values]
    assert [e for chunk, _ in unpacked for e in chunk] == entries  # nothing lost, order kept
    assert [m for _, ms in unpacked for m in ms] == marks and unpacked[-1][1] == marks


def test_marks_alone_make_one_envelope_and_nothing_makes_none() -> None:
    assert [unpack(v) for v in pack([], [Mark(0, 1, 5, False)])] == [([], [Mark(0, 1, 5, False)])]
    assert pack([], []) == []


def test_one_event_larger_than_the_limit_goes_alone() -> None:
    entries = _entries(3, pad=ENVELOPE_MAX_BYTES)
    values = pack(entries, [])
    assert [unpack(v)[0] for v in values] == [[e] for e in entries]
