"""Touchpoints into ClickHouse without decoding them in Python: ClickHouse reads the Avro itself.

Why: decoding with fastavro (~10 µs per touchpoint) was the sink's limit, while ClickHouse
parses Avro at 250k+ rows/s. A Confluent-framed message is magic byte + schema id + one Avro
datum, and an Avro container file is a header (the writer schema) plus blocks of concatenated
datums, so the sink builds one container per writer schema id from the raw message bodies and
sends `INSERT ... SELECT ... FROM input('...') FORMAT Avro` (pure functions here; the sink
sends it).

Each datum is wrapped in an envelope record, written by concatenation and never decoded:
`_head` (fixed: partition, offset, little-endian) + the message body + `_tail` (fixed: a
per-process random nonce, then `_head` again). The envelope's writer schema is
[_head] + the message's writer fields + [_tail], so ClickHouse reads a body with exactly the
message's own writer schema, and the SELECT turns `_head` into kafka_partition/kafka_offset.

What keeps this never more lenient than the Python path (`consumers.sink.to_rows`): the
insert is all-or-nothing. The WHERE clause calls `throwIf` unless every row passes checks that
imply the Python path would take it with the same values:
- the tail matches its own head: the reader consumed exactly this message's bytes (a
  truncated or over-long body shifts the tail onto other bytes, and the nonce cannot be forged
  by a producer);
- every union index is one the schema has (see _DECOY), every string is valid UTF-8 (fastavro
  decodes strictly), attrs has no repeated key (a dict keeps the last, a ClickHouse Map all);
- the event contract of `schemas.contract.check_contract` (same limits).
A malformed datum otherwise makes ClickHouse's parser fail. Either way nothing of that insert
is written (ClickHouse forms one insert block of up to ~1M rows before writing; a larger
`JOURNEY_SINK_BATCH_ROWS` could leave a part written, which the replacing keys then absorb),
and the sink decodes that group in Python instead, which skips and counts what is bad. The
fuzz test in tests/integration/test_sink_fast_path.py holds both paths to the same rows.

Only writer versions whose fields this module knows how to check, and that read the same
with or without schema resolution against the latest version, take this path; any other id
(or a message without valid framing) goes through the Python decoder.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Any

from schemas.codec import frame_prefix
from schemas.container import block, header
from schemas.contract import (
    ID_FIELDS,
    MAX_ATTR_KEY_LEN,
    MAX_ATTR_VALUE_LEN,
    MAX_ATTRS,
    MAX_FUTURE_MS,
    MAX_ID_LEN,
    MAX_PROMISE_S,
    MIN_TIME_MS,
)
from schemas.registry import Registry, get_registry

SUBJECT = "touchpoint"
TABLE = "journey.touchpoints"
_HEAD = struct.Struct("<HQq")  # kafka_partition (UInt16), kafka_offset (UInt64), record timestamp ms (-1: none)
_NONCE = os.urandom(8)  # secret per process: a producer cannot write a tail that passes
_SYNC = os.urandom(16)
REFUSED = "touchpoint refused by the Avro fast path"  # throwIf's message

_NULLABLE_STRING = ["null", "string"]
_NULLABLE_TIME = ["null", {"type": "long", "logicalType": "timestamp-millis"}]
_TIMES = ("sent_at", "received_at")
# received_at when the writer left it out (a Kafka producer): the record's timestamp, from _head
_RECORD_TS = "reinterpretAsInt64(substring(_head, 11, 8))"
_RECORD_TIME = f"if({_RECORD_TS} > 0, fromUnixTimestamp64Milli({_RECORD_TS}, 'UTC'), NULL)"
# field -> (Avro writer type it must have, input() type). Fields not listed, or with another
# type, send that writer version to the Python decoder.
_FIELD_TYPES: dict[str, tuple[Any, str]] = {
    "event_id": ("string", "String"),
    "journey_id": ("string", "String"),
    "occurred_at": ({"type": "long", "logicalType": "timestamp-millis"}, "Int64"),
    "promised_within_s": (["null", "int"], "Int32"),
    "attrs": ({"type": "map", "values": "string"}, "Map(String, String)"),
    **{name: (_NULLABLE_STRING, "String") for name in
       ("customer_id", "store_id", "staff_id", "request_id", "incident_id", "source")},
    **{name: (_NULLABLE_TIME, "DateTime64(3)") for name in _TIMES},  # ClickHouse reads the logical type
}
# Why a (null, T) union is declared (null, T, boolean) in the envelope and read as
# Variant(Bool, T): ClickHouse reads any union index but T's into a Nullable as NULL, where
# fastavro refuses it. Read into a Variant, an index outside the union is an error; index 2
# (the boolean, never written by a producer) is refused by the WHERE clause.
_DECOY = "boolean"
_ENUM_FIELDS = ("type", "stage", "channel")  # enum -> String (the symbol)


# schemas.contract.CONTROL_CHARACTERS in re2's syntax: ids are printable text
_CONTROL_RE2 = r"'[\\x00-\\x1f\\x{7f}-\\x{9f}\\x{2028}\\x{2029}]'"


def _string_ok(expr: str, max_len: int | None, is_id: bool = False) -> str:
    check = f"isValidUTF8({expr})"
    if is_id:
        check += f" AND NOT match({expr}, {_CONTROL_RE2})"
    return f"{check} AND lengthUTF8({expr}) <= {max_len}" if max_len is not None else check


def _value(name: str) -> str:
    """The SQL expression of a field's value as the table takes it."""
    if name == "occurred_at":
        return "fromUnixTimestamp64Milli(occurred_at, 'UTC')"
    if _is_union(name):
        return f"variantElement({name}, '{_FIELD_TYPES[name][1]}')"  # NULL for the null branch
    return name


