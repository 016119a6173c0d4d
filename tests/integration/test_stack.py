"""The local stack: real Tansu broker and chDB endpoint, driven through kafka-python and clickhouse-connect."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError
from kafka import KafkaProducer

from infra.base.clickhouse import get_client
from infra.base.config import Settings
from infra.base.kafka import consumer, ensure_topics, records_written
from infra.local.smoke import clickhouse_round_trip, kafka_round_trip

pytestmark = pytest.mark.integration


def test_kafka_produce_and_consume_in_a_group(stack_settings: Settings) -> None:
    topic = f"it-{uuid.uuid4().hex[:8]}"
    ensure_topics(stack_settings, [topic], partitions=3)
    producer = KafkaProducer(bootstrap_servers=stack_settings.bootstrap_servers, acks="all")
    sent = {f"value-{i}".encode() for i in range(50)}
    for i, value in enumerate(sorted(sent)):
        producer.send(topic, key=f"key-{i % 5}".encode(), value=value)
    producer.flush()
    producer.close()

    reader = consumer(stack_settings, topic, group_id=f"g-{uuid.uuid4().hex[:6]}", consumer_timeout_ms=20000)
    got = []
    for message in reader:
        got.append(message)
        if len(got) == len(sent):
            break
    reader.commit()
    reader.close()
    assert {m.value for m in got} == sent
    assert {m.partition for m in got} <= {0, 1, 2}
    # keyed messages: one key always lands in one partition
    by_key: dict[bytes, set[int]] = {}
    for m in got:
        by_key.setdefault(m.key, set()).add(m.partition)
    assert all(len(parts) == 1 for parts in by_key.values())


def test_committed_group_resumes_after_its_last_commit(stack_settings: Settings) -> None:
    topic = f"it-{uuid.uuid4().hex[:8]}"
    group = f"g-{uuid.uuid4().hex[:6]}"
    ensure_topics(stack_settings, [topic], partitions=1)
    producer = KafkaProducer(bootstrap_servers=stack_settings.bootstrap_servers, acks="all")
    for i in range(10):
        producer.send(topic, value=f"{i}".encode())
    producer.flush()
    first = consumer(stack_settings, topic, group_id=group, consumer_timeout_ms=20000)
    assert [next(first).value for _ in range(10)] == [f"{i}".encode() for i in range(10)]
    first.commit()
    first.close()
    for i in range(10, 15):
        producer.send(topic, value=f"{i}".encode())
    producer.flush()
    producer.close()
    second = consumer(stack_settings, topic, group_id=group, consumer_timeout_ms=20000)
    assert [next(second).value for _ in range(5)] == [f"{i}".encode() for i in range(10, 15)]
    second.close()


def test_clickhouse_merge_tree_insert_and_query(stack_settings: Settings) -> None:
    client = get_client(stack_settings.clickhouse_url, "default", stack_settings.clickhouse_password)
    table = f"t_{uuid.uuid4().hex[:8]}"
    client.command(
        f"CREATE TABLE {table} (id UInt64, store String, amount Float64) ENGINE = MergeTree ORDER BY id"
    )
    client.insert(table, [[i, f"s{i % 3}", i * 1.5] for i in range(500)], column_names=["id", "store", "amount"])
    rows = client.query(f"SELECT store, count(), sum(amount) FROM {table} GROUP BY store ORDER BY store").result_rows
    assert rows == [
        ("s0", 167, sum(i * 1.5 for i in range(500) if i % 3 == 0)),
        ("s1", 167, sum(i * 1.5 for i in range(500) if i % 3 == 1)),
        ("s2", 166, sum(i * 1.5 for i in range(500) if i % 3 == 2)),
    ]
    client.command(f"DROP TABLE {table}")


def test_clickhouse_error_comes_back_with_the_server_message(stack_settings: Settings) -> None:
    client = get_client(stack_settings.clickhouse_url, "default", stack_settings.clickhouse_password)
    with pytest.raises(DatabaseError) as err:
        client.query("SELECT * FROM table_that_does_not_exist_42")
    assert "table_that_does_not_exist_42" in str(err.value)
    assert "Code: 60" in str(err.value)


def test_smoke_helpers(stack_settings: Settings) -> None:
    assert kafka_round_trip(stack_settings, count=20) > 0
    assert clickhouse_round_trip(stack_settings) == 1000


def _journey(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from infra.cli import main; main()", *args],
        capture_output=True, text=True, env=env, timeout=180,
    )


def test_cli_status_json_reports_each_component(stack_settings: Settings) -> None:
    env = dict(os.environ, JOURNEY_KAFKA_PORT=str(stack_settings.kafka_port),
               JOURNEY_CLICKHOUSE_PORT=str(stack_settings.clickhouse_port),
               JOURNEY_SCHEMA_REGISTRY_PORT=str(stack_settings.schema_registry_port),
               JOURNEY_HOME=str(stack_settings.home))
    result = _journey(["status", "--json"], env)
    components = {c["name"]: c for c in json.loads(result.stdout)["components"]}
    assert components["broker"]["ok"] is True
    assert components["broker"]["address"] == stack_settings.bootstrap_servers
    assert components["clickhouse"]["ok"] is True
    assert components["registry"]["ok"] is True  # the schema registry is part of the servers
    # the test stack runs no Faust worker: status says so and exits non-zero
    assert components["worker-0"]["ok"] is False
    assert result.returncode == 1


def test_cli_up_refuses_a_port_in_use_with_one_clear_line(stack_settings: Settings, tmp_path) -> None:
    env = dict(os.environ, JOURNEY_KAFKA_PORT=str(stack_settings.kafka_port),
               JOURNEY_CLICKHOUSE_PORT=str(stack_settings.clickhouse_port), JOURNEY_HOME=str(tmp_path))
    result = _journey(["up", "-d"], env)
    assert result.returncode != 0
    assert f"port {stack_settings.kafka_port} is already in use" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_records_written_counts_every_record_of_a_partitions_last_batch(stack_settings: Settings) -> None:
    """Tansu reports a partition's end as its last record batch's base offset + 1: three dead
    letters sent as one batch were counted as one by `journey status`."""
    topic = f"it-{uuid.uuid4().hex[:8]}"
    ensure_topics(stack_settings, [topic], partitions=2)
    producer = KafkaProducer(bootstrap_servers=stack_settings.bootstrap_servers, acks="all", linger_ms=200)
    for i in range(3):
        producer.send(topic, value=f"letter-{i}".encode(), partition=0)  # one record batch
    producer.send(topic, value=b"alone", partition=1)
    producer.flush()
    producer.close()
    reader = consumer(stack_settings)
    try:
        assert records_written(stack_settings, reader, topic) == 4
        assert records_written(stack_settings, reader, f"{topic}-never-created") == 0
    finally:
        reader.close()
