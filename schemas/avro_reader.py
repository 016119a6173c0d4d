"""A compiled Avro binary reader for the schema shapes our subjects use; fastavro stays the codec.

Why: fastavro's `schemaless_reader` on a BytesIO spent ~12 µs per touchpoint in the worker (a
fifth of its CPU on the detect path, BENCHMARKS.md): it reads every value through the file
object's `read`. `compile_reader` turns a parsed schema into a reader decided once -- a record
as one generated function, other shapes as closures -- reading straight from the message's bytes
by index (a touchpoint in ~4.5 µs instead of ~9.7, measured in-process).

The mirror of `schemas.avro_writer`: it covers records, enums, arrays, maps, unions of null with
one other type, and the primitives boolean, int, long, double and string, read with the writer's
own schema (no schema resolution). `compile_reader` returns None for any other schema. A reader
raises on anything out of the ordinary -- a truncated body, a negative length or block count, an
enum or union index out of range, a varint beyond 64 bits, an int out of range, text that is
not UTF-8 -- and the codec then reads that message with fastavro, so what fastavro would read,
refuse or say about it stays exactly as it was (tested against fastavro, fuzzed).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from schemas.avro_shapes import Builders, build, nullable

Read = Callable[[bytes, int], tuple[Any, int]]

_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1
_DOUBLE = struct.Struct("<d")
_MAX_VARINT = 10  # bytes: 64 bits; longer ones (and bits beyond 64) are fastavro's to decide


class Unusual(ValueError):
    """Something the compiled reader leaves to fastavro."""


def _read_long(data: bytes, pos: int) -> tuple[int, int]:
    b = data[pos]
    if b < 0x80:  # one byte: the usual length, count, index or small number
        return (b >> 1) ^ -(b & 1), pos + 1
    n, shift, end = b & 0x7F, 7, pos + _MAX_VARINT
    pos += 1
    while True:
        if pos >= end:
            raise Unusual("varint too long")
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            if n >> 64:
                raise Unusual("varint beyond 64 bits")
            return (n >> 1) ^ -(n & 1), pos
        shift += 7


def _read_int(data: bytes, pos: int) -> tuple[int, int]:
    value, pos = _read_long(data, pos)
    if not _INT_MIN <= value <= _INT_MAX:
        raise Unusual("int out of range")
    return value, pos


def _read_string(data: bytes, pos: int) -> tuple[str, int]:
    b = data[pos]
    if b < 0x80:
        size, pos = b >> 1, pos + 1
        if b & 1:
            raise Unusual("negative length")
    else:
        size, pos = _read_long(data, pos)
        if size < 0:
            raise Unusual("negative length")
    end = pos + size
    if end > len(data):
        raise Unusual("truncated")
    return data[pos:end].decode(), end  # UnicodeDecodeError: fastavro decides


def _read_boolean(data: bytes, pos: int) -> tuple[bool, int]:
    b = data[pos]
    if b > 1:
        raise Unusual("not a boolean byte")
    return b == 1, pos + 1


def _read_double(data: bytes, pos: int) -> tuple[float, int]:
    return _DOUBLE.unpack_from(data, pos)[0], pos + 8  # struct.error when truncated


_PRIMITIVES: dict[str, Read] = {
    "string": _read_string, "int": _read_int, "long": _read_long,
    "boolean": _read_boolean, "double": _read_double,
}


def _union(schema: list[Any]) -> Read | None:
    """Only [null, X] or [X, null]: the index is one byte, 0 or 2."""
    union = nullable(schema)
    other = None if union is None else _compile(union[1])
    if union is None or other is None:
        return None
    null_index = union[0]
    null_tag, other_tag = null_index * 2, (1 - null_index) * 2  # zigzag

    def read(data: bytes, pos: int) -> tuple[Any, int]:
        b = data[pos]
        if b == null_tag:
            return None, pos + 1
        if b != other_tag:
            raise Unusual("union index out of range")
        return other(data, pos + 1)
    return read


def _enum(schema: dict[str, Any]) -> Read:
    symbols = list(schema["symbols"])

    def read(data: bytes, pos: int) -> tuple[Any, int]:
        b = data[pos]
        if b >= 0x80 or b & 1:  # 64 symbols or more, or negative: fastavro decides
            raise Unusual("enum index")
        return symbols[b >> 1], pos + 1  # IndexError beyond the symbols
    return read


def _blocks(item: Callable[[bytes, int, Any], int]) -> Callable[[bytes, int, Any], int]:
    """Avro's blocks of an array or map: positive counts, then a zero (a negative count, which
    carries a byte size, is unusual)."""

    def read(data: bytes, pos: int, into: Any) -> int:
        while True:
            count, pos = _read_long(data, pos)
            if count == 0:
                return pos
            if count < 0:
                raise Unusual("negative block count")
            for _ in range(count):
                pos = item(data, pos, into)
    return read


def _array(schema: dict[str, Any]) -> Read | None:
    element = _compile(schema["items"])
    if element is None:
        return None

    def item(data: bytes, pos: int, into: list[Any]) -> int:
        value, pos = element(data, pos)
        into.append(value)
        return pos
    blocks = _blocks(item)

    def read(data: bytes, pos: int) -> tuple[Any, int]:
        out: list[Any] = []
        return out, blocks(data, pos, out)
    return read


def _map(schema: dict[str, Any]) -> Read | None:
    element = _compile(schema["values"])
    if element is None:
        return None

    def item(data: bytes, pos: int, into: dict[str, Any]) -> int:
        key, pos = _read_string(data, pos)
        into[key], pos = element(data, pos)
        return pos
    blocks = _blocks(item)

    def read(data: bytes, pos: int) -> tuple[Any, int]:
        if data[pos] == 0:  # empty: the usual attrs
            return {}, pos + 1
        out: dict[str, Any] = {}
        return out, blocks(data, pos, out)
    return read


# A record's reader is generated as one function, its common fields read inline (strings, the
# null branch of a union, enums, an empty map): per field, a closure call and a tuple cost as much
# as the reading itself (a touchpoint: ~6.5 µs with one closure per field, ~4.5 µs generated,
# fastavro ~9.7; measured in-process).
_STRING = """\
{i}b = data[pos{at}]
{i}if b < 0x80 and not b & 1:
{i}    end = pos{at} + 1 + (b >> 1)
{i}    {var} = data[pos{at} + 1:end].decode()
{i}    pos = end
{i}else:
{i}    {var}, pos = read_string(data, pos{at})
"""
_NULLABLE = """\
    b = data[pos]
    if b == {null_tag}:
        {var} = None
        pos += 1
    elif b == {other_tag}:
{value}\
    else:
        raise Unusual("union index out of range")
