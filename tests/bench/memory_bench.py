"""Benchmark (not a test): worker memory per open journey, and per customer.

    python -m tests.bench.memory_bench [--journeys 1000000]

Opens `--journeys` journeys (one VISIT each, none ends, no customer id) through a real worker
and reads the worker's resident memory (VmRSS) before and after; then as many again, each of a
new customer: what that adds beyond a journey is the customers stage's memory per customer.
Baselines, same run: the pure `Detector` and `CustomerBook` holding the same in this process
(no Faust, no RocksDB), measured the same way.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from infra.base.heartbeat import read_heartbeat
from infra.local import processes
from schemas.codec import encode
from streams.customers.book import CustomerBook, CustomerRules
from streams.domain.config import load_detection_config
from streams.domain.processor import Detector
from streams.emitter import producer_config
from tests.bench.common import bench_servers, start_service, stop_services


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def visit(i: int, at: int, customer: str | None = None) -> dict:
    return {"event_id": f"m-{i}", "journey_id": f"open-{i}", "customer_id": customer, "type": "VISIT",
            "stage": "before", "channel": "pos", "occurred_at": at + i, "store_id": f"store-{i % 12}",
            "staff_id": None, "request_id": None, "promised_within_s": None, "incident_id": None, "attrs": {},
            "source": None}


def detector_bytes_per_journey(count: int, at: int) -> float:
    gc.collect()
    before = rss_bytes(os.getpid())
    detector = Detector(load_detection_config())
    for start in range(0, count, 10_000):
        detector.process([(i % 4, visit(i, at)) for i in range(start, min(count, start + 10_000))], at + count)
    gc.collect()
    grown = rss_bytes(os.getpid()) - before
    assert len(detector.journeys) == count
    return grown / count


def book_bytes_per_customer(count: int, at: int) -> float:
    gc.collect()
    before = rss_bytes(os.getpid())
    book = CustomerBook(CustomerRules())
    for i in range(count):
        book.take({"k": "s", "journey_id": f"open-{i}", "customer_id": f"c-{i}", "at": at + i})
    gc.collect()
    grown = rss_bytes(os.getpid()) - before
    assert len(book.customers) == count
    return grown / count


def open_journeys(settings: Any, pid: int, start: int, count: int, at: int, customers: bool) -> int:
    """Open `count` more journeys through the worker; its RSS growth."""
    before = rss_bytes(pid)
    producer = KafkaProducer(**producer_config(settings))
    for i in range(start, start + count):
        producer.send(settings.topics.touchpoints, key=f"open-{i}".encode(),
                      value=encode("touchpoint", visit(i, at, f"c-{i}" if customers else None)))
    producer.flush()
    producer.close()
    processes.wait_until(lambda: (read_heartbeat(settings, "worker-0") or {}).get("open_journeys", 0)
                         >= start + count and (not customers or (read_heartbeat(settings, "worker-0") or {})
                                               .get("customers", 0) >= count), 1800, interval_s=1)
    time.sleep(3)  # table writes settle
    return rss_bytes(pid) - before


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--journeys", type=int, default=1_000_000)
    args = parser.parse_args()
    at = int(time.time() * 1000) - 3_600_000
    baseline = detector_bytes_per_journey(args.journeys, at)
    customer_baseline = book_bytes_per_customer(args.journeys, at)
    count = args.journeys
    with bench_servers("bench-memory") as settings:
        worker = start_service(settings, "streams.worker", "worker-0", 0)
        try:
            time.sleep(2)
            journeys_grown = open_journeys(settings, worker.pid, 0, count, at, customers=False)
            customers_grown = open_journeys(settings, worker.pid, count, count, at, customers=True)
        finally:
            stop_services([worker], timeout_s=120)
    per_journey = journeys_grown / count
    per_customer = customers_grown / count - per_journey
    print(json.dumps({"bytes_per_open_journey": {"value": round(per_journey), "baseline": round(baseline),
                                                 "ratio": round(per_journey / baseline, 2)},
                      "bytes_per_customer": {"value": round(per_customer), "baseline": round(customer_baseline),
                                             "ratio": round(per_customer / customer_baseline, 2)},
                      "journeys": count}))


if __name__ == "__main__":
    main()
