"""CLI commands that write or read our Avro use SCHEMA_REGISTRY_URL's ids, as the worker and sink do.

The "external" registry is the stack's own registry server code (`create_app`) over an empty
registry, as a fresh Confluent one would be: the ids it gives are not the ones we ship, so a
command that encodes with our own ids, or cannot decode the registry's, is caught.
This process never connects its own (global) registry to it: it decodes with a registry object
of its own, and reads raw bytes with a bare consumer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from infra.base.config import Settings
from infra.base.schema_registry import connect
from schemas.codec import decode
from schemas.contract import event_to_json
from schemas.control import is_control
from schemas.registry import load_registry
from schemas.registry_api import FIRST_API_ID, RegistryApi
from tests.integration.test_alerting import TOKEN, oncall_settings, running_notifier
from tests.integration.test_detection import event, start_worker, stop_worker
from tests.unit.test_external_registry import foreign_registry  # noqa: F401 - the fixture, shared

pytestmark = pytest.mark.integration


def journey(settings: Settings, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from infra.cli import main; main()", *args], input=stdin,
                          capture_output=True, text=True, env={**os.environ, **settings.to_env()}, timeout=120)


def raw_values(settings: Settings, topic: str) -> list[bytes]:
    """Every value of `topic`, as bytes (a bare client: nothing decoded here)."""
    reader = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False)
    try:
        assignment = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())]
        reader.assign(assignment)
        reader.seek_to_beginning(*assignment)
        values: list[bytes] = []
        while batch := reader.poll(timeout_ms=1500):
            values += [m.value for messages in batch.values() for m in messages]
        return values
    finally:
        reader.close()


def schema_id(value: bytes) -> int:
    return int.from_bytes(value[1:5], "big")


def test_cli_commands_encode_and_decode_with_the_external_registrys_ids(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory, foreign_registry: tuple[str, RegistryApi],  # noqa: F811
) -> None:
    url, _api = foreign_registry
    settings = oncall_settings(stack_settings, tmp_path_factory.mktemp("registry-cli"), oncall_token=TOKEN,
                               external_schema_registry=url)
    theirs = connect(settings, load_registry())  # our versions registered there; this object takes its ids
    ids = {subject: theirs.latest(subject).id for subject in ("touchpoint", "alert", "silence")}
    assert min(ids.values()) >= FIRST_API_ID  # not the ids we ship
    tag = uuid.uuid4().hex[:6]
    complaint = event("COMPLAINT_FILED", int(time.time() * 1000), f"{tag}-j", store_id=f"{tag}-store")
    worker = start_worker(settings)
    try:
        with running_notifier(settings):
            emitted = journey(settings, "emit", stdin=json.dumps(event_to_json(complaint)) + "\n")
            assert emitted.returncode == 0, emitted.stderr
            # `journey alerts` decodes the page the notifier wrote with the registry's alert id
            paged = journey(settings, "alerts", "--from-beginning", "--limit", "1", "--idle-timeout", "90", "--json")
            assert paged.returncode == 0 and paged.stdout.strip(), paged.stderr
            incident = json.loads(paged.stdout.splitlines()[0])["incident_id"]
            for action in ("ack", "resolve"):
                done = journey(settings, action, incident, "--by", "s-1")
                assert done.returncode == 0, done.stderr
            added = journey(settings, "silence", "add", "--store", f"{tag}-quiet", "--for", "10m")
            assert added.returncode == 0, added.stderr
            listed = journey(settings, "silence", "list", "--json")
            assert listed.returncode == 0 and f"{tag}-quiet" in listed.stdout, listed.stderr + listed.stdout
            tail = journey(settings, "tail", settings.topics.touchpoints, "--from-beginning", "--limit", "3")
            assert tail.returncode == 0, tail.stderr
            assert [json.loads(line)["type"] for line in tail.stdout.splitlines()] == [
                "COMPLAINT_FILED", "FAILURE_ACKNOWLEDGED", "RECOVERY_RESOLVED"]
    finally:
        stop_worker(worker)
    written = raw_values(settings, settings.topics.touchpoints)
    assert any(is_control(v) for v in written)  # `journey emit`'s begin and end of data (schemas.control)
    touchpoints = [v for v in written if not is_control(v)]
    assert [schema_id(v) for v in touchpoints] == [ids["touchpoint"]] * 3  # the emit, the ack and the resolve
    assert [decode(v, "touchpoint", theirs)["type"] for v in touchpoints] == [
        "COMPLAINT_FILED", "FAILURE_ACKNOWLEDGED", "RECOVERY_RESOLVED"]
    silences: list[Any] = raw_values(settings, settings.topics.silences)
    assert [schema_id(v) for v in silences] == [ids["silence"]]
    assert decode(silences[0], "silence", theirs)["store_id"] == f"{tag}-quiet"
    assert {schema_id(v) for v in raw_values(settings, settings.topics.alerts)} == {ids["alert"]}
