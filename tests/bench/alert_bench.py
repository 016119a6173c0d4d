"""Benchmark (not a test): how fast on-call hears of a failure, at a stated background load.

    python -m tests.bench.alert_bench [--load 5000] [--probes 100]

Runs a worker and the notifier (with a webhook receiver) on a fresh stack, keeps `--load`
touchpoints/s of ordinary traffic flowing, and sends probes:
- a COMPLAINT_FILED: produced -> its alert on the alerts topic, and -> at the webhook;
- an ITEM_REQUESTED promised within 1 s that is never delivered: deadline -> alert on the topic.
Baseline, same run: a bare Kafka round trip (produce -> a consumer sees it) on the same broker.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kafka import KafkaConsumer, KafkaProducer

from infra.base.config import Settings
from infra.local import processes
from schemas.codec import decode, encode
from schemas.event_types import STAGE_OF_TYPE
from tests.bench.common import bench_servers, start_service, stop_services

PROBE_TIMEOUT_S = 10  # a probe never seen is an error, not a hang

BACKGROUND_MIX = ["VISIT", "ORDER_PLACED", "ORDER_SERVED", "CHECKOUT_STARTED", "CHECKOUT_COMPLETED",
                  "PAYMENT_SUCCEEDED", "JOURNEY_ENDED"]


def _event(type_: str, journey: str, at: int, **extra: Any) -> dict[str, Any]:
    return {"event_id": uuid.uuid4().hex, "journey_id": journey, "customer_id": None, "type": type_,
            "stage": STAGE_OF_TYPE[type_], "channel": "pos", "occurred_at": at, "store_id": "bench-01",
            "staff_id": None, "request_id": extra.get("request_id"), "promised_within_s": extra.get("promise"),
            "incident_id": None, "attrs": {}, "source": None}


def _quantiles(values: list[float]) -> dict[str, float | None]:
    if len(values) < 2:
        return {"p50": values[0] if values else None, "p99": values[0] if values else None, "n": len(values)}
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": round(statistics.median(values), 1), "p99": round(q[98], 1), "n": len(values)}


class Arrivals:
    """When each probe's alert arrived on the topic and at the webhook (wall-clock ms)."""

    def __init__(self) -> None:
        self.topic: dict[str, float] = {}
        self.webhook: dict[str, float] = {}
        self.lock = threading.Lock()


def _webhook_server(arrivals: Arrivals) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            at = time.time() * 1000
            if body["alert"]["kind"] == "triggered":
                with arrivals.lock:
                    arrivals.webhook.setdefault(body["alert"]["journey_id"], at)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _follow_alerts(settings: Settings, arrivals: Arrivals, stop: threading.Event) -> None:
    reader = KafkaConsumer(settings.topics.alerts, bootstrap_servers=settings.bootstrap_servers, group_id=None,
                           auto_offset_reset="earliest", fetch_max_wait_ms=10)
    while not stop.is_set():
        for records in reader.poll(timeout_ms=50).values():
            at = time.time() * 1000
            for message in records:
                alert = decode(message.value, "alert")
                if alert["kind"] == "triggered":
                    with arrivals.lock:
                        arrivals.topic.setdefault(alert["journey_id"], at)
    reader.close()


def _background(settings: Settings, rate: int, stop: threading.Event) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=5)
    n, started = 0, time.monotonic()
    while not stop.is_set():
        due = started + n / rate
        ahead = due - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        journey = f"bg-{n // len(BACKGROUND_MIX)}"
        producer.send(settings.topics.touchpoints, key=journey.encode(),
                      value=encode("touchpoint", _event(BACKGROUND_MIX[n % len(BACKGROUND_MIX)], journey,
                                                        int(time.time() * 1000))))
        n += 1
    producer.flush()
    producer.close()


