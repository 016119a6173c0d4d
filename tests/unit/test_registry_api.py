"""The Confluent Schema Registry API over our registry (pure), and ids resolved through a registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.codec import decode, encode_with
from schemas.registry import load_registry
from schemas.registry_api import FIRST_API_ID, RegistryApi

CASES = Path(__file__).resolve().parents[1] / "cases"
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
SUBJECTS = {"touchpoints-value": "touchpoint", "incidents-value": "incident", "alerts-value": "alert"}


def shipped(subject: str) -> list[dict[str, Any]]:
    """What schemas/registry.json ships for `subject`, oldest version first (read here, not through the module)."""
    index = json.loads((SCHEMAS / "registry.json").read_text())["schemas"]
    return sorted((e for e in index if e["subject"] == subject), key=lambda e: e["version"])


def api(saved: list[Any] | None = None) -> RegistryApi:
    return RegistryApi(load_registry(), SUBJECTS, save=(saved.append if saved is not None else lambda _e: None))


def body(path: Path) -> dict[str, str]:
    return {"schema": path.read_text()}


def test_reads_what_the_clients_ask_for() -> None:
    a = api()
    alerts = shipped("alert")
    assert len(alerts) >= 2  # what follows is about a subject with several versions
    for incident in shipped("incident"):
        status, found = a.schema_by_id(incident["id"])
        assert status == 200 and json.loads(found["schema"]) == json.loads((SCHEMAS / incident["file"]).read_text())
    unknown = max(a.registry.ids()) + 1
    assert a.schema_by_id(unknown) == (404, {"error_code": 40403, "message": f"Schema {unknown} not found"})
    for alert in alerts:
        assert a.versions_of_id(alert["id"]) == (200, [{"subject": "alerts-value", "version": alert["version"]}])
        assert a.get_version("alerts-value", str(alert["version"]))[1]["id"] == alert["id"]
    assert "touchpoints-value" in a.list_subjects()[1]
    assert a.list_versions("alerts-value") == (200, [e["version"] for e in alerts])  # every one, oldest first
    assert a.get_version("alerts-value", "latest")[1]["id"] == alerts[-1]["id"]
    assert a.get_version("alerts-value", str(alerts[-1]["version"] + 1))[1]["error_code"] == 40402
    assert a.get_version("nope-value", "1")[1]["error_code"] == 40401
    assert a.get_version("alerts-value", "x")[0] == 422


def test_lookup_finds_our_version_whatever_the_formatting() -> None:
    a = api()
    for version in shipped("touchpoint"):  # the current one (touchpoint.avsc) and every older one (history/)
        schema = json.loads((SCHEMAS / version["file"]).read_text())
        status, found = a.lookup("touchpoints-value", {"schema": json.dumps(schema, indent=4)})
        assert status == 200 and (found["id"], found["version"]) == (version["id"], version["version"])
        # no new version
        assert a.register("touchpoints-value", {"schema": json.dumps(schema)}) == (200, {"id": version["id"]})
    assert a.list_versions("touchpoints-value") == (200, [e["version"] for e in shipped("touchpoint")])


def test_compatible_version_registered_once_incompatible_refused_with_the_reason() -> None:
    saved: list[Any] = []
    a = api(saved)
    v2 = body(CASES / "08-touchpoint-v2-enum-and-optional.avsc")
    assert a.compatibility("touchpoints-value", "latest", v2) == (200, {"is_compatible": True})
    status, registered = a.register("touchpoints-value", v2)
    assert status == 200 and registered["id"] == FIRST_API_ID and [e.id for e in saved] == [FIRST_API_ID]
    assert a.register("touchpoints-value", v2) == (200, {"id": FIRST_API_ID}) and len(saved) == 1
    latest = a.get_version("touchpoints-value", "latest")[1]
    assert (latest["id"], latest["version"]) == (FIRST_API_ID, shipped("touchpoint")[-1]["version"] + 1)
    no_default = body(CASES / "08-touchpoint-v2-field-no-default.avsc")
    status, error = a.register("touchpoints-value", no_default)
    assert status == 409 and error["error_code"] == 409 and "table_no" in error["message"]
    verdict = a.compatibility("touchpoints-value", "latest", no_default, verbose=True)[1]
    assert verdict["is_compatible"] is False and verdict["messages"]


def test_bad_requests_get_confluents_errors() -> None:
    a = api()
    assert a.register("touchpoints-value", {"schema": "{not json"})[1]["error_code"] == 42201
    assert a.register("touchpoints-value", {"schema": '{"type": "record"}'})[1]["error_code"] == 42201
    assert a.register("touchpoints-value", {"schema": '"string"', "schemaType": "PROTOBUF"})[1]["error_code"] == 42201
    assert a.register("touchpoints-value", None)[1]["error_code"] == 42201
    assert a.lookup("touchpoints-value", {"schema": '"string"'}) == (404, {"error_code": 40403,
                                                                          "message": "Schema not found"})


def test_an_id_resolved_through_a_registry_is_read_and_never_becomes_ours() -> None:
    served = api()
    served.register("touchpoints-value", body(CASES / "08-touchpoint-v2-enum-and-optional.avsc"))
    ours = load_registry()
    asked: list[int] = []

    def resolver(schema_id: int) -> tuple[str, int, dict[str, Any]] | None:
        asked.append(schema_id)
        status, found = served.schema_by_id(schema_id)
        version = served.versions_of_id(schema_id)[1][0]["version"] if status == 200 else 0
        return ("touchpoint", version, json.loads(found["schema"])) if status == 200 else None

    ours.resolver = resolver
    record = {"event_id": "e", "journey_id": "j", "customer_id": None, "type": "TABLE_CLEANED", "stage": "during",
              "channel": "pos", "occurred_at": 1, "store_id": None, "staff_id": None, "request_id": None,
              "promised_within_s": None, "incident_id": None, "attrs": {}, "source": None, "device_sent_at": 5}
    data = encode_with(FIRST_API_ID, record, served.registry)
    read = decode(data, "touchpoint", ours)
    assert read["type"] == "UNKNOWN" and "device_sent_at" not in read  # Avro resolution with our reader
    decode(data, "touchpoint", ours)
    assert asked == [FIRST_API_ID]  # cached
    assert ours.latest("touchpoint").id == shipped("touchpoint")[-1]["id"]  # what we write and read with stays ours
    assert ours.by_id(FIRST_API_ID).version == shipped("touchpoint")[-1]["version"] + 1


def test_renumber_takes_an_external_registrys_ids() -> None:
    registry = load_registry()
    touchpoint, incident = shipped("touchpoint")[-1]["id"], shipped("incident")[0]["id"]
    theirs = {touchpoint: FIRST_API_ID + 100, incident: FIRST_API_ID + 101}
    registry.renumber(theirs)
    assert registry.latest("touchpoint").id == theirs[touchpoint]
    assert registry.by_id(theirs[incident]).subject == "incident"
    assert touchpoint not in registry.ids() and incident not in registry.ids()
    assert len(registry.ids()) == len(load_registry().ids())  # the others keep theirs