def _is_union(name: str) -> bool:
    return isinstance(_FIELD_TYPES.get(name, ("",))[0], list)


def _input_type(name: str) -> str:
    if name in _ENUM_FIELDS:
        return "String"
    kind = _FIELD_TYPES[name][1]
    return f"Variant(Bool, {kind})" if _is_union(name) else kind


def _field_checks(name: str) -> list[str]:
    """SQL conditions for one field, mirroring `check_contract` (and fastavro's strictness)."""
    checks = [f"variantElement({name}, 'Bool') IS NULL"] if _is_union(name) else []
    value = _value(name)
    if name in ("event_id", "journey_id"):
        checks += [f"{name} != ''", _string_ok(name, MAX_ID_LEN, is_id=True)]
    elif name == "occurred_at":
        checks += [f"occurred_at >= {MIN_TIME_MS}", "occurred_at <= {max_ms}"]
    elif name in _TIMES:
        raw = f"toUnixTimestamp64Milli(variantElement({name}, 'DateTime64(3)'))"
        checks.append(f"({raw} IS NULL OR ({raw} >= {MIN_TIME_MS} AND {raw} <= {{max_ms}}))")
    elif name == "promised_within_s":
        checks.append(f"({value} IS NULL OR {value} BETWEEN 1 AND {MAX_PROMISE_S})")
    elif name == "attrs":
        checks += [f"length(attrs) <= {MAX_ATTRS}", "length(arrayDistinct(mapKeys(attrs))) = length(attrs)",
                   f"arrayAll(k -> {_string_ok('k', MAX_ATTR_KEY_LEN)}, mapKeys(attrs))",
                   f"arrayAll(v -> {_string_ok('v', MAX_ATTR_VALUE_LEN)}, mapValues(attrs))"]
    elif name not in _ENUM_FIELDS:
        limit = MAX_ID_LEN if name in ID_FIELDS else None
        checks.append(f"({value} IS NULL OR ({_string_ok(f'assumeNotNull({value})', limit, name in ID_FIELDS)}))")
    return checks


def _reads_like_latest(writer: dict[str, Any], reader: dict[str, Any]) -> bool:
    """True when ClickHouse reading `writer` data gives what fastavro's resolution to `reader` gives.

    Every writer field is in the reader with the same type; every reader-only field defaults
    to what the table's column defaults to (NULL, or an empty map).
    """
    reader_fields = {f["name"]: f for f in reader["fields"]}
    for field in writer["fields"]:
        theirs = reader_fields.get(field["name"])
        if theirs is None or not _same_reading(field["type"], theirs["type"]):
            return False
    written = {f["name"] for f in writer["fields"]}
    for name, field in reader_fields.items():
        if name in written:
            continue
        if not ("default" in field and (field["default"] is None or field["default"] == {})):
            return False
    return True


def _same_reading(writer: Any, reader: Any) -> bool:
    """Same type, or an enum whose reader knows every writer symbol (resolved by name)."""
    if writer == reader:
        return True
    enums = isinstance(writer, dict) and isinstance(reader, dict) and writer.get("type") == reader.get("type") == "enum"
    return enums and writer.get("name") == reader.get("name") and set(writer["symbols"]) <= set(reader["symbols"])


def _known(field: dict[str, Any]) -> bool:
    name, kind = field["name"], field["type"]
    if name in _ENUM_FIELDS:
        return isinstance(kind, dict) and kind.get("type") == "enum"
    return name in _FIELD_TYPES and _FIELD_TYPES[name][0] == kind


