"""Envelopes on the by-journey topic: a batch's events and marks in one Kafka record (pure, no Kafka).

The internal topic is ours, and a Kafka record costs far more than the event in it (an aiokafka
append, the broker, a fetch, one Faust message and one ack each: measured, per-event records cut
detect throughput by two thirds). So intake sends ONE record per (batch, internal partition); the
journeys stage unpacks it in order, so the order within a partition is exactly what per-event
records gave. Large shares are split below `ENVELOPE_MAX_BYTES`, well under the broker's message
size limit (Kafka's and Tansu's default 1 MiB) and the producer's batch size.

Layout: b"F", the count of marks (u16), the marks (`Mark` without its prefix), then one JSON array
of the events, in order. The marks apply after the events (intake reports a source's progress once
the batch that made it is out). Events travel as the JSON of the decoded record, not as their Avro
frames: intake decodes every frame anyway (the contract check and the dead letters are its job), and
one `orjson.dumps` + `loads` of the batch costs less than a second Avro decode in the journeys stage
(measured, BENCHMARKS.md). An older intake wrote b"E" envelopes: the same layout, each event as a
pair [source record timestamp, event] that nothing downstream read (dropped from the layout: it
cost a timestamp conversion, a tuple and ~20 JSON bytes per event); they still unpack.
"""

from __future__ import annotations

import struct
from typing import Any

import orjson

from streams.intake.marks import MARK_PREFIX, Mark

ENVELOPE_PREFIX = b"F"
_PAIRS_PREFIX = b"E"  # the older layout: [received_at, event] pairs
ENVELOPE_MAX_BYTES = 512 * 1024
_COUNT = struct.Struct(">H")

Event = dict[str, Any]


def _arrays(events: list[Event], limit: int) -> list[bytes]:
    """`events` as JSON arrays of at most ~`limit` bytes each, in order (one larger event goes
    alone). Encoded whole first: a share over the limit is cut into as many equal runs as its size
    needs, each encoded again (orjson's one call per run costs less than one per event)."""
    whole = orjson.dumps(events)
    if len(whole) <= limit or len(events) == 1:
        return [whole]
    runs = min(len(events), len(whole) // limit + 1)
    step = -(-len(events) // runs)
    return [array for start in range(0, len(events), step) for array in _arrays(events[start:start + step], limit)]


def pack(events: list[Event], marks: list[Mark], limit: int = ENVELOPE_MAX_BYTES) -> list[bytes]:
    """One internal partition's share of a batch: its events in order, then the marks (in the last
    envelope). At least one envelope when there are marks; none for neither."""
    if not events and not marks:
        return []
    arrays = _arrays(events, limit)
    head = ENVELOPE_PREFIX + _COUNT.pack(0)
    tail = ENVELOPE_PREFIX + _COUNT.pack(len(marks)) + b"".join(m.encode()[1:] for m in marks)
    return [head + a for a in arrays[:-1]] + [tail + arrays[-1]]


def is_envelope(value: bytes) -> bool:
    return value[:1] in (ENVELOPE_PREFIX, _PAIRS_PREFIX)


def unpack(value: bytes) -> tuple[list[Event], list[Mark]]:
    """(events, marks) of an envelope from `pack` (or from an older intake's pairs layout)."""
    (count,) = _COUNT.unpack_from(value, 1)
    size = Mark.size()
    start = 1 + _COUNT.size
    marks = [Mark.decode(MARK_PREFIX + value[start + i * size:start + (i + 1) * size]) for i in range(count)]
    events = orjson.loads(value[start + count * size:])
    if value[:1] == _PAIRS_PREFIX:
        events = [event for _, event in events]
    return events, marks
