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

from infra.base.clickhouse import get_client
from infra.base.config import Settings
from infra.base.kafka import consumer, records_written
from schemas.contract import event_to_json
from streams.ground_truth import compare
from streams.simulator import simulate
from tests.bench.common import bench_servers, cpu_seconds, start_service, stop_services
from tests.integration.faults import INCIDENT_QUERY  # the ground-truth comparison's columns

DAY_MS = 86_400_000
EVENTS_PER_JOURNEY = 8.7  # what the simulator emits per journey over a month (seed 17: 251,138 from 28,735)


def published(settings: Settings, topic: str) -> int:
    """Records ever written to `topic`."""
    with closing(consumer(settings)) as reader:
        return records_written(settings, reader, topic)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=250_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
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
            started = time.monotonic()
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
        finally:
            stop_services(services)
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
    }))


if __name__ == "__main__":
    main()