"""
_EMPTY_MAP = """\\
    if data[pos] == 0:
        {var} = {{}}
        pos += 1
    else:
        {var}, pos = read_{n}(data, pos)
"""
_ENUM = """\
    b = data[pos]
    if b >= 0x80 or b & 1:
        raise Unusual("enum index")
    {var} = symbols_{n}[b >> 1]
    pos += 1
"""


def _field_source(n: int, schema: Any, namespace: dict[str, Any]) -> str | None:
    """Source reading field `n` into `v_n` (and moving `pos`), or None when not covered."""
    var = f"v_{n}"
    if schema == "string":
        return _STRING.format(i="    ", at="", var=var)
    union = nullable(schema) if isinstance(schema, list) else None
    if union is not None:
        null_index, other = union
        if other == "string":
            value = _STRING.format(i="        ", at=" + 1", var=var)
        else:
            read_other = _compile(other)
            if read_other is None:
                return None
            namespace[f"read_{n}"] = read_other
            value = f"        {var}, pos = read_{n}(data, pos + 1)\n"
        return _NULLABLE.format(var=var, null_tag=null_index * 2, other_tag=(1 - null_index) * 2, value=value)
    if isinstance(schema, dict) and schema.get("type") == "enum":
        namespace[f"symbols_{n}"] = list(schema["symbols"])
        return _ENUM.format(var=var, n=n)
    if isinstance(schema, dict) and schema.get("type") == "map":
        read_map = _compile(schema)
        if read_map is None:
            return None
        namespace[f"read_{n}"] = read_map
        return _EMPTY_MAP.format(var=var, n=n)
    read_field = _compile(schema)
    if read_field is None:
        return None
    namespace[f"read_{n}"] = read_field
    return f"    {var}, pos = read_{n}(data, pos)\n"


def _record(schema: dict[str, Any]) -> Read | None:
    namespace: dict[str, Any] = {"read_string": _read_string, "Unusual": Unusual}
    body, items = [], []
    for n, field in enumerate(schema["fields"]):
        source = _field_source(n, field["type"], namespace)
        if source is None:
            return None
        body.append(source)
        items.append(f"{field['name']!r}: v_{n}")
    source = "def read(data, pos):\n" + "".join(body) + f"    return {{{', '.join(items)}}}, pos\n"
    exec(compile(source, f"<avro reader {schema.get('name', 'record')}>", "exec"), namespace)  # noqa: S102 - our own source
    return namespace["read"]  # type: ignore[no-any-return]


def _compile(schema: Any) -> Read | None:
    return build(schema, _BUILDERS)


_BUILDERS: Builders[Read] = Builders(_union, _record, _enum, _array, _map, _PRIMITIVES)


def compile_reader(schema: Any) -> Callable[[bytes, int], Any] | None:
    """A reader of one datum of `schema` (fastavro-parsed, logical types stripped) from a message's
    bytes at an offset, which must end exactly at the end of the bytes; None when the schema uses
    a shape not covered here. The reader raises for anything it leaves to fastavro."""
    read = _compile(schema)
    if read is None:
        return None

    def read_all(data: bytes, pos: int) -> Any:
        value, end = read(data, pos)
        if end != len(data):
            raise Unusual("bytes left over")
        return value
    return read_all
