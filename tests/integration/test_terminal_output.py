"""What the terminal shows against the real broker: `journey alerts --from-beginning` in time order."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import pytest
from kafka import KafkaProducer

from infra.base.config import Settings
from schemas.codec import encode

pytestmark = pytest.mark.integration


def test_alert_history_comes_in_time_order_across_partitions(unique_topics: Settings) -> None:
    settings = unique_topics
    tag = uuid.uuid4().hex[:6]
    base = int(time.time() * 1000) - 60_000
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    # newest first, each on another partition: a reader that drains partition by partition shows them backwards
    for n in range(8):
        record = {"alert_id": f"al-{tag}-{n}", "incident_id": f"inc-{tag}-{n}", "kind": "triggered", "level": 0,
                  "severity": "high", "rule": "complaint", "store_id": "seoul-01", "journey_id": f"{tag}-{n}",
                  "customer_id": None, "at": base + (8 - n) * 1000, "failed_at": base, "paged": True,
                  "reason": None, "message": f"complaint {n}", "channels": ["topic"]}
        producer.send(settings.topics.alerts, value=encode("alert", record), partition=n % 4)
    producer.flush()
    producer.close()
    done = subprocess.run([sys.executable, "-c", "from infra.cli import main; main()", "alerts", "--from-beginning",
                           "--idle-timeout", "1", "--json"], env={**os.environ, **settings.to_env()},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    times = [json.loads(line)["at"] for line in done.stdout.splitlines()]
    assert len(times) == 8 and times == sorted(times)
    limited = subprocess.run([sys.executable, "-c", "from infra.cli import main; main()", "alerts", "--from-beginning",
                              "-n", "3"], env={**os.environ, **settings.to_env()}, capture_output=True, text=True,
                             timeout=120)
    assert limited.returncode == 0 and [line.split("  ")[1] for line in limited.stdout.splitlines()] == [
        "complaint 7", "complaint 6", "complaint 5"]
