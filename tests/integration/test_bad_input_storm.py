"""Bad-input storm: malformed messages mixed 1:10 into good ones, on the topic and through `journey emit`.

Checked: every good event processed exactly once (the worker's counters, and one incident at
version 1 per complaint journey even though some complaints arrive twice), every bad message in
the dead-letter topic byte for byte with a reason of its kind, the worker alive throughout.
Duplicated event ids are not bad input (producer retries make them): they are deduplicated and
counted, never dead-lettered.

Size: JOURNEY_STORM_GOOD good events (default 50,000; the issue's full size is 100,000:
`JOURNEY_STORM_GOOD=100000 pytest tests/integration/test_bad_input_storm.py -s`).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from infra.base.config import Settings
from infra.base.heartbeat import read_heartbeat
from schemas.codec import encode, encode_with
from schemas.contract import event_to_json, iso_from_ms, validate_event
from streams.dead_letters import read_dead_letters
from tests.integration.test_detection import incidents_until, start_worker, stop_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GOOD = int(os.environ.get("JOURNEY_STORM_GOOD", "50000"))
BAD = GOOD // 10
EMIT_SHARE = 5  # one in five good and bad inputs goes through `journey emit`, the rest straight to the topic
COMPLAINT_EVERY = 50  # good event i is a complaint (an incident) when i % 50 == 0
DUPLICATE_EVERY = 100  # good event i is sent twice when i % 100 == 0 (every such one is also a complaint)


def good_event(i: int, now: int, tag: str) -> dict[str, Any]:
    complaint = i % COMPLAINT_EVERY == 0
    return validate_event({
        "event_id": f"{tag}-g{i}", "journey_id": f"{tag}-{'c' if complaint else 'j'}{i if complaint else i % 997}",
        # complainants do nothing else, so no later event may legitimately change their incident
        "customer_id": f"{tag}-complainant-{i}" if complaint else f"cust-{i % 501}",
        "type": "COMPLAINT_FILED" if complaint else "VISIT", "channel": "pos",
        "occurred_at": iso_from_ms(now - 60_000 + i % 1000), "store_id": "seoul-01",
    }, now)


def bad_topic_message(k: int, now: int, tag: str) -> tuple[bytes, str]:
    """A malformed Kafka message of kind k % 10, and a phrase its dead-letter reason must contain."""
    base = good_event(1, now, tag) | {"event_id": f"{tag}-b{k}", "journey_id": f"{tag}-bad{k}"}
    kind = k % 10
    if kind == 0:
        return f"plain text {k}".encode(), "not Avro wire format"
    if kind == 1:
        return json.dumps(event_to_json(base)).encode(), "not Avro wire format"  # JSON where Avro belongs
    if kind == 2:
        return b"\x00\x00\x00\x03\xe7" + os.urandom(20), "unknown schema id 999"
    if kind == 3:
        return encode("touchpoint", base)[:-7], "Avro body"  # truncated (or corrupt) body
    if kind == 4:
        return encode("silence", _a_silence(k, now)), "belongs to subject 'silence'"  # wrong type of record
    if kind == 5:
        return encode_with(1, base | {"journey_id": ""}), "missing field 'journey_id'"
    if kind == 6:
        return encode_with(1, base | {"event_id": "x" * 5000}), "too long"
    if kind == 7:
        return encode_with(1, base | {"occurred_at": now + 400 * 86_400_000}), "in the future"
    if kind == 8:
        return encode_with(1, base | {"attrs": {f"k{n}": "v" * 1000 for n in range(100)}}), "attrs has 100 entries"
    return encode_with(1, base | {"promised_within_s": -5}), "promised_within_s"


def _a_silence(k: int, now: int) -> dict[str, Any]:
    from consumers.silences import new_silence, silence_record

    return silence_record(new_silence(f"store-{k}", None, now, 60, "storm", None), "create", now)


def bad_emit_line(k: int, now: int, tag: str) -> tuple[str, str]:
    """A malformed JSON line of kind k % 9, and a phrase its reason must contain."""
    obj = event_to_json(good_event(1, now, tag)) | {"event_id": f"{tag}-be{k}"}
    kind = k % 9
    if kind == 0:
        return "{not json " + str(k), "not valid JSON"
    if kind == 1:
        return json.dumps({key: v for key, v in obj.items() if key != "journey_id"}), "missing field 'journey_id'"
    if kind == 2:
        return json.dumps(obj | {"promised_within_s": "10"}), "promised_within_s"  # wrong type
    if kind == 3:
        return json.dumps(obj | {"occurred_at": 1795514400000}), "occurred_at"  # a number, not ISO text
    if kind == 4:
        return json.dumps(obj | {"occurred_at": iso_from_ms(now + 90 * 86_400_000)}), "in the future"
    if kind == 5:
        return json.dumps(obj | {"attrs": {"note": "z" * 100_000}}), "too long"
    if kind == 6:
        return json.dumps(obj | {"type": "TELEPORTED"}), "unknown type"
    if kind == 7:
        return json.dumps(obj | {"customer_id": "\ud800"}), "Unicode"  # a lone surrogate escape
    return json.dumps(obj | {"price": 3}), "unknown field"


def test_bad_input_storm(unique_topics: Settings, tmp_path: Path) -> None:
    settings = unique_topics.with_(home=tmp_path / "home", app_id=f"jt-{uuid.uuid4().hex[:8]}")
    settings.home.mkdir(parents=True)
    now, tag = int(time.time() * 1000), uuid.uuid4().hex[:6]
    rng = random.Random(7)
    good = [good_event(i, now, tag) for i in range(GOOD)]
    duplicates = [e for i, e in enumerate(good) if i % DUPLICATE_EVERY == 0]
    via_emit = [e for i, e in enumerate(good) if i % EMIT_SHARE == 1]
    via_topic = [e for i, e in enumerate(good) if i % EMIT_SHARE != 1] + duplicates
    bad_topic = [bad_topic_message(k, now, tag) for k in range(BAD - BAD // EMIT_SHARE)]
    bad_emit = [bad_emit_line(k, now, tag) for k in range(BAD // EMIT_SHARE)]

    topic_messages: list[tuple[bytes | None, bytes]] = [(e["journey_id"].encode(), encode("touchpoint", e))
                                                       for e in via_topic]
    topic_messages += [(f"bad-{k}".encode(), value) for k, (value, _) in enumerate(bad_topic)]
    rng.shuffle(topic_messages)
    lines = [json.dumps(event_to_json(e)) for e in via_emit] + [line for line, _ in bad_emit]
    rng.shuffle(lines)
    (tmp_path / "storm.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    worker = start_worker(settings)
    started = time.monotonic()
    try:
        producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=5,
                                 max_request_size=8 * 1024 * 1024, batch_size=256 * 1024)
        for key, value in topic_messages:
            producer.send(settings.topics.touchpoints, key=key, value=value)
        producer.flush()
        producer.close()
        produced_s = time.monotonic() - started
        emit = subprocess.run([sys.executable, "-c", "from infra.cli import main; main()", "emit", "--file",
                               str(tmp_path / "storm.jsonl"), "--json"],
                              env=settings.to_env(), capture_output=True, text=True, timeout=600)
        emitted_s = time.monotonic() - started
        assert emit.returncode == 1 and "Traceback" not in emit.stderr
        assert json.loads(emit.stdout) == {"accepted": len(via_emit), "rejected": len(bad_emit)}

        expected_events = len(via_topic) + len(via_emit)  # what the worker reads as valid, duplicates included
        beat: dict[str, Any] = {}
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:  # a hang guard, not a timing assertion
            assert worker.poll() is None, "the worker died during the storm"
            beat = read_heartbeat(settings, "worker-0") or {}
            if beat.get("events", 0) + beat.get("dead_letters", 0) >= expected_events + len(bad_topic):
                break
            time.sleep(1)
        drained_s = time.monotonic() - started
        time.sleep(2)  # anything extra (a message counted twice) would show up now
        beat = read_heartbeat(settings, "worker-0") or {}
        assert worker.poll() is None, "the worker died after the storm"
    finally:
        stop_worker(worker)
    total = len(topic_messages) + len(lines)
    print(f"\nstorm: {GOOD} good + {len(duplicates)} duplicates + {BAD} bad ({len(bad_emit)} through emit); "
          f"{total} inputs: produced to the topic by {produced_s:.1f} s, emit done by {emitted_s:.1f} s, "
          f"worker drained by {drained_s:.1f} s ({total / drained_s:.0f} msg/s end to end)")

    # exactly once: every good event read once, each duplicate recognised as one
    assert beat["events"] == expected_events
    assert beat["duplicates"] == len(duplicates)
    assert beat["dead_letters"] == len(bad_topic)
    complaints = {e["journey_id"] for e in good if e["type"] == "COMPLAINT_FILED"}
    latest = incidents_until(settings, lambda got: len(got) >= len(complaints), timeout_s=120)
    latest = incidents_until(settings, lambda got: False, timeout_s=3)  # and nothing more
    assert {i["journey_id"] for i in latest.values()} == complaints
    assert all(i["version"] == 1 for i in latest.values())  # duplicated complaints changed nothing

    # every bad one in the dead-letter topic, byte for byte, with a reason of its kind
    letters = read_dead_letters(settings)
    assert len(letters) == len(bad_topic) + len(bad_emit)
    by_value = {letter.value: letter for letter in letters}
    expected = [(v, why) for v, why in bad_topic] + [(line.encode("utf-8", "surrogateescape"), why)
                                                      for line, why in bad_emit]
    assert Counter(letter.value for letter in letters) == Counter(v for v, _ in expected)
    wrong = [(why, by_value[v].reason) for v, why in expected if why not in by_value[v].reason]
    assert wrong == [], wrong[:5]
