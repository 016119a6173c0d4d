"""Benchmark (not a test): ClickHouse sink rows/s and incident visibility lag.

    python -m tests.bench.sink_bench [--rows 200000] [--incidents 200]

(a) `sink_rows_per_s`: a backlog of touchpoints drained by the sink into ClickHouse, from the
first batch visible to the last (the drain rate), against a baseline of clickhouse-connect
inserting the same rows directly in batches of the same size. The one-time start (imports,
migrations, consumer-group join: a few seconds) is reported apart as `sink_start_s`, and the
rate including it as `sink_rows_per_s_with_start`. Use --rows of at least 4 batches.
(b) `clickhouse_visible_ms_p50/p99`: an incident produced to Kafka -> its row visible through
clickhouse-connect, one incident every 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from typing import TextIO

from kafka import KafkaProducer

from consumers.sink import INCIDENT_COLUMNS, TOUCHPOINT_COLUMNS
from infra.base.clickhouse import admin_client
from infra.local import processes, stack
from schemas.codec import encode
from streams.emitter import producer_config
from tests.bench.common import bench_servers, cpu_seconds, own_cpu_seconds, start_service, stop_services


def touchpoint(i: int, base: int) -> dict:
    return {"event_id": f"s-{i}", "journey_id": f"j-{i % 9000}", "customer_id": f"c-{i % 4000}",
            "type": "VISIT", "stage": "before", "channel": "pos", "occurred_at": base + i,
            "store_id": f"store-{i % 12}", "staff_id": None, "request_id": None, "promised_within_s": None,
            "incident_id": None, "attrs": {"table": str(i % 30)}, "source": None}


def incident(i: int, now: int) -> dict:
    from streams.domain.config import load_detection_config
    from streams.domain.incidents import new_incident

    rule = load_detection_config().rule("complaint")
    trigger = {"event_id": f"t-{i}", "customer_id": "c-1", "store_id": "s-1", "channel": "pos"}
    return new_incident(rule, f"vis-{i}", f"t-{i}", trigger, now, now, False)


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def _log_file() -> int | TextIO:
    """The sink's log: DEVNULL, or the file named by SINK_BENCH_LOG (to see its batches)."""
    path = os.environ.get("SINK_BENCH_LOG")
    return open(path, "w") if path else subprocess.DEVNULL  # noqa: SIM115 - lives as long as the sink


def _servers_cpu(settings) -> float:
    """CPU seconds of the stack's servers (broker, ClickHouse endpoint) so far."""
    return sum(cpu_seconds(proc.pid) for proc in stack.running(settings))


