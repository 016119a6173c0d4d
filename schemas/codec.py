"""Avro encode/decode in the Confluent wire format: magic byte 0, 4-byte schema id, Avro body.

Decoding resolves the message's writer schema (by id) against the reader's version of the
subject, so older and newer compatible writers are read. Timestamps are int epoch ms.
Batch decoding never raises: failures come back as data with the original bytes. A message of
the reader's own version is read by its compiled reader (`schemas.avro_reader`, ~2x faster);
whatever that reader leaves (anything out of the ordinary) is read, or refused, by fastavro.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from fastavro import schemaless_reader, schemaless_writer

from schemas.registry import RegisteredSchema, Registry, SchemaRegistryError, get_registry

MAGIC = 0
_HEADER = struct.Struct(">bI")


class DecodeError(ValueError):
    """The bytes are not a readable message of the expected subject."""


@dataclass(frozen=True)
class DecodeFailure:
    """One message that could not be decoded: its position, bytes and why."""

    index: int
    value: bytes
    reason: str


def encode(subject: str, record: dict[str, Any], registry: Registry | None = None) -> bytes:
    """Encode `record` with the latest version of `subject`."""
    registry = registry or get_registry()
    return encode_with(registry.latest(subject).id, record, registry)


def frame_prefix(schema_id: int) -> bytes:
    """The Confluent wire-format prefix of a message written with `schema_id`: magic byte + id."""
    return _HEADER.pack(MAGIC, schema_id)


def encode_with(schema_id: int, record: dict[str, Any], registry: Registry | None = None) -> bytes:
    """Encode with one specific registered version (tests of evolution, old producers)."""
    schema = (registry or get_registry()).by_id(schema_id)
    if schema.writer is not None:
        parts: list[bytes] | None = [frame_prefix(schema.id)]
        try:
            schema.writer(record, parts)
        except Exception:  # a value the compiled writer does not expect: fastavro writes it or says why not
            parts = None
        if parts is not None:
            return b"".join(parts)
    out = BytesIO()
    out.write(frame_prefix(schema.id))
    schemaless_writer(out, schema.parsed, record)
    return out.getvalue()


def decode(
    data: bytes, subject: str, registry: Registry | None = None, reader: RegisteredSchema | None = None
) -> dict[str, Any]:
    """Decode one message of `subject` with `reader` (default: the latest version).

    Raises `DecodeError` with the reason.
    """
    registry = registry or get_registry()
    reader = reader or registry.latest(subject)
    return _decode_one(data, subject, reader.id, reader.parsed, registry)


def _decode_one(data: bytes, subject: str, reader_id: int, reader_schema: Any, registry: Registry) -> dict[str, Any]:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"value is {type(data).__name__}, not bytes")
    if len(data) < 5:
        raise DecodeError(f"not Avro wire format: {len(data)} bytes, shorter than the 5-byte header")
    magic, schema_id = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise DecodeError(f"not Avro wire format: magic byte 0x{data[0]:02x}, expected 0x00")
    try:
        writer = registry.by_id(schema_id)
    except SchemaRegistryError:
        raise DecodeError(f"unknown schema id {schema_id}") from None
    if writer.subject != subject:
        raise DecodeError(f"schema id {schema_id} belongs to subject '{writer.subject}', not '{subject}'")
    if schema_id == reader_id and writer.reader is not None and type(data) is bytes:
        record = _compiled(writer, data)
        if record is not None:
            return record
    body = BytesIO(data)
    body.seek(5)
    try:
        if schema_id == reader_id:
            record = schemaless_reader(body, writer.parsed, None)
        else:
            record = schemaless_reader(body, writer.parsed, reader_schema)
    except (EOFError, StopIteration):
        raise DecodeError(f"truncated Avro body ({len(data) - 5} bytes) for schema id {schema_id}") from None
    except Exception as exc:  # fastavro raises many types on corrupt input
        raise DecodeError(f"corrupt Avro body for schema id {schema_id}: {type(exc).__name__}: {exc}") from None
    if body.tell() != len(data):
        raise DecodeError(
            f"corrupt Avro body for schema id {schema_id}: {len(data) - body.tell()} bytes left over"
        )
    return record  # type: ignore[return-value]


def _compiled(schema: RegisteredSchema, data: bytes) -> dict[str, Any] | None:
    """The message read by `schema`'s compiled reader (`schemas.avro_reader`); None for anything it
    leaves to fastavro, which then reads it or says why not."""
    try:
        return schema.reader(data, 5)  # type: ignore[no-any-return]
    except Exception:
        return None


def decode_many(
    values: list[bytes], subject: str, registry: Registry | None = None
) -> tuple[list[dict[str, Any]], list[DecodeFailure]]:
    """Decode a batch: (records in order, failures). Never raises for bad input."""
    registry = registry or get_registry()
    reader = registry.latest(subject)
    records: list[dict[str, Any]] = []
    failures: list[DecodeFailure] = []
    fast, prefix = reader.reader, frame_prefix(reader.id)
    for index, value in enumerate(values):
        # the usual message: written with the reader's own version, read by the compiled reader
        if fast is not None and type(value) is bytes and value.startswith(prefix):
            record = _compiled(reader, value)
            if record is not None:
                records.append(record)
                continue
        try:
            records.append(_decode_one(value, subject, reader.id, reader.parsed, registry))
        except DecodeError as exc:
            failures.append(DecodeFailure(index, bytes(value) if value is not None else b"", str(exc)))
    return records, failures