def kafka_round_trip_ms(settings: Settings, count: int) -> list[float]:
    """Baseline: produce one message, time until a consumer on the same broker sees it."""
    topic = settings.topics.dlq  # an idle topic of the stack
    reader = KafkaConsumer(topic, bootstrap_servers=settings.bootstrap_servers, group_id=None,
                           auto_offset_reset="latest", fetch_max_wait_ms=10)
    while not reader.assignment():
        reader.poll(timeout_ms=100)
    reader.seek_to_end()
    for tp in reader.assignment():  # resolve "end" now: a lazy reset after the first send skips it
        reader.position(tp)
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=0)
    out = []
    for i in range(count):
        started = time.time() * 1000
        producer.send(topic, key=b"k", value=f"rt-{i}".encode())
        producer.flush()
        got, deadline = False, time.monotonic() + PROBE_TIMEOUT_S
        while not got:
            if time.monotonic() > deadline:
                raise RuntimeError(f"round-trip probe {i} not seen within {PROBE_TIMEOUT_S} s")
            got = any(m.value == f"rt-{i}".encode() for r in reader.poll(timeout_ms=50).values() for m in r)
        out.append(time.time() * 1000 - started)
    producer.close()
    reader.close()
    return out


def run(load: int, probes: int) -> dict[str, Any]:
    arrivals = Arrivals()
    hook = _webhook_server(arrivals)
    with bench_servers("bench-alerts") as base:
        settings = base.with_(web_port=processes.free_port(), oncall_token="bench",
                              webhooks={"bench": f"http://127.0.0.1:{hook.server_address[1]}/"})
        baseline = kafka_round_trip_ms(settings, probes)
        procs = [start_service(settings, "streams.worker", "worker-0", 0)]
        procs.append(start_service(settings, "consumers.notifier", "notifier"))
        stop = threading.Event()
        threads = [threading.Thread(target=_background, args=(settings, load, stop), daemon=True),
                   threading.Thread(target=_follow_alerts, args=(settings, arrivals, stop), daemon=True)]
        for t in threads:
            t.start()
        try:
            time.sleep(3)  # background traffic settles
            producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=0)
            sent: dict[str, float] = {}
            deadlines: dict[str, float] = {}
            for i in range(probes):
                now = int(time.time() * 1000)
                breach = f"probe-breach-{i}"
                producer.send(settings.topics.touchpoints, key=breach.encode(), value=encode(
                    "touchpoint", _event("ITEM_REQUESTED", breach, now, request_id="r", promise=1)))
                deadlines[breach] = now + 1000
                complaint = f"probe-complaint-{i}"
                value = encode("touchpoint", _event("COMPLAINT_FILED", complaint, now))
                sent[complaint] = time.time() * 1000
                producer.send(settings.topics.touchpoints, key=complaint.encode(), value=value)
                producer.flush()
                time.sleep(0.2)
            time.sleep(5)
            producer.close()
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
            stop_services(procs)
    hook.shutdown()
    topic_ms = [arrivals.topic[j] - t for j, t in sent.items() if j in arrivals.topic]
    webhook_ms = [arrivals.webhook[j] - t for j, t in sent.items() if j in arrivals.webhook]
    deadline_ms = [arrivals.topic[j] - d for j, d in deadlines.items() if j in arrivals.topic]
    base_q = _quantiles(baseline)
    alert_q = _quantiles(topic_ms)
    return {
        "background_events_per_s": load,
        "alert_latency_ms": {**alert_q, "baseline_kafka_round_trip": base_q,
                             "ratio_p99": round(alert_q["p99"] / base_q["p99"], 2) if alert_q["p99"] else None},
        "alert_webhook_latency_ms": _quantiles(webhook_ms),
        "deadline_fire_ms": _quantiles(deadline_ms),
        "missing": {"topic": probes - len(topic_ms), "webhook": probes - len(webhook_ms),
                    "deadline": probes - len(deadline_ms)},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--load", type=int, default=5000, help="background touchpoints/s")
    parser.add_argument("--probes", type=int, default=100)
    args = parser.parse_args()
    print(json.dumps(run(args.load, args.probes)))


if __name__ == "__main__":
    main()
