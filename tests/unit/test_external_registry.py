"""SCHEMA_REGISTRY_URL: our versions registered in another registry, and its ids used (real HTTP, no Kafka)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator

import pytest
from aiohttp import web

from infra.base.config import Settings
from infra.base.errors import JourneyError
from infra.base.schema_registry import connect, topic_subjects
from infra.local.processes import free_port
from infra.local.schema_registry_server import create_app
from schemas.codec import decode, encode
from schemas.registry import Registry, load_registry
from schemas.registry_api import FIRST_API_ID, RegistryApi


@pytest.fixture
def foreign_registry() -> Iterator[tuple[str, RegistryApi]]:
    """A registry that knows none of our schemas (as a fresh Confluent one), served over HTTP."""
    api = RegistryApi(Registry(), {})
    port = free_port()
    loop = asyncio.new_event_loop()
    started = threading.Event()

    async def serve() -> web.AppRunner:
        runner = web.AppRunner(create_app(api))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

    def run() -> None:
        asyncio.set_event_loop(loop)
        runner = loop.run_until_complete(serve())
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10)
    yield f"http://127.0.0.1:{port}", api
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)


def test_our_versions_are_registered_there_and_its_ids_used(foreign_registry: tuple[str, RegistryApi]) -> None:
    url, api = foreign_registry
    settings = Settings.from_env({"SCHEMA_REGISTRY_URL": url})
    registry = connect(settings, load_registry())
    assert api.list_subjects()[1] == ["alerts-value", "alerts.silences-value", "incidents-value", "touchpoints-value"]
    ours = load_registry()
    for theirs, subject in topic_subjects(settings).items():  # every version we ship, oldest first, with its id there
        versions = ours.versions(subject)
        assert api.list_versions(theirs) == (200, [e.version for e in versions])
        for entry, given in zip(versions, registry.versions(subject), strict=True):
            assert api.get_version(theirs, str(entry.version))[1]["id"] == given.id
            assert json.loads(api.schema_by_id(given.id)[1]["schema"]) == entry.raw
    touchpoint = registry.latest("touchpoint")
    assert touchpoint.id >= FIRST_API_ID and api.schema_by_id(touchpoint.id)[0] == 200
    record = {"event_id": "e", "journey_id": "j", "customer_id": None, "type": "VISIT", "stage": "before",
              "channel": "web", "occurred_at": 1, "store_id": None, "staff_id": None, "request_id": None,
              "promised_within_s": None, "incident_id": None, "attrs": {}, "source": None}
    data = encode("touchpoint", record, registry)
    assert int.from_bytes(data[1:5], "big") == touchpoint.id  # what Confluent's deserializers look up
    assert decode(data, "touchpoint", registry)["event_id"] == "e"


def test_an_unreachable_registry_is_one_clear_error() -> None:
    settings = Settings.from_env({"SCHEMA_REGISTRY_URL": f"http://127.0.0.1:{free_port()}"})
    with pytest.raises(JourneyError, match="schema registry not reachable"):
        connect(settings, load_registry())
