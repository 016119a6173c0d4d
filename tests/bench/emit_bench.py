"""Benchmark (not a test): events/s `journey emit` sustains for a 100k-line file.

    python -m tests.bench.emit_bench [--events 100000]

Starts its own broker on a free port, writes a JSON-lines file of --events lines, then times
(a) `emit_events_per_s`: what `journey emit --file F` runs (`emit_stream` on the opened file:
validate + Avro encode + kafka-python produce, acks=all, idempotent, JOURNEY_EMIT_PROCESSES
producer processes), in this process; (b) `emit_cli_events_per_s`: the `journey emit --file F`
command itself, as a fresh process (interpreter start, broker check and all); (c)
`emit_2_processes_events_per_s`: (a) with JOURNEY_EMIT_PROCESSES=2, whatever the default here; and
the baseline: one bare kafka-python producer sending the same already-encoded bytes, in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kafka import KafkaProducer

from schemas.codec import encode
from schemas.contract import parse_json_line
from streams.emit_lines import emit_stream
from streams.emitter import producer_config
from tests.bench.common import bench_servers, own_cpu_seconds


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


def _figure(value: float, baseline: float) -> dict[str, float]:
    return {"value": round(value), "baseline": round(baseline), "ratio": round(value / baseline, 3)}


def _cpu_now() -> float:
    """This process's CPU time, with its finished (joined) children's: the emit workers."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    with bench_servers("emitbench") as settings, tempfile.TemporaryDirectory() as tmp:
        lines = sample_lines(args.events)
        path = Path(tmp) / "events.jsonl"
        path.write_text("\n".join(lines) + "\n")
        started, cpu = time.perf_counter(), _cpu_now()
        with open(path, encoding="utf-8") as stream:
            summary = emit_stream(settings, stream, on_reject=lambda n, r: None)
        emit_s, emit_cpu = time.perf_counter() - started, _cpu_now() - cpu
        assert summary.accepted == args.events, summary

        started = time.perf_counter()
        with open(path, encoding="utf-8") as stream:
            summary = emit_stream(settings.with_(emit_processes=2), stream, on_reject=lambda n, r: None)
        two_s = time.perf_counter() - started
        assert summary.accepted == args.events, summary

        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", "from infra.cli import main; main()", "emit", "--file",
                               str(path), "--json"], env={**os.environ, **settings.to_env()},
                              capture_output=True, text=True, timeout=600)
        cli_s = time.perf_counter() - started
        assert json.loads(done.stdout) == {"accepted": args.events, "rejected": 0}, done.stderr[-500:]

        payloads = [(e["journey_id"].encode(), encode("touchpoint", e))
                    for e in (parse_json_line(line) for line in lines)]
        producer = KafkaProducer(**producer_config(settings))
        started, cpu = time.perf_counter(), own_cpu_seconds()
        for key, value in payloads:
            producer.send(settings.topics.touchpoints, key=key, value=value)
        producer.flush()
        bare_s, bare_cpu = time.perf_counter() - started, own_cpu_seconds() - cpu
        producer.close()
    bare_rate = args.events / bare_s
    per_event = {"value": round(emit_cpu / args.events * 1e6, 1), "baseline": round(bare_cpu / args.events * 1e6, 1),
                 "ratio": round(emit_cpu / bare_cpu, 2),
                 "note": "CPU us per event: validate+encode+produce (all processes) vs produce only"}
    print(json.dumps({"emit_events_per_s": _figure(args.events / emit_s, bare_rate),
                      "emit_cli_events_per_s": _figure(args.events / cli_s, bare_rate),
                      "emit_2_processes_events_per_s": _figure(args.events / two_s, bare_rate),
                      "emit_cpu_us_per_event": per_event,
                      "events": args.events, "processes": settings.emit_processes}))


if __name__ == "__main__":
    main()
