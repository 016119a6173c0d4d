"""Benchmark (not a test): does a long BI query stall the pipeline? (issue 20)

    python -m tests.bench.bi_bench [--rows 200000] [--bi-seconds 10]

Twice on the same stack, once without and once while the read-only user runs 10 s dashboard
queries back to back: a backlog of touchpoints drained by the sink (rows/s from the first batch
visible to the last, as in sink_bench) while `SELECT 1` is asked every 20 ms through
clickhouse-connect (latency p50/p99). Figures: `bi_sink_rows_per_s` and `bi_select1_ms_p99`,
the value with the BI query and the baseline without it. Targets: sink >= 0.8x, p99 < 100 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import uuid

from kafka import KafkaProducer

from infra.base.clickhouse import admin_client, get_client
from infra.base.config import Settings
from infra.base.kafka import ensure_topics
from infra.local import processes
from schemas.codec import encode
from streams.emitter import producer_config
from tests.bench.common import bench_servers, start_service, stop_services
from tests.bench.sink_bench import percentile, touchpoint

BI_USER = "bi"
# One core of hashing for as long as the dashboard allows, then the rows so far (break, not throw).
BI_QUERY = ("SELECT count() FROM numbers(1000000000000) WHERE sipHash64(number) % 1000 = 1 "
            "SETTINGS max_execution_time = {s}, timeout_overflow_mode = 'break'")


def phase(settings: Settings, rows: int, bi_seconds: int | None) -> tuple[float, list[float], int]:
    """(sink rows/s, SELECT 1 latencies in ms, BI queries finished) for one drain of `rows`."""
    suffix = uuid.uuid4().hex[:6]
    topics = type(settings.topics)(**{k: f"{v}-{suffix}" for k, v in vars(settings.topics).items()})
    settings = settings.with_(topics=topics, app_id=f"bibench-{suffix}")
    ensure_topics(settings, topics.all())
    producer = KafkaProducer(**producer_config(settings))
    base = int(time.time() * 1000) - 86_400_000
    for i in range(rows):
        e = touchpoint(i, base)
        e["event_id"] = f"{suffix}-{i}"
        producer.send(topics.touchpoints, key=e["journey_id"].encode(), value=encode("touchpoint", e))
    producer.flush()
    producer.close()
    client = admin_client(settings)
    before = client.query("SELECT count() FROM journey.touchpoints").result_rows[0][0]
    stop = threading.Event()
    finished = [0]

    def dashboard() -> None:
        bi = get_client(settings.clickhouse_url, BI_USER, settings.clickhouse_readonly_password)
        while not stop.is_set():
            bi.query(BI_QUERY.format(s=bi_seconds))
            finished[0] += 1

    latencies: list[float] = []

    def probe() -> None:
        own = admin_client(settings)
        while not stop.is_set():
            started = time.perf_counter()
            own.command("SELECT 1")
            latencies.append((time.perf_counter() - started) * 1000)
            time.sleep(0.02)

    threads = [threading.Thread(target=probe, daemon=True)]
    if bi_seconds:
        threads.append(threading.Thread(target=dashboard, daemon=True))
    for t in threads:
        t.start()
    time.sleep(1.0)  # the dashboard query is running before the sink starts
    seen: list[tuple[float, int]] = []

    def drained() -> bool:
        count = client.query("SELECT count() FROM journey.touchpoints").result_rows[0][0] - before
        if count:
            seen.append((time.perf_counter(), count))
        return count >= rows

    try:
        sink = start_service(settings, "consumers.sink", "sink", timeout_s=60)
        try:
            processes.wait_until(drained, 600, interval_s=0.02)
        finally:
            stop_services([sink], timeout_s=30)
    finally:
        stop.set()
    (first_at, first_rows), (done_at, _) = seen[0], seen[-1]
    if first_rows >= rows:
        raise SystemExit(f"--rows {rows} went in as one batch: use at least 4 batches of {settings.sink_batch_rows}")
    for t in threads:
        t.join(timeout=bi_seconds + 30 if bi_seconds else 30)
    return (rows - first_rows) / (done_at - first_at), latencies, finished[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--bi-seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2, help="alternations of without/with (the machine is shared)")
    args = parser.parse_args()
    base_rates, rates, base_lat, lat, bi_done = [], [], [], [], 0
    with bench_servers("bibench", clickhouse_readonly_user=BI_USER) as settings:
        for _ in range(args.rounds):  # alternate, so that other load on the machine hits both alike
            rate, found, _ = phase(settings, args.rows, None)
            base_rates.append(rate)
            base_lat += found
            rate, found, done = phase(settings, args.rows, args.bi_seconds)
            rates.append(rate)
            lat += found
            bi_done += done
    rate, base_rate = statistics.median(rates), statistics.median(base_rates)

    def figure(q: int, note: str | None = None) -> dict[str, object]:
        value, baseline = percentile(lat, q), percentile(base_lat, q)
        out: dict[str, object] = {"value": round(value, 1), "baseline": round(baseline, 1),
                                  "ratio": round(value / baseline, 2)}
        return {**out, "note": note} if note else out

    print(json.dumps({
        "bi_sink_rows_per_s": {"value": round(rate), "baseline": round(base_rate), "ratio": round(rate / base_rate, 2),
                               "note": f"median of {args.rounds} drains while {args.bi_seconds} s BI queries run "
                                       "(read-only user) vs without; target >= 0.8x"},
        "bi_select1_ms_p50": figure(50),
        "bi_select1_ms_p99": figure(99, "SELECT 1 every 20 ms during the drains; target < 100 ms"),
        "rows": args.rows, "bi_queries": bi_done, "probes": [len(base_lat), len(lat)],
        "drains_rows_per_s": {"without": [round(r) for r in base_rates], "with": [round(r) for r in rates]},
    }))


if __name__ == "__main__":
    main()
