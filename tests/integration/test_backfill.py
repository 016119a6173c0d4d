"""A month of history backfilled with `journey emit --file` raises exactly the simulator's ground
truth, including breaches due in the last hours of the data, and pages nobody (issue 17, case 8)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.base.clickhouse import get_client
from infra.base.config import Settings
from infra.local.processes import wait_until
from schemas.contract import event_to_json
from streams.emitter import KeyPartitioner
from streams.ground_truth import compare
from streams.simulator import Injected, Simulation, simulate
from streams.topic_reader import follow
from tests.integration.faults import INCIDENT_QUERY
from tests.integration.pipeline_processes import own_topics, pipeline_processes

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAY = 86_400_000
H = 3_600_000


@pytest.fixture
def pipeline(stack_settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    # one producer: the file's event-time order is the topic's
    with pipeline_processes(own_topics(stack_settings, home=tmp_path / "home", emit_processes=1)) as settings:
        yield settings


def on_source_partition(journey: str, partitions: int) -> int:
    return KeyPartitioner(list(range(partitions)))(journey.encode())


def month(seed: int, now: int, partitions: int) -> Simulation:
    """30 days of history ending 2 days ago on every source partition, then 6 more hours on source
    partition 0 only: the others' data ends hours before (as a shop's terminals going quiet)."""
    start = now - 32 * DAY
    body = simulate(seed, 900, start, 30 * 86_400)
    tail = simulate(seed + 1, 400, body.end_ms, 6 * 3600)
    kept = {e["journey_id"] for e in tail.events if on_source_partition(e["journey_id"], partitions) == 0}
    events = sorted(body.events + [e for e in tail.events if e["journey_id"] in kept],
                    key=lambda e: (e["occurred_at"], e["event_id"]))
    truth = body.truth + [t for t in tail.truth if t.journey_id in kept]
    # Spoons nobody brings and nobody mentions again, on partition 0 after the others went quiet: only
    # the watermark can fire them (the simulator's failures all get later events of their own).
    others_end = max(e["occurred_at"] for e in events if on_source_partition(e["journey_id"], partitions))
    run, template = tail.truth[0].journey_id.rsplit("-j", 1)[0], tail.events[0]
    silent = [j for j in (f"{run}-j-silent-{k}" for k in range(64)) if on_source_partition(j, partitions) == 0][:6]
    for k, journey in enumerate(silent):
        at = others_end + (k + 1) * 40 * 60_000
        events.append({**template, "event_id": f"{journey}-e", "journey_id": journey, "customer_id": None,
                       "type": "ITEM_REQUESTED", "stage": "during", "channel": "pos", "store_id": "seoul-01",
                       "request_id": "spoon", "promised_within_s": 300, "attrs": {"item": "spoon"}, "occurred_at": at})
        truth.append(Injected(journey, "promise_broken", "promise_breach", at + 300_000))
    events.sort(key=lambda e: (e["occurred_at"], e["event_id"]))
    return Simulation(events, truth, start, max(e["occurred_at"] for e in events))


def test_a_month_backfilled_raises_exactly_the_ground_truth_and_pages_nobody(pipeline: Settings, tmp_path: Path
                                                                             ) -> None:
    now = int(time.time() * 1000)
    sim = month(int(uuid.uuid4().int % 10_000), now, pipeline.partitions)
    runs = sorted({t.journey_id.rsplit("-j", 1)[0] for t in sim.truth})
    prefix = sim.events[0]["journey_id"].rsplit("-j", 1)[0]
    # The next live event a day later, on source partition 0 too: the other partitions are idle and
    # follow it (less the allowed lateness) instead of holding the backfill at where their data ended.
    journey = next(j for j in (f"{prefix}-next-{k}" for k in range(100))
                   if on_source_partition(j, pipeline.partitions) == 0)
    closing = {**sim.events[-1], "event_id": journey, "journey_id": journey, "customer_id": None,
               "type": "VISIT", "stage": "before", "occurred_at": sim.end_ms + DAY, "attrs": {}}
    path = tmp_path / "month.jsonl"
    path.write_text("".join(json.dumps(event_to_json(e)) + "\n" for e in [*sim.events, closing]))
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", "from infra.cli import main; main()", "emit", "--file", str(path)],
                          capture_output=True, text=True, env={**os.environ, **pipeline.to_env()}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    client = get_client(pipeline.clickhouse_url, pipeline.clickhouse_user, pipeline.clickhouse_password)

    def incidents() -> list[dict[str, Any]]:
        out = []
        for run in runs:
            rows = client.query(INCIDENT_QUERY, parameters={"p": run})
            out += [dict(zip(rows.column_names, r, strict=True)) for r in rows.result_rows]
        return out

    assert wait_until(lambda: compare(sim, incidents())["ok"], 240, interval_s=2), compare(sim, incidents())
    took = time.monotonic() - started
    print(f"backfill: {len(sim.events)} events to the last incident in ClickHouse in {took:.1f} s "
          f"({len(sim.events) / took:.0f} events/s)")
    others_end = max(e["occurred_at"] for e in sim.events if on_source_partition(e["journey_id"], pipeline.partitions))
    late = [t for t in sim.truth if t.rule == "promise_breach" and t.failed_at > others_end]
    assert len(late) >= 6  # breaches due hours after the other partitions' last event are among them
    ids = {i["incident_id"] for i in incidents()}
    alerts = [json.loads(line) for line in follow(pipeline, pipeline.topics.alerts, from_beginning=True,
                                                  idle_timeout_s=3)]
    mine = [a for a in alerts if a["incident_id"] in ids]
    assert {a["incident_id"] for a in mine} == ids  # everything recorded ...
    assert [a for a in mine if a["paged"]] == []  # ... nothing paged (older than the paging horizon)
