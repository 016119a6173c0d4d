"""The local schema registry: permanent ids for every version of every subject.

`registry.json` lists (id, subject, version, file). Messages carry the id (Confluent framing),
so a reader can resolve any registered writer version against its own reader version.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

from fastavro import parse_schema

from schemas.avro_reader import compile_reader
from schemas.avro_writer import compile_writer

SCHEMA_DIR = Path(__file__).parent


def strip_logical_types(schema: Any) -> Any:
    """A copy of `schema` without logicalType annotations.

    The codec decodes with these copies so timestamps stay plain int epoch milliseconds: the
    rest of the system computes with ints, and building datetimes per field is slow. The
    bytes on the wire are identical (timestamp-millis is a long).
    """
    if isinstance(schema, dict):
        return {k: strip_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [strip_logical_types(s) for s in schema]
    return schema


@dataclass(frozen=True)
class RegisteredSchema:
    """One registered version of a subject."""

    id: int
    subject: str
    version: int
    raw: dict[str, Any]  # as written in the .avsc file (with logical types)
    parsed: Any  # fastavro-parsed, logical types stripped: what the codec uses
    writer: Any = field(default=None, compare=False, repr=False)  # compile_writer(parsed), or None
    reader: Any = field(default=None, compare=False, repr=False)  # compile_reader(parsed), or None


class SchemaRegistryError(LookupError):
    """Unknown subject or schema id."""


# An id not registered here -> (subject, version, schema) from a schema registry, or None (unknown there too)
Resolver = Callable[[int], "tuple[str, int, dict[str, Any]] | None"]


class Registry:
    """Schemas by id and by subject; extra versions can be registered at run time (tests).

    With a resolver (a schema registry: infra/base/schema_registry.py), an unknown id is looked up
    there once and kept as a writer schema only: messages written with it are read through Avro
    schema resolution, while our reader and writer versions (`latest`) stay the ones we ship.
    """

    def __init__(self) -> None:
        self._by_id: dict[int, RegisteredSchema] = {}
        self._by_subject: dict[str, list[RegisteredSchema]] = {}
        self.resolver: Resolver | None = None

    @staticmethod
    def parse(raw: dict[str, Any]) -> Any:
        """fastavro's parsed form of a schema, logical types stripped (what the codec uses); raises on invalid."""
        return parse_schema(strip_logical_types(copy.deepcopy(raw)))

    def ids(self) -> list[int]:
        return list(self._by_id)

    def register(self, schema_id: int, subject: str, version: int, raw: dict[str, Any]) -> RegisteredSchema:
        """Add a version; the id must be new, the version higher than the subject's latest."""
        if schema_id in self._by_id:
            raise ValueError(f"schema id {schema_id} is already registered")
        parsed = self.parse(raw)
        entry = RegisteredSchema(schema_id, subject, version, raw, parsed, compile_writer(parsed),
                                 compile_reader(parsed))
        self._by_id[schema_id] = entry
        versions = self._by_subject.setdefault(subject, [])
        versions.append(entry)
        versions.sort(key=lambda e: e.version)
        return entry

    def by_id(self, schema_id: int) -> RegisteredSchema:
        entry = self._by_id.get(schema_id)
        if entry is not None:
            return entry
        found = self.resolver(schema_id) if self.resolver is not None else None
        if found is None:
            raise SchemaRegistryError(f"unknown schema id {schema_id}")
        subject, version, raw = found
        parsed = self.parse(raw)
        entry = self._by_id[schema_id] = RegisteredSchema(schema_id, subject, version, raw, parsed)
        return entry

    def versions(self, subject: str) -> list[RegisteredSchema]:
        try:
            return list(self._by_subject[subject])
        except KeyError:
            known = ", ".join(sorted(self._by_subject))
            raise SchemaRegistryError(f"unknown subject {subject!r} (known: {known})") from None

    def latest(self, subject: str) -> RegisteredSchema:
        versions = self._by_subject.get(subject)
        return versions[-1] if versions else self.versions(subject)[-1]  # per record: no list copy

    def subjects(self) -> list[str]:
        return sorted(self._by_subject)

    def renumber(self, ids: dict[int, int]) -> None:
        """Give registered versions other ids (`old -> new`): those an external schema registry assigned."""
        new = {old: replace(e, id=ids.get(old, old)) for old, e in self._by_id.items()}
        self._by_id = {e.id: e for e in new.values()}
        self._by_subject = {s: [new[e.id] for e in versions] for s, versions in self._by_subject.items()}

    def unregister(self, schema_id: int) -> None:
        """Remove a version (tests that register temporary versions clean up with this)."""
        entry = self._by_id.pop(schema_id)
        self._by_subject[entry.subject].remove(entry)


def load_registry(directory: Path = SCHEMA_DIR) -> Registry:
    """The registry described by `directory/registry.json`."""
    registry = Registry()
    index = json.loads((directory / "registry.json").read_text())
    for item in index["schemas"]:
        raw = json.loads((directory / item["file"]).read_text())
        registry.register(int(item["id"]), item["subject"], int(item["version"]), raw)
    return registry


@cache
def get_registry() -> Registry:
    """The process-wide registry of the checked-in schemas."""
    return load_registry()
