"""The compiled Avro writer against fastavro: the same bytes, or fastavro's own answer."""

from __future__ import annotations

from io import BytesIO
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.avro_writer import compile_writer
from schemas.codec import encode_with, frame_prefix
from schemas.registry import get_registry

REGISTERED = [(s.subject, s.id) for subject in get_registry().subjects() for s in get_registry().versions(subject)]


def values(schema: Any) -> st.SearchStrategy[Any]:
    """Valid data for `schema` (raw, as registered)."""
    if isinstance(schema, list):
        return st.one_of([values(member) for member in schema])
    kind = schema if isinstance(schema, str) else schema["type"]
    if kind == "null":
        return st.none()
    if kind == "string":
        return st.text(max_size=30) | st.sampled_from(["x" * 5000, "é한😀"])
    if kind == "int":
        return st.integers(-(1 << 31), (1 << 31) - 1) | st.integers(-5000, 5000)
    if kind == "long":
        return st.integers(-(1 << 63), (1 << 63) - 1) | st.integers(-5000, 5000)
    if kind == "boolean":
        return st.booleans()
    if kind == "double":
        return st.floats()
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "array":
        return st.lists(values(schema["items"]), max_size=4)
    if kind == "map":
        return st.dictionaries(st.text(max_size=8), values(schema["values"]), max_size=4)
    return st.fixed_dictionaries({f["name"]: values(f["type"]) for f in schema["fields"]})


WRONG = st.sampled_from([None, "\ud800", 1, True, 1.5, 1 << 40, 1 << 70, -(1 << 70), "NOT_A_SYMBOL", [1], {"k": 1},
                         b"bytes", ("string", "tuple notation")])


def fastavro_only(schema_id: int, record: Any) -> bytes:
    """What the codec wrote before the compiled writer: fastavro alone."""
    out = BytesIO()
    out.write(frame_prefix(schema_id))
    schemaless_writer(out, get_registry().by_id(schema_id).parsed, record)
    return out.getvalue()


def outcome(write: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "bytes", write(*args)
    except Exception as exc:
        return "error", type(exc).__name__


def test_every_registered_schema_is_compiled() -> None:
    assert all(get_registry().by_id(schema_id).writer is not None for _, schema_id in REGISTERED)


@pytest.mark.parametrize(("subject", "schema_id"), REGISTERED)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_same_bytes_or_same_error_as_fastavro(subject: str, schema_id: int, data: st.DataObject) -> None:
    schema = get_registry().by_id(schema_id).raw
    record = data.draw(values(schema))
    assert outcome(encode_with, schema_id, record) == ("bytes", fastavro_only(schema_id, record))
    name = data.draw(st.sampled_from([f["name"] for f in schema["fields"]]))
    record[name] = data.draw(WRONG)  # one field wrong, or dropped (fastavro fills a default)
    if data.draw(st.booleans()):
        del record[name]
    assert outcome(encode_with, schema_id, record) == outcome(fastavro_only, schema_id, record)


@pytest.mark.parametrize("schema", [
    {"type": "fixed", "name": "F", "size": 4}, "bytes", "float",
    {"type": "record", "name": "R", "fields": [{"name": "u", "type": ["null", "string", "long"]}]},
])
def test_shapes_not_covered_are_left_to_fastavro(schema: Any) -> None:
    assert compile_writer(parse_schema(schema)) is None