def _figure(value: float, baseline: float) -> dict[str, float]:
    return {"value": round(value, 1), "baseline": round(baseline, 1), "ratio": round(value / baseline, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--incidents", type=int, default=200)
    args = parser.parse_args()
    with bench_servers("sinkbench") as settings:
        sink = None
        try:
            client = admin_client(settings)
            base = int(time.time() * 1000) - 86_400_000
            events = [touchpoint(i, base) for i in range(args.rows)]
            # baseline: the same rows straight into ClickHouse, same batch size
            client.command("CREATE TABLE journey.touchpoints_baseline AS journey.touchpoints")
            rows = [[e[c] for c in TOUCHPOINT_COLUMNS[:-2]] + [0, i] for i, e in enumerate(events)]
            started, servers_cpu, cpu = time.perf_counter(), _servers_cpu(settings), own_cpu_seconds()
            size = settings.sink_batch_rows
            for start in range(0, len(rows), size):
                client.insert("journey.touchpoints_baseline", rows[start:start + size],
                              column_names=TOUCHPOINT_COLUMNS)
            baseline = len(rows) / (time.perf_counter() - started)
            # the whole machine's CPU per row of the direct inserts: this client plus the servers
            direct_all_cpu_us = (own_cpu_seconds() - cpu + _servers_cpu(settings) - servers_cpu) / len(rows) * 1e6

            producer = KafkaProducer(**producer_config(settings))
            for e in events:
                producer.send(settings.topics.touchpoints, key=e["journey_id"].encode(), value=encode("touchpoint", e))
            producer.flush()
            launched = time.perf_counter()
            sink = start_service(settings, "consumers.sink", "sink", stderr=_log_file(), timeout_s=60)
            started = time.perf_counter()
            seen: list[tuple[float, int, float, float]] = []  # (time, rows visible, sink CPU s, servers CPU s)

            def drained() -> bool:
                count = client.query("SELECT count() FROM journey.touchpoints").result_rows[0][0]
                if count:
                    seen.append((time.perf_counter(), count, cpu_seconds(sink.pid), _servers_cpu(settings)))
                return count >= args.rows

            processes.wait_until(drained, 600, interval_s=0.02)
            (first_at, first_rows, first_cpu, first_servers), (done_at, _, done_cpu, done_servers) = seen[0], seen[-1]
            if first_rows >= args.rows:
                raise SystemExit(f"--rows {args.rows} went in as one batch: use at least 4 batches of {size}")
            sink_rate = (args.rows - first_rows) / (done_at - first_at)
            sink_cpu_us = (done_cpu - first_cpu) / (args.rows - first_rows) * 1e6
            servers_cpu_us = (done_servers - first_servers) / (args.rows - first_rows) * 1e6
            with_start = args.rows / (done_at - started)
            start_s = first_at - launched

            cpu = own_cpu_seconds()
            for start in range(0, len(rows), size):  # the baseline's client CPU per row, for comparison
                client.insert("journey.touchpoints_baseline", rows[start:start + size], column_names=TOUCHPOINT_COLUMNS)
            direct_cpu_us = (own_cpu_seconds() - cpu) / len(rows) * 1e6

            direct = []  # baseline: the same incident rows inserted straight through clickhouse-connect
            for i in range(args.incidents):
                record = incident(args.incidents + i, int(time.time() * 1000))
                started = time.perf_counter()
                client.insert("journey.incidents", [[record[c] for c in INCIDENT_COLUMNS]],
                              column_names=INCIDENT_COLUMNS)
                client.query("SELECT count() FROM journey.incidents WHERE incident_id = {i:String}",
                             parameters={"i": record["incident_id"]})
                direct.append((time.perf_counter() - started) * 1000)
            lags = []
            for i in range(args.incidents):
                record = incident(i, int(time.time() * 1000))
                produced = time.perf_counter()
                producer.send(settings.topics.incidents, key=record["incident_id"].encode(),
                              value=encode("incident", record))
                producer.flush()
                processes.wait_until(lambda r=record: client.query(
                    "SELECT count() FROM journey.incidents WHERE incident_id = {i:String}",
                    parameters={"i": r["incident_id"]}).result_rows[0][0] == 1, 30, interval_s=0.01)
                lags.append((time.perf_counter() - produced) * 1000)
                time.sleep(0.05)
            producer.close()
        finally:
            if sink is not None:
                stop_services([sink], timeout_s=30)
    rate = {"value": round(sink_rate), "baseline": round(baseline), "ratio": round(sink_rate / baseline, 3)}
    print(json.dumps({
        "sink_rows_per_s": rate,
        "sink_rows_per_s_with_start": {"value": round(with_start), "baseline": round(baseline),
                                       "ratio": round(with_start / baseline, 3)},
        "sink_start_s": round(start_s, 2),
        "sink_cpu_us_per_row": {"value": round(sink_cpu_us, 1), "baseline": round(direct_cpu_us, 1),
                                "ratio": round(sink_cpu_us / direct_cpu_us, 2),
                                "note": "sink processes (consume+decode+insert) vs the direct inserting client"},
        "sink_all_cpu_us_per_row": {"value": round(sink_cpu_us + servers_cpu_us, 1),
                                    "baseline": round(direct_all_cpu_us, 1),
                                    "ratio": round((sink_cpu_us + servers_cpu_us) / direct_all_cpu_us, 2),
                                    "servers": round(servers_cpu_us, 1),
                                    "note": "sink + broker + ClickHouse endpoint vs direct client + servers"},
        "clickhouse_visible_ms_p50": _figure(percentile(lags, 50), percentile(direct, 50)),
        "clickhouse_visible_ms_p99": _figure(percentile(lags, 99), percentile(direct, 99)),
        "rows": args.rows, "incidents": args.incidents, "incident_columns": len(INCIDENT_COLUMNS),
    }))


if __name__ == "__main__":
    main()
