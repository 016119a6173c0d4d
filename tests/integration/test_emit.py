"""`journey emit` / the emitter library / `journey tail` / dead letters against the real broker."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaProducer

from infra.base.config import Settings
from infra.base.errors import JourneyError
from schemas.codec import encode
from schemas.contract import event_to_json
from schemas.dead_letter import dead_letter_headers
from schemas.event_types import STAGE_OF_TYPE
from streams.dead_letters import read_dead_letters, replay_dead_letters
from streams.emit_parallel import emit_lines_parallel
from streams.topic_reader import follow

pytestmark = pytest.mark.integration


def _event(i: int, type_: str = "VISIT", **extra: object) -> dict[str, object]:
    event: dict[str, object] = {
        "event_id": f"e-{i}", "journey_id": f"j-{i % 7}", "customer_id": f"c-{i % 5}",
        "type": type_, "stage": STAGE_OF_TYPE[type_], "channel": "pos",
        "occurred_at": "2026-11-23T12:00:00.000Z", "store_id": "seoul-01",
    }
    event.update(extra)
    return event


def _env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        JOURNEY_HOME=str(settings.home), JOURNEY_KAFKA_PORT=str(settings.kafka_port),
        JOURNEY_CLICKHOUSE_PORT=str(settings.clickhouse_port),
        JOURNEY_TOPIC_TOUCHPOINTS=settings.topics.touchpoints, JOURNEY_TOPIC_DLQ=settings.topics.dlq,
        JOURNEY_TOPIC_INCIDENTS=settings.topics.incidents, JOURNEY_TOPIC_ALERTS=settings.topics.alerts,
    )
    return env


def _journey(args: list[str], settings: Settings, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from infra.cli import main; main()", *args],
        input=stdin, capture_output=True, text=True, env=_env(settings), timeout=120,
    )


def _read_all(settings: Settings, topic: str, count: int) -> list[dict[str, object]]:
    return [json.loads(line) for line in follow(settings, topic, from_beginning=True, limit=count, idle_timeout_s=10)]


def test_every_event_type_round_trips_through_the_broker(unique_topics: Settings) -> None:
    events = [_event(i, t, request_id="r-1") for i, t in enumerate(sorted(STAGE_OF_TYPE))]
    lines = "\n".join(json.dumps(e) for e in events) + "\n"
    result = _journey(["emit", "--json"], unique_topics, stdin=lines)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"accepted": len(events), "rejected": 0}
    got = _read_all(unique_topics, unique_topics.topics.touchpoints, len(events))
    by_id = {g["event_id"]: g for g in got}
    for event in events:
        assert {k: by_id[event["event_id"]][k] for k in event} == event


def test_mixed_file_gives_counts_reasons_and_each_good_line_exactly_once(
    unique_topics: Settings, tmp_path: Path
) -> None:
    good = [_event(i) for i in range(20)]
    lines = [json.dumps(e) for e in good]
    bad = {
        3: "{not json",
        7: json.dumps({k: v for k, v in _event(100).items() if k != "journey_id"}),
        11: json.dumps(_event(101, type_="VISIT") | {"type": "TELEPORTED"}),
        15: json.dumps(_event(102) | {"occurred_at": "yesterday"}),
    }
    for line_no in sorted(bad):
        lines.insert(line_no - 1, bad[line_no])
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = _journey(["emit", "--file", str(path), "--json"], unique_topics)
    assert result.returncode == 1
    assert json.loads(result.stdout) == {"accepted": 20, "rejected": 4}
    errors = result.stderr.strip().splitlines()
    assert [e.split(":")[0] for e in errors] == ["line 3", "line 7", "line 11", "line 15"]
    assert "not valid JSON" in errors[0]
    assert "journey_id" in errors[1]
    assert "TELEPORTED" in errors[2]
    assert "occurred_at" in errors[3]
    got = _read_all(unique_topics, unique_topics.topics.touchpoints, 25)
    assert sorted(g["event_id"] for g in got) == sorted(e["event_id"] for e in good)
    # every refused line is in the dead-letter topic, byte for byte, with the reason it was refused
    letters = sorted(read_dead_letters(unique_topics), key=lambda d: int(d.origin.rsplit(" ", 1)[1]))
    assert [d.value.decode() for d in letters] == [bad[n] for n in sorted(bad)]
    assert [f"{d.origin.removeprefix('journey emit ')}: {d.reason}" for d in letters] == errors  # "line N: why"


def test_emit_to_an_unreachable_broker_fails_fast_with_one_line(unique_topics: Settings) -> None:
    dead = unique_topics.with_(kafka_port=1)
    result = _journey(["emit"], dead, stdin=json.dumps(_event(1)) + "\n")
    assert result.returncode != 0
    assert "not reachable" in result.stderr and "Traceback" not in result.stderr


def test_dead_letters_are_listed_with_reason_and_replayed_once_fixed(unique_topics: Settings) -> None:
    settings = unique_topics
    good = encode("touchpoint", _parsed(_event(500)))
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    headers = dead_letter_headers("not Avro wire format", settings.topics.touchpoints, 0, 42, "decode")
    producer.send(settings.topics.dlq, key=b"j-x", value=b"\x7bgarbage", headers=headers)
    producer.send(settings.topics.dlq, key=b"j-0", value=good,
                  headers=dead_letter_headers("broker hiccup", settings.topics.touchpoints, 1, 7, "decode"))
    # a line `journey emit` refused (say, under a stricter contract) that reads fine now
    producer.send(settings.topics.dlq, key=None, value=json.dumps(_event(501)).encode(),
                  headers=dead_letter_headers("stricter once", "journey emit", None, 3, "contract"))
    producer.flush()
    producer.close()
    letters = read_dead_letters(settings)
    assert sorted(letter.reason for letter in letters) == ["broker hiccup", "not Avro wire format", "stricter once"]
    listed = _journey(["dlq", "list", "--json"], settings)
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.strip().splitlines()) == 3

    first = replay_dead_letters(settings)
    assert (first.replayed, first.still_bad) == (2, 1)
    replayed = _read_all(settings, settings.topics.touchpoints, 2)  # decoded as Avro touchpoints
    assert sorted(r["event_id"] for r in replayed) == ["e-500", "e-501"]


def _parsed(obj: dict[str, object]) -> dict[str, object]:
    from schemas.contract import validate_event

    event = validate_event(obj)
    assert event_to_json(event)["event_id"] == obj["event_id"]
    return event


def test_schema_evolution_through_the_broker(unique_topics: Settings) -> None:
    """A newer producer (v2: one more optional field) and an older one share the topic;
    a v1 reader and a v2 reader each read both kinds of message."""
    import copy

    from kafka import KafkaConsumer, TopicPartition

    from schemas.codec import decode, encode_with
    from schemas.registry import load_registry

    registry = load_registry()
    v1 = registry.latest("touchpoint")
    raw = copy.deepcopy(v1.raw)
    raw["fields"].append({"name": "device", "type": ["null", "string"], "default": None})
    v2 = registry.register(2001, "touchpoint", v1.version + 1, raw)
    old = _parsed(_event(900))
    new = dict(_parsed(_event(901)), device="kiosk-2")
    producer = KafkaProducer(bootstrap_servers=unique_topics.bootstrap_servers, acks="all")
    topic = unique_topics.topics.touchpoints
    producer.send(topic, key=b"j", partition=0, value=encode_with(v1.id, old, registry))
    producer.send(topic, key=b"j", partition=0, value=encode_with(v2.id, new, registry))
    producer.flush()
    producer.close()
    reader = KafkaConsumer(bootstrap_servers=unique_topics.bootstrap_servers, consumer_timeout_ms=10000)
    reader.assign([TopicPartition(topic, 0)])
    reader.seek_to_beginning()
    values = [m.value for m, _ in zip(reader, range(2), strict=False)]
    reader.close()
    as_v1 = [decode(v, "touchpoint", registry, reader=v1) for v in values]
    as_v2 = [decode(v, "touchpoint", registry, reader=v2) for v in values]
    assert as_v1 == [old, {k: v for k, v in new.items() if k != "device"}]  # old reader, new writer
    assert as_v2 == [dict(old, device=None), new]  # new reader, old writer


def test_file_emitted_by_several_processes_keeps_each_journeys_order_and_sends_each_line_once(
    unique_topics: Settings, tmp_path: Path
) -> None:
    """`--file` splits lines by journey over JOURNEY_EMIT_PROCESSES producers (3 here)."""
    total, journeys = 3000, 40
    lines = [json.dumps(_event(i) | {"journey_id": f"j-{i % journeys}", "attrs": {"seq": str(i)}})
             for i in range(total)]
    lines[9] = json.dumps(_event(9) | {"channel": "fax"})  # line 10
    lines[2500] = "[1, 2]"  # line 2501: no journey id to route by
    path = tmp_path / "many.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = subprocess.run(
        [sys.executable, "-c", "from infra.cli import main; main()", "emit", "--file", str(path), "--json"],
        capture_output=True, text=True, env={**_env(unique_topics), "JOURNEY_EMIT_PROCESSES": "3"}, timeout=300,
    )
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout) == {"accepted": total - 2, "rejected": 2}
    assert [e.split(":")[0] for e in result.stderr.strip().splitlines()] == ["line 10", "line 2501"]
    got = _read_all(unique_topics, unique_topics.topics.touchpoints, total)
    seqs = [int(g["attrs"]["seq"]) for g in got]
    assert sorted(seqs) == sorted(set(range(total)) - {9, 2500})  # each good line exactly once
    by_journey: dict[str, list[int]] = {}
    for g in got:
        by_journey.setdefault(g["journey_id"], []).append(int(g["attrs"]["seq"]))
    assert all(s == sorted(s) for s in by_journey.values())  # in file order within each journey
    # the refused lines are dead-lettered by whichever process refused them, as in one process
    letters = sorted(read_dead_letters(unique_topics), key=lambda d: int(d.origin.rsplit(" ", 1)[1]))
    assert [(d.origin, d.value.decode()) for d in letters] == [
        ("journey emit line 10", lines[9]), ("journey emit line 2501", lines[2500])]


@pytest.mark.timeout(240)  # without the fix this hung: the parent blocked writing to the dead worker's pipe
def test_an_emit_worker_that_dies_is_a_one_line_error_not_a_hang(unique_topics: Settings) -> None:
    def lines() -> Iterator[str]:
        for i in range(100_000):
            if i == 1000:  # the worker is killed (OOM killer, kill -9) while lines are still coming
                for child in multiprocessing.active_children():
                    if child.name.startswith("emit-"):
                        child.kill()
                        child.join()
            yield json.dumps(_event(i) | {"journey_id": f"j-{i % 50}"})

    with pytest.raises(JourneyError, match="an emit worker process died"):
        emit_lines_parallel(unique_topics, lines(), lambda number, reason: None, processes=2)


def test_a_file_in_one_process_goes_out_in_chunks_in_order_and_each_line_once(
    unique_topics: Settings, tmp_path: Path
) -> None:
    """The file path hands events to the batch producer in chunks: order must hold across them."""
    from streams.emit_batches import CHUNK
    from streams.emit_lines import emit_stream

    total = 2 * CHUNK + 500
    lines = [json.dumps(_event(i) | {"journey_id": f"j-{i % 30}", "attrs": {"seq": str(i)}}) for i in range(total)]
    lines[CHUNK + 3] = "{not json"
    path = tmp_path / "chunks.jsonl"
    path.write_text("\n".join(lines) + "\n")
    rejects: list[tuple[int, str]] = []
    with open(path, encoding="utf-8") as stream:
        summary = emit_stream(unique_topics.with_(emit_processes=1), stream, lambda n, r: rejects.append((n, r)))
    assert (summary.accepted, summary.rejected) == (total - 1, 1)
    assert [n for n, _ in rejects] == [CHUNK + 4]
    got = _read_all(unique_topics, unique_topics.topics.touchpoints, total)
    seqs = [int(g["attrs"]["seq"]) for g in got]
    assert sorted(seqs) == sorted(set(range(total)) - {CHUNK + 3})
    by_journey: dict[str, list[int]] = {}
    for g in got:
        by_journey.setdefault(g["journey_id"], []).append(int(g["attrs"]["seq"]))
    assert all(s == sorted(s) for s in by_journey.values())
    assert [d.value.decode() for d in read_dead_letters(unique_topics)] == ["{not json"]
