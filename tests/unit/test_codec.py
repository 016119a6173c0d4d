"""Avro codec: Confluent framing, every event type, evolution both ways, failures as data."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codec import DecodeError, decode, decode_many, encode, encode_with
from schemas.event_types import EVENT_TYPES, STAGE_OF_TYPE
from schemas.registry import SCHEMA_DIR, get_registry


def make_event(type_: str = "ITEM_REQUESTED", **extra: object) -> dict[str, object]:
    event: dict[str, object] = {
        "event_id": "e-1", "journey_id": "j-1", "customer_id": "c-1", "type": type_,
        "stage": STAGE_OF_TYPE[type_], "channel": "pos", "occurred_at": 1763899200000,
        "store_id": "seoul-01", "staff_id": None, "request_id": "r-3", "promised_within_s": 600,
        "incident_id": None, "attrs": {"item": "spoon"}, "source": None, "sent_at": None, "received_at": None,
    }
    event.update(extra)
    return event


def test_wire_format_is_confluent_framing() -> None:
    data = encode("touchpoint", make_event())
    assert data[0] == 0
    assert int.from_bytes(data[1:5], "big") == get_registry().latest("touchpoint").id


@pytest.mark.parametrize("type_", EVENT_TYPES)
def test_every_event_type_round_trips(type_: str) -> None:
    event = make_event(type_)
    assert decode(encode("touchpoint", event), "touchpoint") == event


def test_timestamps_decode_as_int_epoch_ms() -> None:
    assert decode(encode("touchpoint", make_event()), "touchpoint")["occurred_at"] == 1763899200000


def test_enum_symbols_match_the_python_constants() -> None:
    schema = json.loads((SCHEMA_DIR / "touchpoint.avsc").read_text())
    symbols = next(f for f in schema["fields"] if f["name"] == "type")["type"]["symbols"]
    assert set(symbols) == set(EVENT_TYPES) | {"UNKNOWN"}


def test_new_writer_old_reader(touchpoint_v2) -> None:
    registry, v1_id, v2_id = touchpoint_v2
    data = encode_with(v2_id, make_event(device="kiosk-3"), registry)
    # A consumer still reading with v1 resolves the v2 writer schema: the new field is dropped.
    event = decode(data, "touchpoint", registry, reader=registry.by_id(v1_id))
    assert "device" not in event and event == make_event()


def test_unknown_enum_symbol_falls_back_to_default(touchpoint_v2) -> None:
    registry, v1_id, v2_id = touchpoint_v2
    data = encode_with(v2_id, make_event(device=None) | {"type": "TABLE_RESET"}, registry)
    assert decode(data, "touchpoint", registry, reader=registry.by_id(v1_id))["type"] == "UNKNOWN"


def test_old_writer_new_reader(touchpoint_v2) -> None:
    registry, v1_id, _ = touchpoint_v2
    data = encode_with(v1_id, make_event(), registry)
    event = decode(data, "touchpoint", registry)
    assert event["device"] is None and event["journey_id"] == "j-1"


def test_decode_many_reports_each_failure_with_bytes_and_reason() -> None:
    good = encode("touchpoint", make_event())
    alert = encode("alert", {
        "alert_id": "a", "incident_id": "i", "kind": "triggered", "level": 0, "severity": "high",
        "rule": "complaint", "store_id": None, "journey_id": "j", "customer_id": None, "at": 1,
        "failed_at": 1, "paged": True, "reason": None, "message": "m", "channels": [],
    })
    values = [good, b'{"json": true}', good[:12], b"\x00\x00\x00\x00\x63abc", alert, good + b"xx"]
    records, failures = decode_many(values, "touchpoint")
    assert records == [make_event()]
    reasons = {f.index: f.reason for f in failures}
    assert "magic byte 0x7b" in reasons[1]
    assert "truncated" in reasons[2]
    assert "unknown schema id 99" in reasons[3]
    assert "subject 'alert'" in reasons[4]
    assert "left over" in reasons[5]
    assert failures[0].value == b'{"json": true}'


def test_decode_raises_decode_error() -> None:
    with pytest.raises(DecodeError, match="magic byte"):
        decode(b"\x01\x00\x00\x00\x01", "touchpoint")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_decode_many_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    records, failures = decode_many([data], "touchpoint")
    assert len(records) + len(failures) == 1


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_framed_garbage_never_escapes_as_another_exception(body: bytes) -> None:
    records, failures = decode_many([b"\x00\x00\x00\x00\x01" + body], "touchpoint")
    assert len(records) + len(failures) == 1
