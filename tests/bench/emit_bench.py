"""Benchmark (not a test): events/s `journey emit` sustains for a 100k-line file.

    python -m tests.bench.emit_bench [--events 100000]

Starts its own broker on a free port, writes a JSON-lines file, then times (a) the `journey
emit` code path (validate + Avro encode + kafka-python produce, acks=all) and (b) a bare
kafka-python producer sending the same encoded bytes, as the baseline, in the same run.
"""

from __future__ import annotations

import argparse
import io
import json
import time

from kafka import KafkaProducer

from schemas.codec import encode
from schemas.contract import parse_json_line
from streams.emit_lines import emit_lines
from streams.emitter import producer_config
from tests.bench.common import bench_servers


def sample_lines(count: int) -> list[str]:
    """Realistic JSON lines: a mix of types across 5k journeys."""
    types = [("VISIT", "before"), ("ITEM_REQUESTED", "during"), ("ITEM_DELIVERED", "during"),
             ("PAYMENT_SUCCEEDED", "during"), ("FEEDBACK_SUBMITTED", "after")]
    base = int(time.time() * 1000) - 3_600_000
    lines = []
    for i in range(count):
        type_, stage = types[i % len(types)]
        ms = base + i
        lines.append(json.dumps({
            "event_id": f"ev-{i}", "journey_id": f"j-{i % 5000}", "customer_id": f"c-{i % 3000}",
            "type": type_, "stage": stage, "channel": "pos",
            "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z",
            "store_id": "seoul-01", "request_id": f"r-{i % 7}", "attrs": {"item": "spoon", "score": "4"},
        }))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    with bench_servers("emitbench") as settings:
        lines = sample_lines(args.events)
        text = "\n".join(lines) + "\n"
        started = time.perf_counter()
        summary = emit_lines(settings, io.StringIO(text), on_reject=lambda n, r: None)
        emit_s = time.perf_counter() - started
        assert summary.accepted == args.events, summary

        payloads = [(e["journey_id"].encode(), encode("touchpoint", e))
                    for e in (parse_json_line(line) for line in lines)]
        producer = KafkaProducer(**producer_config(settings))
        started = time.perf_counter()
        for key, value in payloads:
            producer.send(settings.topics.touchpoints, key=key, value=value)
        producer.flush()
        bare_s = time.perf_counter() - started
        producer.close()
    emit_rate, bare_rate = args.events / emit_s, args.events / bare_s
    print(json.dumps({"emit_events_per_s": {"value": round(emit_rate), "baseline": round(bare_rate),
                                            "ratio": round(emit_rate / bare_rate, 3)},
                      "events": args.events}))


if __name__ == "__main__":
    main()
