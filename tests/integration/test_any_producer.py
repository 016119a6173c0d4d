"""Producers in the wild (issue 18): librdkafka batches with every codec, batches nobody can read, and
Confluent's Avro serdes with their Schema Registry client against the stack's registry.

One worker, one sink, one notifier and one schema registry serve the module, on topics of their own;
they write their own batches with zstd (KAFKA_COMPRESSION_TYPE), so incidents and alerts are read
compressed too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import kafka.record.default_records as kafka_records
import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext
from kafka import KafkaProducer

from consumers.pipeline_health import probe, quarantine_problems
from infra.base.clickhouse import get_client
from infra.base.config import KafkaConnection, Settings
from infra.base.heartbeat import read_heartbeat, service_ready
from infra.base.kafka import ensure_topics
from infra.base.kafka_clients import librdkafka
from infra.base.schema_registry import reachable
from infra.local.processes import free_port, wait_until
from schemas.codec import encode
from schemas.registry import get_registry
from streams.dead_letters import ReplayResult, read_dead_letters, replay_dead_letters
from streams.topic_reader import assigned_consumer, follow
from tests.integration.test_detection import event, incidents_until, start_worker, stop_worker
from tests.integration.test_sink import start_sink
from tests.topic_names import suffixed

pytestmark = pytest.mark.integration

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


@pytest.fixture(scope="module")
def pipeline(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    suffix = uuid.uuid4().hex[:8]
    settings = stack_settings.with_(
        home=tmp_path_factory.mktemp("any-producer"), app_id=f"jt-{suffix}",
        kafka=KafkaConnection(compression="zstd"), schema_registry_port=free_port(),
        topics=suffixed(stack_settings.topics, suffix))
    ensure_topics(settings, settings.topics.all())
    log = open(settings.home / "services.log", "ab")  # noqa: SIM115 - closed below
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(name: str, module: str) -> None:
        procs[name] = subprocess.Popen([sys.executable, "-m", module], env={**os.environ, **settings.to_env()},
                                       stdout=log, stderr=subprocess.STDOUT)

    spawn("registry", "infra.local.schema_registry_server")
    try:
        assert wait_until(lambda: reachable(settings.schema_registry_url) or procs["registry"].poll() is not None, 30)
        procs["worker"], procs["sink"] = start_worker(settings), start_sink(settings)
        spawn("notifier", "consumers.notifier")
        assert wait_until(lambda: service_ready(settings, "notifier") or procs["notifier"].poll() is not None, 60)
        yield {"settings": settings, "procs": procs}
    finally:
        for name in ("notifier", "sink", "registry"):
            if name in procs:
                procs[name].terminate()
                procs[name].wait(timeout=30)
        log.close()
        if "worker" in procs:
            stop_worker(procs["worker"])


def rows(settings: Settings, table: str, column: str, prefix: str) -> int:
    """Rows of `table` (deduplicated) whose `column` starts with `prefix`."""
    client = get_client(settings.clickhouse_url, settings.clickhouse_user, settings.clickhouse_password)
    sql = f"SELECT count() FROM journey.{table} FINAL WHERE startsWith({column}, {{p:String}})"
    return int(client.query(sql, parameters={"p": prefix}).result_rows[0][0])


def test_librdkafka_batches_with_every_codec_are_read_by_every_component(pipeline: dict[str, Any]) -> None:
    settings: Settings = pipeline["settings"]
    tag = uuid.uuid4().hex[:6]
    now = int(time.time() * 1000)
    complaints: set[str] = set()
    failed: list[Any] = []
    for codec in CODECS:
        # as librdkafka batches by default: a linger, many records per batch, idempotence on
        producer = Producer({**librdkafka(settings), "compression.type": codec, "linger.ms": 20,
                             "enable.idempotence": True, "acks": "all"})
        for i in range(40):
            kind = "COMPLAINT_FILED" if i % 8 == 0 else "VISIT"
            journey = f"{tag}-{codec}-{i}"
            e = event(kind, now - 1000, journey, event_id=f"{tag}-{codec}-{i}")
            if kind == "COMPLAINT_FILED":
                complaints.add(journey)
            producer.produce(settings.topics.touchpoints, key=journey.encode(), value=encode("touchpoint", e),
                             on_delivery=lambda err, _msg: failed.append(err) if err else None)
        assert producer.flush(15) == 0 and not failed, failed
        del producer
    found = incidents_until(settings, lambda latest: complaints <= {i["journey_id"] for i in latest.values()})
    assert complaints <= {i["journey_id"] for i in found.values()}
    assert wait_until(lambda: rows(settings, "touchpoints", "event_id", tag) == 40 * len(CODECS), 60)
    assert wait_until(lambda: rows(settings, "incidents", "journey_id", tag) == len(complaints), 60)
    # the notifier read the (zstd) incidents and paged each complaint
    assert wait_until(lambda: complaints <= {json.loads(line)["journey_id"] for line in
                                             follow(settings, settings.topics.alerts, True, idle_timeout_s=0.5)}, 30)


@contextmanager
def corrupt_gzip() -> Iterator[None]:
    """kafka-python writes gzip batches whose payload is garbage (with a valid CRC): unreadable to any client."""
    original = kafka_records.gzip_encode
    kafka_records.gzip_encode = lambda payload, *a, **k: os.urandom(max(8, len(payload) // 2))
    try:
        yield
    finally:
        kafka_records.gzip_encode = original


def send(settings: Settings, topic: str, values: list[tuple[bytes, bytes]], **config: Any) -> list[int]:
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=50, **config)
    try:
        futures = [producer.send(topic, key=k, value=v) for k, v in values]
        producer.flush()
        return [f.get(timeout=10).offset for f in futures]
    finally:
        producer.close()


def test_an_unreadable_batch_is_quarantined_and_paged_and_nothing_else_is_lost(pipeline: dict[str, Any]) -> None:
    settings: Settings = pipeline["settings"]
    tag = uuid.uuid4().hex[:6]
    now = int(time.time() * 1000)
    t = settings.topics

    def complaint(name: str) -> tuple[bytes, bytes]:
        return name.encode(), encode("touchpoint", event("COMPLAINT_FILED", now - 1000, name, event_id=name))

    key = f"{tag}-same-partition".encode()  # all on one partition, the bad batch between the good ones
    before = send(settings, t.touchpoints, [(key, complaint(f"{tag}-before")[1])])
    with corrupt_gzip():
        bad = send(settings, t.touchpoints, [(key, complaint(f"{tag}-bad{i}")[1]) for i in range(3)],
                   compression_type="gzip")
        send(settings, t.incidents, [(b"x", b"\x00" * 200) for _ in range(2)], compression_type="gzip")
    after = send(settings, t.touchpoints, [(key, complaint(f"{tag}-after")[1])])
    assert before[0] < bad[0] <= bad[-1] < after[0]

    good = {f"{tag}-before", f"{tag}-after"}
    found = incidents_until(settings, lambda latest: good <= {i["journey_id"] for i in latest.values()})
    assert good <= {i["journey_id"] for i in found.values()}
    assert not {i["journey_id"] for i in found.values()} & {f"{tag}-bad{i}" for i in range(3)}

    def letters() -> list[Any]:
        return [d for d in read_dead_letters(settings) if "quarantined" in d.reason]

    # worker and sink both read touchpoints, sink and notifier both read incidents: each dead-letters what it set aside
    assert wait_until(lambda: len(letters()) >= 4, 30), letters()
    origin = f"{t.touchpoints}[{_partition(settings, key)}]@{bad[0]}"
    assert [d.origin for d in letters()].count(origin) == 2, letters()
    assert all("BadGzipFile" in d.reason and f"offsets {bad[0]}..{bad[-1]} " in d.reason
               for d in letters() if d.origin == origin)
    assert sum(d.origin.startswith(f"{t.incidents}[") for d in letters()) == 2
    assert wait_until(lambda: rows(settings, "touchpoints", "event_id", tag) == 2, 60)
    # a quarantine report carries no bytes to re-send: a replay passes it by instead of stopping at it
    assert replay_dead_letters(settings) == ReplayResult(replayed=0, still_bad=0)

    for name, proc in pipeline["procs"].items():
        assert proc.poll() is None, f"{name} died"
    beats = {name: read_heartbeat(settings, name) for name in ("worker-0", "sink", "notifier")}
    assert all(beat and beat.get("quarantine") for beat in beats.values()), beats
    problems = quarantine_problems(probe(settings, int(time.time() * 1000)), int(time.time() * 1000))
    assert set(problems) == {"worker-0 quarantine", "sink quarantine", "notifier quarantine"}
    assert all(p and "BadGzipFile" in p for p in problems.values()), problems

    def pipeline_pages() -> list[dict[str, Any]]:
        return [a for a in (json.loads(line) for line in follow(settings, t.alerts, True, idle_timeout_s=0.5))
                if a["rule"] == "pipeline_stalled" and a["kind"] == "triggered"]

    assert wait_until(lambda: {"worker-0", "sink", "notifier"} <= {
        a["reason"].split(":")[0] for a in pipeline_pages() if "BadGzipFile" in (a["reason"] or "")}, 30)


def _partition(settings: Settings, key: bytes) -> int:
    from kafka.partitioner.default import murmur2
    return (murmur2(key) & 0x7FFFFFFF) % settings.partitions


CASES = Path(__file__).resolve().parents[1] / "cases"


def _serializer(client: SchemaRegistryClient, schema: str) -> AvroSerializer:
    return AvroSerializer(client, schema, conf={"auto.register.schemas": True})


def test_confluent_avro_serdes_with_the_stacks_registry(pipeline: dict[str, Any]) -> None:
    settings: Settings = pipeline["settings"]
    t = settings.topics
    client = SchemaRegistryClient({"url": settings.schema_registry_url})
    tag = uuid.uuid4().hex[:6]
    now = int(time.time() * 1000)
    v1 = (Path(__file__).resolve().parents[2] / "schemas" / "touchpoint.avsc").read_text()
    v2 = (CASES / "08-touchpoint-v2-enum-and-optional.avsc").read_text()
    no_default = (CASES / "08-touchpoint-v2-field-no-default.avsc").read_text()

    def touchpoint(name: str, kind: str, **extra: Any) -> dict[str, Any]:
        return {"event_id": name, "journey_id": name, "customer_id": f"{name}-guest", "type": kind, "stage": "after",
                "channel": "pos", "occurred_at": now - 1000, "store_id": "busan-01", "staff_id": None,
                "request_id": None, "promised_within_s": None, "incident_id": None, "attrs": {}, "source": None,
                **extra}

    # a newer version, compatible both ways: registered; one with a field without default: refused
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema(f"{t.touchpoints}-value", Schema(no_default, "AVRO"))
    assert refused.value.http_status_code == 409 and "table_no" in str(refused.value)
    v2_id = client.register_schema(f"{t.touchpoints}-value", Schema(v2, "AVRO"))
    assert v2_id not in get_registry().ids()  # an id the tracker does not ship: resolved through the registry

    producer = Producer(librdkafka(settings))
    context = SerializationContext(t.touchpoints, MessageField.VALUE)
    sent = [(_serializer(client, v1), touchpoint(f"{tag}-v1", "COMPLAINT_FILED")),
            (_serializer(client, v2), touchpoint(f"{tag}-v2", "COMPLAINT_FILED", device_sent_at=now)),
            (_serializer(client, v2), touchpoint(f"{tag}-cleaned", "TABLE_CLEANED", stage="during",
                                                   device_sent_at=now))]
    for serializer, record in sent:
        producer.produce(t.touchpoints, key=record["journey_id"].encode(), value=serializer(record, context))
    assert producer.flush(15) == 0
    del producer  # librdkafka's client threads stop with it, not at interpreter exit

    complaints = {f"{tag}-v1", f"{tag}-v2"}
    found = incidents_until(settings, lambda latest: complaints <= {i["journey_id"] for i in latest.values()})
    assert complaints <= {i["journey_id"] for i in found.values()}
    # read, not dead-lettered: the unknown symbol became the reader's default
    assert wait_until(lambda: rows(settings, "touchpoints", "event_id", tag) == 3, 60)
    client_ch = get_client(settings.clickhouse_url, settings.clickhouse_user, settings.clickhouse_password)
    types = client_ch.query("SELECT type FROM journey.touchpoints FINAL WHERE event_id = {e:String}",
                            parameters={"e": f"{tag}-cleaned"}).result_rows
    assert types == [("UNKNOWN",)]
    assert not [d for d in read_dead_letters(settings) if tag.encode() in d.value]

    # incidents and alerts, decoded by Confluent's deserializer with the writer schemas from the registry. The bytes
    # are fetched by a group-less kafka-python reader, not librdkafka: the quarantine test above left a corrupt batch
    # on one incidents partition, and librdkafka's consumer never gets past one (it repeats the decompression error)
    deserialize = AvroDeserializer(client)
    seen: dict[str, set[str]] = {t.incidents: set(), t.alerts: set()}
    for topic in seen:
        reader = assigned_consumer(settings, topic, from_beginning=True)
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline and not complaints <= seen[topic]:
                for message in (m for batch in reader.poll(timeout_ms=500).values() for m in batch):
                    record = deserialize(message.value, SerializationContext(topic, MessageField.VALUE))
                    seen[topic].add(record["journey_id"])
        finally:
            reader.close()
    assert complaints <= seen[t.incidents] and complaints <= seen[t.alerts], seen
