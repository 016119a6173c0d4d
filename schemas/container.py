"""Avro Object Container Files assembled from datums that are already encoded.

A container is a header (magic, the writer schema as metadata, a 16-byte sync marker) and
blocks of (object count, byte size, concatenated datums, sync marker). A Kafka message in
Confluent framing carries exactly such a datum after its 5-byte prefix, so a container can be
built by concatenating message bodies, without decoding them (`consumers/touchpoint_rows.py`
lets ClickHouse read it with `FORMAT Avro`).
"""

from __future__ import annotations

import json
from typing import Any

MAGIC = b"Obj\x01"
SYNC_SIZE = 16


def long_bytes(value: int) -> bytes:
    """An Avro long: zig-zag, then a little-endian base-128 varint."""
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _string_bytes(value: bytes) -> bytes:
    return long_bytes(len(value)) + value


def header(schema: dict[str, Any], sync: bytes) -> bytes:
    """A container header for `schema` (uncompressed blocks) with the given sync marker."""
    if len(sync) != SYNC_SIZE:
        raise ValueError(f"an Avro sync marker is {SYNC_SIZE} bytes, got {len(sync)}")
    meta = {b"avro.schema": json.dumps(schema, separators=(",", ":")).encode(), b"avro.codec": b"null"}
    entries = b"".join(_string_bytes(key) + _string_bytes(value) for key, value in meta.items())
    return MAGIC + long_bytes(len(meta)) + entries + long_bytes(0) + sync


def block(count: int, datums: bytes, sync: bytes) -> bytes:
    """One data block of `count` concatenated datums."""
    return long_bytes(count) + long_bytes(len(datums)) + datums + sync
