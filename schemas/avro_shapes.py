"""Which schema shapes the compiled Avro reader and writer cover, and which builder each takes.

Both compilers (`schemas.avro_reader`, `schemas.avro_writer`) cover the same shapes: records,
enums, arrays, maps, unions, and the primitives each names; anything else (fixed, bytes, float,
logical types, named references) is left to fastavro.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Builders(Generic[T]):
    """One compiler's builder per shape (each returns None for a schema it does not cover)."""

    union: Callable[[list[Any]], T | None]
    record: Callable[[dict[str, Any]], T | None]
    enum: Callable[[dict[str, Any]], T | None]
    array: Callable[[dict[str, Any]], T | None]
    map: Callable[[dict[str, Any]], T | None]
    primitives: Mapping[str, T]


def build(schema: Any, builders: Builders[T]) -> T | None:
    """`schema` (fastavro-parsed, logical types stripped) compiled by `builders`, or None."""
    if isinstance(schema, list):
        return builders.union(schema)
    if isinstance(schema, str):
        return builders.primitives.get(schema)  # a named reference or another primitive: not covered
    kind = schema.get("type")
    if kind == "record":
        return builders.record(schema)
    if kind == "enum":
        return builders.enum(schema)
    if kind == "array":
        return builders.array(schema)
    if kind == "map":
        return builders.map(schema)
    if kind in builders.primitives and set(schema) <= {"type", "__fastavro_parsed", "__named_schemas"}:
        return builders.primitives[kind]
    return None  # fixed, bytes, float, logical types, ...


def nullable(schema: list[Any]) -> tuple[int, Any] | None:
    """(index of null, the other member) of a union [null, X] or [X, null]; None for any other
    union (the only unions the compilers cover)."""
    if len(schema) != 2 or "null" not in schema:
        return None
    null_index = schema.index("null")
    return null_index, schema[1 - null_index]
