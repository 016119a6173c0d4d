"""Benchmark (not a test): a month of history backfilled with `journey emit --file`, to the last
incident change in ClickHouse (issue 17).

    python -m tests.bench.backfill_bench [--events 250000] [--workers 2]

A simulated month (the simulator's journeys, failures and recoveries; about 9 events a journey)
is written as a JSON-lines file and sent by `journey emit --file` into a stack with its workers
and sink running. The figure is events / (emit start -> the last incident change in ClickHouse,
with every injected failure found); the same run's baseline is `journey emit` alone (the rate the
file reached the topic), so the ratio says how much of the backfill's time is detection and the
sink. The CPU seconds of the workers and the sink per 1,000 events say where the time goes, and the
incident changes published per incident how much of it is re-publishing versions.

Where the wall time goes (`timeline_s`): each stage's output topic is read back after the run and
its record timestamps (when the stage produced them) are given as seconds since the emit started --
when the first record, half of them, 99% and the last were written: touchpoints (the emit),
`<app>.touchpoints.by-journey` (intake), `<app>.incidents.by-customer` (journeys),
`incidents` (customers), then the last incident change seen in ClickHouse (the sink). The gap
between two stages' `last` is the time the later stage needed after the earlier one had finished;
a gap between intake's last and the incidents' last with nothing written in between is a wait
for the watermark (before the end-of-data signal: the silence rule, JOURNEY_SOURCE_IDLE_S).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from contextlib import closing
from typing import Any

from kafka import TopicPartition

from infra.base.clickhouse import get_client
from infra.base.config import Settings
from infra.base.kafka import consumer, records_written
from schemas.contract import event_to_json
from streams.ground_truth import compare
from streams.intake.marks import is_mark
from streams.simulator import simulate
from tests.bench.common import bench_servers, cpu_seconds, start_service, stop_services
from tests.integration.faults import INCIDENT_QUERY  # the ground-truth comparison's columns

DAY_MS = 86_400_000
EVENTS_PER_JOURNEY = 8.7  # what the simulator emits per journey over a month (seed 17: 251,138 from 28,735)


def published(settings: Settings, topic: str) -> int:
    """Records ever written to `topic`."""
    with closing(consumer(settings)) as reader:
        return records_written(settings, reader, topic)


def timestamps(settings: Settings, topic: str) -> list[int]:
    """Every record timestamp (ms) of `topic`, sorted (read from the start until two polls are empty),
    but intake's marks: progress reports, written on every tick whether there is data or not."""
    out: list[int] = []
    with closing(consumer(settings)) as reader:
        partitions = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())]
        reader.assign(partitions)
        reader.seek_to_beginning(*partitions)
        empty = 0
        while empty < 2:
            batch = reader.poll(timeout_ms=1000, max_records=50_000)
            empty = 0 if batch else empty + 1
            out += [r.timestamp for records in batch.values() for r in records if not is_mark(r.value or b"")]
    return sorted(out)


