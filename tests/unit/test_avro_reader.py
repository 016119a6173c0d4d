"""The compiled Avro reader against fastavro: the same value, or it leaves the message to fastavro."""

from __future__ import annotations

from io import BytesIO
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.avro_reader import compile_reader
from schemas.codec import decode_many, encode_with, frame_prefix
from schemas.registry import get_registry
from tests.unit.test_avro_writer import REGISTERED, values

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def fastavro_read(schema_id: int, data: bytes) -> tuple[str, Any]:
    """What the codec read before the compiled reader: fastavro alone, every byte consumed."""
    body = BytesIO(data)
    body.seek(5)
    try:
        value = schemaless_reader(body, get_registry().by_id(schema_id).parsed, None)
    except Exception as exc:
        return "error", type(exc).__name__
    return ("value", repr(value)) if body.tell() == len(data) else ("error", "left over")


def compiled_read(schema_id: int, data: bytes) -> tuple[str, Any]:
    try:
        return "value", repr(get_registry().by_id(schema_id).reader(data, 5))  # repr: key order, types, NaN
    except Exception as exc:
        return "error", type(exc).__name__


@st.composite
def damaged(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` cut short, with a byte changed, inserted or appended, or its body replaced."""
    body = bytearray(data[5:])
    how = draw(st.sampled_from(["cut", "change", "insert", "append", "random"]))
    at = draw(st.integers(0, max(0, len(body) - 1)))
    if how == "cut":
        del body[at:]
    elif how == "change" and body:
        body[at] = draw(st.integers(0, 255))
    elif how == "insert":
        body.insert(at, draw(st.integers(0, 255)))
    elif how == "append":
        body += draw(st.binary(min_size=1, max_size=8))
    else:
        body = bytearray(draw(st.binary(max_size=80)))
    return data[:5] + bytes(body)


def test_every_registered_schema_is_compiled() -> None:
    assert all(get_registry().by_id(schema_id).reader is not None for _, schema_id in REGISTERED)


@pytest.mark.parametrize(("subject", "schema_id"), REGISTERED)
@FUZZ
@given(data=st.data())
def test_same_value_as_fastavro(subject: str, schema_id: int, data: st.DataObject) -> None:
    encoded = encode_with(schema_id, data.draw(values(get_registry().by_id(schema_id).raw)))
    assert compiled_read(schema_id, encoded) == fastavro_read(schema_id, encoded)


@pytest.mark.parametrize(("subject", "schema_id"), REGISTERED)
@FUZZ
@given(data=st.data())
def test_damaged_bytes_read_as_fastavro_reads_them_or_left_to_it(subject: str, schema_id: int,
                                                                 data: st.DataObject) -> None:
    """Whatever the compiled reader reads, fastavro reads the same; everything else is fastavro's
    to read or refuse (the codec falls back to it)."""
    encoded = encode_with(schema_id, data.draw(values(get_registry().by_id(schema_id).raw)))
    broken = data.draw(damaged(encoded))
    compiled = compiled_read(schema_id, broken)
    if compiled[0] == "value":
        assert compiled == fastavro_read(schema_id, broken)


def test_a_message_the_reader_leaves_gets_fastavros_reason() -> None:
    """The codec's answers for bad bodies are fastavro's, as before the compiled reader."""
    schema_id = get_registry().latest("touchpoint").id
    prefix = frame_prefix(schema_id)
    good = encode_with(schema_id, {
        "event_id": "e", "journey_id": "j", "customer_id": None, "type": "VISIT", "stage": "before",
        "channel": "pos", "occurred_at": 1795514400000, "store_id": None, "staff_id": None, "request_id": None,
        "promised_within_s": None, "incident_id": None, "attrs": {}, "source": None, "sent_at": None,
        "received_at": None})
    not_utf8 = prefix + b"\x02\xff\xfe"  # an event_id of two bytes that are not UTF-8
    records, failures = decode_many([good, good[:-3], good + b"\x00", not_utf8], "touchpoint")
    assert len(records) == 1 and records[0]["event_id"] == "e"
    assert [f.index for f in failures] == [1, 2, 3]
    assert failures[0].reason == f"truncated Avro body ({len(good) - 8} bytes) for schema id {schema_id}"
    assert failures[1].reason == f"corrupt Avro body for schema id {schema_id}: 1 bytes left over"
    assert failures[2].reason.startswith(f"corrupt Avro body for schema id {schema_id}: UnicodeDecodeError")


@pytest.mark.parametrize("schema", [
    {"type": "fixed", "name": "F", "size": 4}, "bytes", "float",
    {"type": "record", "name": "R", "fields": [{"name": "u", "type": ["null", "string", "long"]}]},
])
def test_shapes_not_covered_are_left_to_fastavro(schema: Any) -> None:
    assert compile_reader(parse_schema(schema)) is None
