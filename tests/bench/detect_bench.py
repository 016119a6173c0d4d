"""Benchmark (not a test): touchpoints/s through the Faust worker with detection on.

    python -m tests.bench.detect_bench [--events 200000] [--workers 1]

Produces a backlog of realistic touchpoints (Avro, keyed by journey), then measures in the
same run (a) a bare aiokafka consumer that only reads and decodes them (baseline) and (b) the
worker(s) detecting incidents over the same backlog, from the first batch to the last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time

from aiokafka import AIOKafkaConsumer
from kafka import KafkaProducer

from infra.base.config import Settings
from infra.base.heartbeat import read_heartbeat, service_ready
from infra.local import processes
from schemas.codec import decode_many, encode
from schemas.event_types import STAGE_OF_TYPE
from streams.emitter import producer_config
from tests.bench.common import bench_servers, cpu_seconds

MIX = ["VISIT", "ORDER_PLACED", "ITEM_REQUESTED", "ITEM_DELIVERED", "ORDER_SERVED", "CHECKOUT_STARTED",
       "CHECKOUT_COMPLETED", "PAYMENT_SUCCEEDED", "FEEDBACK_SUBMITTED", "JOURNEY_ENDED"]


def backlog(count: int) -> list[tuple[bytes, bytes]]:
    """Journeys of 10 events each; 1 in 50 requests is never fulfilled (a breach)."""
    base = int(time.time() * 1000) - 6 * 3_600_000
    out = []
    for i in range(count):
        journey, step = divmod(i, len(MIX))
        type_ = MIX[step]
        if type_ == "ITEM_DELIVERED" and journey % 50 == 0:
            type_ = "VISIT"
        event = {
            "event_id": f"b-{i}", "journey_id": f"j-{journey}", "customer_id": f"c-{journey % 20000}",
            "type": type_, "stage": STAGE_OF_TYPE[type_], "channel": "pos", "occurred_at": base + i * 50,
            "store_id": f"store-{journey % 12}", "staff_id": None, "request_id": None, "promised_within_s": None,
            "incident_id": None, "attrs": {"score": "5"} if type_ == "FEEDBACK_SUBMITTED" else {}, "source": None,
        }
        out.append((event["journey_id"].encode(), encode("touchpoint", event)))
    return out


async def bare_consumer(settings: Settings, count: int) -> float:
    consumer = AIOKafkaConsumer(settings.topics.touchpoints, bootstrap_servers=settings.bootstrap_servers,
                                group_id=None, auto_offset_reset="earliest", enable_auto_commit=False,
                                max_poll_records=4000)
    await consumer.start()
    seen, started = 0, None
    try:
        while seen < count:
            batches = await consumer.getmany(timeout_ms=1000, max_records=4000)
            for messages in batches.values():
                started = started or time.perf_counter()
                decode_many([m.value for m in messages], "touchpoint")
                seen += len(messages)
    finally:
        await consumer.stop()
    return count / (time.perf_counter() - (started or time.perf_counter()))


def run_workers(settings: Settings, count: int, workers: int) -> tuple[float, int, float, float | None]:
    """(events/s, incident changes, worker CPU us per event from "all ready" to "all detected",
    the same from each worker's first batch to its last, as the workers report it)."""
    procs = [subprocess.Popen([sys.executable, "-m", "streams.worker"],
                              env={**os.environ, **settings.to_env(), "JOURNEY_WORKER_ID": str(w)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for w in range(workers)]
    try:
        beats: list[dict] = []

        def done() -> bool:
            nonlocal beats
            beats = [_beat(settings, w) for w in range(workers)]
            return sum(b.get("events", 0) for b in beats) >= count
        processes.wait_until(lambda: all(service_ready(settings, f"worker-{w}") for w in range(workers)), 120)
        # CPU per event: steadier than the wall rate on a shared machine (it counts only the workers)
        cpu_ready = sum(cpu_seconds(proc.pid) for proc in procs)
        processes.wait_until(done, 600, interval_s=0.5)
        cpu_us = (sum(cpu_seconds(proc.pid) for proc in procs) - cpu_ready) / count * 1e6
        time.sleep(1.5)  # let the last heartbeat land
        beats = [_beat(settings, w) for w in range(workers)]
        first = min(b["first_batch_at"] for b in beats if b.get("first_batch_at"))
        last = max(b["last_batch_at"] for b in beats)
        rate = sum(b["events"] for b in beats) / ((last - first) / 1000)
        # "ready" can come a moment after the first batches (the heartbeat's interval): the workers'
        # own CPU readings at their first and last batch leave out startup and that moment
        spans = [b["last_batch_cpu_ms"] - b["first_batch_cpu_ms"] for b in beats if b.get("first_batch_cpu_ms")]
        busy_us = sum(spans) * 1000 / count if spans else None
        return rate, sum(b["incident_changes"] for b in beats), cpu_us, busy_us
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:  # a worker stuck stopping (seen under load) costs no figure
                print(f"worker {proc.pid} did not stop within 60 s of SIGTERM: killed", file=sys.stderr)
                proc.kill()
                proc.wait()


def _beat(settings: Settings, worker: int) -> dict:
    return read_heartbeat(settings, f"worker-{worker}") or {}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--figure", default="detect_events_per_s",
                        help="name of the figure (replay_events_per_s: the same run over a history backlog)")
    args = parser.parse_args()
    with bench_servers("bench") as settings:
        producer = KafkaProducer(**producer_config(settings))
        for key, value in backlog(args.events):
            producer.send(settings.topics.touchpoints, key=key, value=value)
        producer.flush()
        producer.close()
        baseline = asyncio.run(bare_consumer(settings, args.events))
        rate, changes, cpu_us, busy_us = run_workers(settings, args.events, args.workers)
    print(json.dumps({args.figure: {"value": round(rate), "baseline": round(baseline),
                                              "ratio": round(rate / baseline, 3)},
                      "worker_cpu_us_per_event": round(cpu_us, 1),
                      "worker_cpu_us_per_event_in_batches": None if busy_us is None else round(busy_us, 1),
                      "events": args.events, "workers": args.workers, "incident_changes": changes}))


if __name__ == "__main__":
    main()
