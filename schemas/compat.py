"""Schema compatibility: can a reader of one version read data written with another?

backward = the new schema reads data written with the old one (upgrade consumers first);
forward  = the old schema reads data written with the new one (upgrade producers first).
The rules are Avro's resolution rules; every verdict is also checked by actually writing a
sample record with one schema and reading it with the other through fastavro.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from schemas.registry import strip_logical_types

_PROMOTIONS = {
    "int": {"int", "long", "float", "double"},
    "long": {"long", "float", "double"},
    "float": {"float", "double"},
    "string": {"string", "bytes"},
    "bytes": {"bytes", "string"},
}


@dataclass
class CompatResult:
    backward: bool
    forward: bool
    problems: list[str] = field(default_factory=list)


def _named(schema: Any, names: dict[str, Any]) -> Any:
    """Resolve a reference to a named type; remember named types as they are defined."""
    if isinstance(schema, str):
        return names.get(schema, names.get(schema.split(".")[-1], schema))
    if isinstance(schema, dict) and schema.get("type") in ("record", "enum", "fixed"):
        names[schema["name"]] = schema
        names[f"{schema.get('namespace', '')}.{schema['name']}".lstrip(".")] = schema
    return schema


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        inner = schema["type"]
        return inner if isinstance(inner, str) and inner in (
            "record", "enum", "array", "map", "fixed") else _kind(inner)
    return str(schema)


def reader_problems(reader: Any, writer: Any, path: str = "", rnames: dict | None = None,
                    wnames: dict | None = None) -> list[str]:
    """Why `reader` cannot read data written with `writer` (empty when it can)."""
    rnames = {} if rnames is None else rnames
    wnames = {} if wnames is None else wnames
    reader, writer = _named(reader, rnames), _named(writer, wnames)
    rk, wk = _kind(reader), _kind(writer)
    where = path or "<root>"
    if wk == "union":
        return [p for branch in writer for p in reader_problems(reader, branch, path, rnames, wnames)]
    if rk == "union":
        attempts = [reader_problems(branch, writer, path, rnames, wnames) for branch in reader]
        return [] if any(not a for a in attempts) else [f"{where}: no branch of the reader's union reads {wk}"]
    if rk in _PROMOTIONS or wk in _PROMOTIONS or rk in ("null", "boolean", "double"):
        if rk == wk or rk in _PROMOTIONS.get(wk, set()):
            return []
        return [f"{where}: type changed from {wk} to {rk}"]
    if rk != wk:
        return [f"{where}: type changed from {wk} to {rk}"]
    if rk == "record":
        return _record_problems(reader, writer, path, rnames, wnames)
    if rk == "enum":
        missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
        if missing and "default" not in reader:
            return [f"{where}: enum symbols {missing} unknown to the reader, which has no default symbol"]
        return []
    if rk == "array":
        return reader_problems(reader["items"], writer["items"], f"{path}[]", rnames, wnames)
    if rk == "map":
        return reader_problems(reader["values"], writer["values"], f"{path}{{}}", rnames, wnames)
    if rk == "fixed" and reader["size"] != writer["size"]:
        return [f"{where}: fixed size changed from {writer['size']} to {reader['size']}"]
    return []


def _record_problems(reader: dict, writer: dict, path: str, rnames: dict, wnames: dict) -> list[str]:
    problems: list[str] = []
    written = {f["name"]: f for f in writer["fields"]}
    for f in writer["fields"]:
        for alias in f.get("aliases", []):
            written.setdefault(alias, f)
    for rf in reader["fields"]:
        candidates = [rf["name"], *rf.get("aliases", [])]
        wf = next((written[n] for n in candidates if n in written), None)
        fpath = f"{path}.{rf['name']}" if path else rf["name"]
        if wf is None:
            if "default" not in rf:
                problems.append(f"{fpath}: field missing on the writer side and the reader has no default")
            continue
        problems.extend(reader_problems(rf["type"], wf["type"], fpath, rnames, wnames))
    return problems


def sample_record(schema: Any, names: dict | None = None) -> Any:
    """A small valid datum for `schema` (used to verify verdicts with fastavro)."""
    names = {} if names is None else names
    schema = _named(schema, names)
    kind = _kind(schema)
    if kind == "union":
        return sample_record(next((b for b in schema if b != "null"), "null"), names)
    if isinstance(schema, dict) and not isinstance(schema["type"], str):
        return sample_record(schema["type"], names)
    simple = {"null": None, "boolean": True, "int": 1, "long": 1, "float": 1.0, "double": 1.0,
              "string": "s", "bytes": b"b"}
    if kind in simple:
        return simple[kind]
    if kind == "record":
        return {f["name"]: sample_record(f["type"], names) for f in schema["fields"]}
    if kind == "enum":
        return schema["symbols"][-1]
    if kind == "array":
        return [sample_record(schema["items"], names)]
    if kind == "map":
        return {"k": sample_record(schema["values"], names)}
    if kind == "fixed":
        return b"\0" * schema["size"]
    raise ValueError(f"unsupported schema kind {kind}")


def _fastavro_reads(reader: Any, writer: Any) -> str | None:
    """None when fastavro reads a sample written with `writer` using `reader`, else the error."""
    try:
        w, r = parse_schema(strip_logical_types(writer)), parse_schema(strip_logical_types(reader))
        buf = BytesIO()
        schemaless_writer(buf, w, sample_record(strip_logical_types(writer)))
        buf.seek(0)
        schemaless_reader(buf, w, r)
        return None
    except Exception as exc:  # fastavro's resolution errors have several types
        return f"{type(exc).__name__}: {exc}"


def check_compatibility(old: Any, new: Any) -> CompatResult:
    """Backward and forward compatibility of `new` against `old`, with the reasons."""
    backward = [f"backward: {p}" for p in reader_problems(new, old)]
    forward = [f"forward: {p}" for p in reader_problems(old, new)]
    if not backward and (err := _fastavro_reads(new, old)):
        backward.append(f"backward: fastavro could not read old data with the new schema: {err}")
    if not forward and (err := _fastavro_reads(old, new)):
        forward.append(f"forward: fastavro could not read new data with the old schema: {err}")
    return CompatResult(backward=not backward, forward=not forward, problems=backward + forward)