def timeline(stamps: list[int], start_ms: int) -> dict[str, float | int]:
    """When the first, half, 99% and the last of a stage's records were written (s since the start)."""
    if not stamps:
        return {"records": 0}
    at = [round((stamps[min(len(stamps) - 1, int(q * len(stamps)))] - start_ms) / 1000, 1) for q in (0, .5, .99)]
    return {"first": at[0], "p50": at[1], "p99": at[2], "last": round((stamps[-1] - start_ms) / 1000, 1),
            "records": len(stamps)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=250_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    load_before = [round(x, 2) for x in os.getloadavg()]
    now = int(time.time() * 1000)
    sim = simulate(args.seed, max(10, int(args.events / EVENTS_PER_JOURNEY)), now - 32 * DAY_MS, 30 * 86_400)
    prefix = sim.events[0]["journey_id"].rsplit("-j", 1)[0]
    # the next live event a day after the month: idle partitions follow it, so the month's last deadlines fire
    closing_visit = {**sim.events[-1], "event_id": f"{prefix}-closing-{uuid.uuid4().hex[:6]}", "customer_id": None,
                     "journey_id": f"{prefix}-closing", "type": "VISIT", "stage": "before",
                     "occurred_at": sim.end_ms + DAY_MS, "attrs": {}}
    with bench_servers("bench-backfill") as settings:
        path = settings.home / "month.jsonl"
        path.write_text("".join(json.dumps(event_to_json(e)) + "\n" for e in [*sim.events, closing_visit]))
        services: list[subprocess.Popen[bytes]] = []  # stopped below, however far the start got
        try:
            for w in range(args.workers):
                services.append(start_service(settings, "streams.worker", f"worker-{w}", w))
            services.append(start_service(settings, "consumers.sink", "sink"))
            *workers, sink = services
            client = get_client(settings.clickhouse_url, settings.clickhouse_user, settings.clickhouse_password)
            started, started_ms = time.monotonic(), int(time.time() * 1000)
            emit = subprocess.run([sys.executable, "-c", "from infra.cli import main; main()", "emit", "--file",
                                   str(path)], env={**os.environ, **settings.to_env()}, capture_output=True,
                                  text=True, timeout=1800)
            if emit.returncode != 0:
                raise SystemExit(f"journey emit failed: {emit.stderr.strip()[-500:]}")
            emitted = time.monotonic() - started
            last_change, seen, report = started, None, {"ok": False}
            deadline = time.monotonic() + 1800
            while time.monotonic() < deadline:
                rows = client.query(INCIDENT_QUERY, parameters={"p": prefix})
                incidents = [dict(zip(rows.column_names, r, strict=True)) for r in rows.result_rows]
                state = sorted((i["incident_id"], i["status"], i["time_to_resolve_s"]) for i in incidents)
                if state != seen:
                    seen, last_change = state, time.monotonic()
                    report = compare(sim, incidents)
                elif report["ok"] and time.monotonic() - last_change > 10:
                    break  # found everything and nothing changed for 10 s
                time.sleep(1)
            took = last_change - started
            cpu: dict[str, Any] = {f"worker-{w}": cpu_seconds(p.pid) for w, p in enumerate(workers)}
            cpu["sink"] = cpu_seconds(sink.pid)
            changes = published(settings, settings.topics.incidents)
            busy = {name: round(s / took, 2) for name, s in cpu.items()}
        finally:
            stop_services(services)
        # read once the workers are stopped: intake writes marks on every tick
        stages = {"emit (touchpoints)": settings.topics.touchpoints,
                  "intake (by-journey)": settings.topic_by_journey,
                  "journeys (by-customer)": settings.topic_by_customer,
                  "customers (incidents)": settings.topics.incidents}
        spans: dict[str, Any] = {name: timeline(timestamps(settings, topic), started_ms)
                                 for name, topic in stages.items()}
        spans["sink (last change in ClickHouse)"] = {"last": round(took, 1)}
    events = len(sim.events) + 1
    rate, baseline = events / took, events / emitted
    print(json.dumps({
        "backfill_events_per_s": {"value": round(rate), "baseline": round(baseline), "ratio": round(rate / baseline, 3),
                                  "note": "emit --file of a simulated month to the last incident change in "
                                          "ClickHouse; baseline: the emit alone, same run"},
        "events": events, "workers": args.workers, "truth_found": report["ok"], "incidents": len(seen or []),
        "incident_changes_per_incident": round(changes / max(1, len(seen or [])), 2),
        "seconds": {"emit": round(emitted, 1), "to_last_incident_change": round(took, 1)},
        "cpu_ms_per_1000_events": {name: round(1e6 * s / events) for name, s in cpu.items()},
        "cpu_busy_share": busy, "timeline_s": spans,
        "load_average": {"before": load_before, "after": [round(x, 2) for x in os.getloadavg()]},
    }))


if __name__ == "__main__":
    main()