@dataclass(frozen=True)
class FastSchema:
    """How one writer version of the touchpoint subject goes in as Avro."""

    schema_id: int
    header: bytes  # container header of the envelope schema
    sql: str  # the INSERT, with {max_ms} to fill in per batch


def fast_schema(schema_id: int, registry: Registry | None = None) -> FastSchema | None:
    """The fast-path plan for writer `schema_id`, or None when it must be decoded in Python."""
    registry = registry or get_registry()
    writer = registry.by_id(schema_id)
    latest = registry.latest(SUBJECT)
    if writer.subject != SUBJECT or not all(_known(f) for f in writer.raw["fields"]):
        return None
    if not _reads_like_latest(writer.raw, latest.raw):
        return None
    fields = [f["name"] for f in writer.raw["fields"]]
    decoyed = [{**f, "type": [*f["type"], _DECOY]} if _is_union(f["name"]) else f for f in writer.raw["fields"]]
    envelope = {**writer.raw, "name": "TouchpointEnvelope", "namespace": "journey.sink", "fields": [
        {"name": "_head", "type": {"type": "fixed", "name": "Head", "size": _HEAD.size}},
        *decoyed,
        {"name": "_tail", "type": {"type": "fixed", "name": "Tail", "size": len(_NONCE) + _HEAD.size}}]}
    envelope.pop("doc", None)
    structure = ", ".join([f"_head FixedString({_HEAD.size})", *(f"{n} {_input_type(n)}" for n in fields),
                           f"_tail FixedString({len(_NONCE) + _HEAD.size})"])
    columns = [n for n in fields if n != "received_at"] + ["received_at"]
    select = [_value(n) for n in columns[:-1]]
    select.append(f"coalesce({_value('received_at')}, {_RECORD_TIME})" if "received_at" in fields else _RECORD_TIME)
    select += ["reinterpretAsUInt16(substring(_head, 1, 2))", "reinterpretAsUInt64(substring(_head, 3, 8))"]
    checks = [f"_tail = concat(unhex('{_NONCE.hex()}'), _head)"]
    for name in fields:
        checks += _field_checks(name)
    sql = (f"INSERT INTO {TABLE} ({', '.join([*columns, 'kafka_partition', 'kafka_offset'])}) "
           f"SELECT {', '.join(select)} FROM input('{structure}') "
           f"WHERE throwIf(NOT ({' AND '.join(checks)}), '{REFUSED}') = 0 FORMAT Avro")
    return FastSchema(schema_id, header(envelope, _SYNC), sql)


@dataclass
class FastGroup:
    """Messages of one writer version, to insert as one container."""

    schema: FastSchema
    messages: list[Any]


def fast_prefixes(registry: Registry | None = None) -> dict[bytes, FastSchema]:
    """Confluent prefix (magic byte + schema id) -> plan, for every version that can go fast."""
    registry = registry or get_registry()
    plans = {}
    for version in registry.versions(SUBJECT):
        plan = fast_schema(version.id, registry)
        if plan is not None:
            plans[frame_prefix(version.id)] = plan
    return plans


def split(messages: list[Any], plans: dict[bytes, FastSchema], topic: str) -> tuple[list[FastGroup], list[Any]]:
    """(fast-path groups of `topic`'s messages, the rest: other topics, versions, bad framing)."""
    groups: dict[bytes, FastGroup] = {}
    rest = []
    for message in messages:
        value = message.value
        if message.topic != topic:
            rest.append(message)
            continue
        prefix = value[:5] if isinstance(value, bytes) else None
        plan = plans.get(prefix) if prefix is not None else None
        if plan is None:
            rest.append(message)
            continue
        group = groups.get(prefix)  # type: ignore[arg-type]
        if group is None:
            group = groups[prefix] = FastGroup(plan, [])  # type: ignore[index]
        group.messages.append(message)
    return list(groups.values()), rest


def build_insert(group: FastGroup, now_ms: int) -> tuple[str, bytes]:
    """(SQL, Avro container body) inserting `group`; struct.error if a partition exceeds UInt16."""
    parts: list[Any] = []
    pack, nonce = _HEAD.pack, _NONCE
    for message in group.messages:
        stamp = getattr(message, "timestamp", None)
        head = pack(message.partition, message.offset, stamp if stamp is not None and stamp > 0 else -1)
        parts += (head, message.value[5:], nonce, head)  # slices: joining memoryviews is 4x slower
    body = group.schema.header + block(len(group.messages), b"".join(parts), _SYNC)
    return group.schema.sql.replace("{max_ms}", str(now_ms + MAX_FUTURE_MS)), body
