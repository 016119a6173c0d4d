"""Which clock to believe: the event time of a touchpoint from its three times (pure, no Kafka).

Every touchpoint carries `occurred_at` (the device's clock when it happened), optionally
`sent_at` (the device's clock when its batch was sent: the browser snippet, `journey emit` and
the emitter set it) and `received_at` (our clock: the collector stamps it; for a Kafka producer
it is the record's timestamp, read at intake, never later than intake's own clock). As web
analytics collectors do (Snowplow's `derived_tstamp`):

- the device's skew is `received_at - sent_at` (how far the device clock is behind ours, plus
  the transit time). Beyond `tolerance_ms` it is corrected: event time = `occurred_at + skew`,
  so a complaint from a device 3 h slow counts from when it really happened (now), not 3 h ago;
  within it (transit, jitter) `occurred_at` stands as sent, so replays stay exact;
- whatever the device says, no event happens after we received it: the event time is capped at
  `received_at + tolerance_ms`. A POS clock running 2 h fast without `sent_at` therefore moves
  its partition's watermark no further than the receive time: it cannot fire other journeys'
  deadlines, and its own promise counts from (about) when it was received.

`skew_ms` is what ClickHouse keeps per touchpoint (`clock_skew_ms`) and what `flagged` reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EventTime:
    """The trusted time of one touchpoint and how it was derived."""

    at: int  # the event time rules, deadlines and watermarks use (epoch ms)
    received: int  # our receive time (epoch ms)
    skew_ms: int | None  # received - sent (None: no sent_at); > 0: device behind our clock
    corrected: bool  # the device skew was corrected
    capped: bool  # occurred_at was ahead of the receive time (+ tolerance): capped

    @property
    def flagged(self) -> bool:
        """The device's clock is off by more than the tolerance (corrected or capped)."""
        return self.corrected or self.capped


def receive_time(stamped: int | None, record_ts: int | None, now_ms: int) -> int:
    """Our receive time: the collector's stamp, else the Kafka record timestamp, else now; never
    after `now_ms` (intake's clock: a producer whose own clock runs fast stamps its records ahead)."""
    for candidate in (stamped, record_ts):
        if candidate is not None and candidate > 0:
            return min(candidate, now_ms)
    return now_ms


def event_time(occurred: int, sent: int | None, received: int, tolerance_ms: int) -> EventTime:
    """The event time from the device's `occurred`/`sent` and our `received` (see module doc)."""
    skew = None if sent is None else received - sent
    corrected = skew is not None and abs(skew) > tolerance_ms
    at = occurred + skew if corrected else occurred  # type: ignore[operator]
    limit = received + tolerance_ms
    capped = at > limit
    return EventTime(min(at, limit), received, skew, corrected, capped)


def trusted(event: dict[str, Any], record_ts: int | None, now_ms: int, tolerance_ms: int) -> EventTime:
    """The event time of a decoded touchpoint read from Kafka with record timestamp `record_ts`."""
    received = receive_time(event.get("received_at"), record_ts, now_ms)
    return event_time(event["occurred_at"], event.get("sent_at"), received, tolerance_ms)
