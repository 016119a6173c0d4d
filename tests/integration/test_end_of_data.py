"""Issue 17: a backfill's end of data fires its last deadlines without waiting for the silence rule,
while a partition starved by a producer without the signal does not fire early (real stack).

The silence rule is set to 10 minutes here, so nothing below can fire by silence."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.base.config import Settings
from schemas.contract import event_to_json, iso_from_ms
from streams.domain.incidents import incident_id
from streams.emit_lines import emit_lines
from streams.emitter import KeyPartitioner
from streams.topic_reader import follow
from tests.integration.pipeline_processes import own_topics, pipeline_processes
from tests.integration.test_detection import event, incidents_until, produce

pytestmark = pytest.mark.integration

DAY, H = 86_400_000, 3_600_000
SILENCE_S = 600


@pytest.fixture
def pipeline(stack_settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    with pipeline_processes(own_topics(stack_settings, home=tmp_path / "home", source_idle_s=SILENCE_S,
                                       emit_processes=1)) as settings:
        yield settings


def journey_on(partition: int, partitions: int, tag: str, name: str) -> str:
    """A journey id that every writer (murmur2) puts on source `partition`."""
    by_key = KeyPartitioner(list(range(partitions)))
    return next(j for j in (f"{tag}-{name}-{k}" for k in range(1000)) if by_key(j.encode()) == partition)


def emit_file(settings: Settings, events: list[dict[str, Any]]) -> None:
    """What `journey emit --file` runs (bulk: the batch producer, whose close says "end of data")."""
    lines = [json.dumps(event_to_json(e)) + "\n" for e in events]
    summary = emit_lines(settings, lines, lambda n, reason: pytest.fail(f"line {n}: {reason}"), bulk=True)
    assert summary.accepted == len(events)


def test_an_ended_backfill_fires_its_last_deadline_at_once_a_starved_partition_never_early(pipeline: Settings
                                                                                         ) -> None:
    tag, partitions = uuid.uuid4().hex[:6], pipeline.partitions
    t0 = int(time.time() * 1000) - 2 * DAY
    starved = journey_on(1, partitions, tag, "starved")  # a foreign producer's, no end of data
    backfilled = journey_on(0, partitions, tag, "backfill")
    last = journey_on(0, partitions, tag, "last")
    starved_breach = incident_id(starved, "promise_breach", "spoon")
    last_breach = incident_id(backfilled, "promise_breach", "spoon")
    complaint = incident_id(last, "complaint", f"{tag}-complaint")

    produce(pipeline, [event("ITEM_REQUESTED", t0, starved, request_id="spoon", promised_within_s=300)])
    # a day of history on partition 0: a spoon nobody brings (due 5 min later), a complaint an hour
    # after it (the data's last event); the deadline is the data's own, after partition 1's last event
    emit_file(pipeline, [event("VISIT", t0 - H, backfilled),
                         event("ITEM_REQUESTED", t0 + DAY, backfilled, request_id="spoon", promised_within_s=300),
                         event("COMPLAINT_FILED", t0 + DAY + H, last, event_id=f"{tag}-complaint")])
    seen = incidents_until(pipeline, lambda got: complaint in got, timeout_s=90)
    assert complaint in seen  # intake has read partition 0 to its end (and its end of data)
    seen = incidents_until(pipeline, lambda got: starved_breach in got or last_breach in got, timeout_s=8)
    # partition 1 is caught up but its producer said nothing: it holds the low watermark at its own
    # clock (t0 plus seconds), not at partition 0's end -- its spoon's deadline is not due yet
    assert starved_breach not in seen and last_breach not in seen

    produce(pipeline, [event("ITEM_DELIVERED", t0 + 100_000, starved, request_id="spoon")])  # on time, late
    ended = time.monotonic()
    emit_file(pipeline, [event("VISIT", t0 + 200_000, journey_on(1, partitions, tag, "closing"))])  # says "done"
    seen = incidents_until(pipeline, lambda got: last_breach in got, timeout_s=90)
    took = time.monotonic() - ended
    assert last_breach in seen, sorted(seen)
    assert seen[last_breach]["failed_at"] == iso_from_ms(t0 + DAY + 300_000)  # at its deadline
    assert took < SILENCE_S / 5, took  # at once, not after the silence
    assert starved_breach not in seen  # its on-time delivery came before anything fired past it
    print(f"end of data: the backfill's last deadline fired {took:.1f} s after the last producer ended")

    # the control records are no touchpoints anywhere: not dead-lettered, not in `journey tail`
    assert list(follow(pipeline, pipeline.topics.dlq, from_beginning=True, idle_timeout_s=2)) == []
    tailed = [json.loads(line) for line in follow(pipeline, pipeline.topics.touchpoints, from_beginning=True,
                                                  idle_timeout_s=2)]
    assert len(tailed) == 6 and all("event_id" in row for row in tailed)
