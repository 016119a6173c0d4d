"""`journey import`: a shop's history export (CSV) -> touchpoints, through a column mapping.

The mapping (TOML, see infra/examples/orders_reviews.toml) says which column is the journey,
the customer, the store, and which touchpoints a row holds: each `[[events]]` table names a
type and the column with its time, plus optional request, promise, attributes and a `when`
filter (a combined export with order rows and review rows). Reading is pure: `read_export`
returns the events sorted by event time (an export is grouped by order, the detector wants
event time), the journeys, and the refused rows with their line numbers and reasons.

Event ids are derived from the content (journey, type, time, request), prefixed `import:`:
an order's repeated rows (one per line item) collapse into one event, importing the same
file twice changes nothing, and every incident history raises carries an `import:` trigger
event id, which the notifier records without paging (`is_imported`).
"""

from __future__ import annotations

import csv
import hashlib
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from infra.base.errors import JourneyError
from schemas.contract import ContractError, check_contract
from schemas.event_types import CHANNELS, EVENT_TYPES, STAGE_OF_TYPE

IMPORT_PREFIX = "import:"
SOURCE = "import"
EVENT_KEYS = frozenset({"type", "time", "request", "promised_within_s", "promise_s", "promised_by", "attrs",
                        "constants", "when", "channel", "store"})
TOP_KEYS = frozenset({"columns", "defaults", "events"})
COLUMN_KEYS = frozenset({"journey", "customer", "store", "channel"})
DEFAULT_KEYS = frozenset({"channel", "store", "time_format", "timezone", "journey_prefix", "customer_prefix"})


def is_imported(event_id: str | None) -> bool:
    """True for the id of a touchpoint `journey import` produced (history: recorded, never paged)."""
    return bool(event_id) and event_id.startswith(IMPORT_PREFIX)  # type: ignore[union-attr]


class MappingFileError(JourneyError):
    """The mapping file is unusable; the message says which key and how to fix it."""


@dataclass(frozen=True)
class EventSpec:
    """One kind of touchpoint a row may hold."""

    type: str
    time: str
    request: str | None = None
    promised_within_s: int | None = None
    promise_s: str | None = None  # column holding the promise in seconds
    promised_by: str | None = None  # column holding the promised time
    attrs: dict[str, str] = field(default_factory=dict)  # attr -> column
    constants: dict[str, str] = field(default_factory=dict)  # attr -> fixed value
    when: dict[str, str] = field(default_factory=dict)  # column -> value the row must have
    channel: str | None = None
    store: str | None = None


@dataclass(frozen=True)
class ImportMapping:
    """A parsed mapping file."""

    journey: str
    events: tuple[EventSpec, ...]
    customer: str | None = None
    store_column: str | None = None
    channel_column: str | None = None
    channel: str = "web"
    store: str | None = None
    time_format: str | None = None
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    journey_prefix: str = ""
    customer_prefix: str = ""

    def columns(self) -> set[str]:
        """Every column the mapping reads (checked against the file's header)."""
        used = {self.journey} | {c for c in (self.customer, self.store_column, self.channel_column) if c}
        for spec in self.events:
            used |= {c for c in (spec.time, spec.request, spec.promise_s, spec.promised_by) if c}
            used |= set(spec.attrs.values()) | set(spec.when)
        return used


def _table(raw: Any, where: str, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise MappingFileError(f"{where} must be a table")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise MappingFileError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
    return raw


def _strings(raw: Any, where: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(v, str | int) for v in raw.values()):
        raise MappingFileError(f"{where} must map names to column names (strings)")
    return {str(k): str(v) for k, v in raw.items()}


def load_mapping(path: Path) -> ImportMapping:
    """Read and check a mapping file; MappingFileError (one line) when it is wrong."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MappingFileError(f"--mapping {path}: no such file (see infra/examples/orders_reviews.toml)") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise MappingFileError(f"--mapping {path}: not valid TOML ({exc})") from None
    _table(raw, "the mapping", TOP_KEYS)
    columns = _table(raw.get("columns", {}), "[columns]", COLUMN_KEYS)
    defaults = _table(raw.get("defaults", {}), "[defaults]", DEFAULT_KEYS)
    if not columns.get("journey"):
        raise MappingFileError("[columns] journey is required: the column that identifies a journey (an order id)")
    events = raw.get("events")
    if not isinstance(events, list) or not events:
        raise MappingFileError("at least one [[events]] table is required (type and time column)")
    specs = []
    for n, item in enumerate(events, 1):
        item = _table(item, f"[[events]] #{n}", EVENT_KEYS)
        if item.get("type") not in EVENT_TYPES:
            raise MappingFileError(f"[[events]] #{n}: type {item.get('type')!r} is not a touchpoint type "
                                   f"({', '.join(EVENT_TYPES)})")
        if not isinstance(item.get("time"), str):
            raise MappingFileError(f"[[events]] #{n}: time must name the column with the event's time")
        promise = item.get("promised_within_s")
        if promise is not None and (not isinstance(promise, int) or isinstance(promise, bool) or promise <= 0):
            raise MappingFileError(f"[[events]] #{n}: promised_within_s must be a positive number of seconds")
        channel = item.get("channel")
        if channel is not None and channel not in CHANNELS:
            raise MappingFileError(f"[[events]] #{n}: channel {channel!r} is not one of {', '.join(CHANNELS)}")
        specs.append(EventSpec(item["type"], item["time"], item.get("request"), promise, item.get("promise_s"),
                               item.get("promised_by"), _strings(item.get("attrs"), f"[[events]] #{n} attrs"),
                               _strings(item.get("constants"), f"[[events]] #{n} constants"),
                               _strings(item.get("when"), f"[[events]] #{n} when"), channel, item.get("store")))
    channel = defaults.get("channel", "web")
    if channel not in CHANNELS:
        raise MappingFileError(f"[defaults] channel {channel!r} is not one of {', '.join(CHANNELS)}")
    try:
        zone = ZoneInfo(defaults.get("timezone", "UTC"))
    except (ZoneInfoNotFoundError, ValueError):
        raise MappingFileError(f"[defaults] timezone {defaults.get('timezone')!r} is not a known time zone") from None
    return ImportMapping(columns["journey"], tuple(specs), columns.get("customer"), columns.get("store"),
                         columns.get("channel"), channel, defaults.get("store"), defaults.get("time_format"), zone,
                         defaults.get("journey_prefix", ""), defaults.get("customer_prefix", ""))


@dataclass
class ImportPlan:
    """What an export holds: events sorted by event time, and what was refused."""

    events: list[dict[str, Any]] = field(default_factory=list)
    journeys: int = 0
    rows: int = 0
    duplicates: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)


class RowError(ValueError):
    """A row cannot be imported; the message names the column and the value."""


def _time_ms(text: str, column: str, mapping: ImportMapping) -> int:
    try:
        if mapping.time_format == "epoch":
            return int(round(float(text) * 1000))
        parsed = (datetime.strptime(text, mapping.time_format) if mapping.time_format
                  else datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise RowError(f"column {column}: {text[:60]!r} is not a time"
                       + (f" in the format {mapping.time_format}" if mapping.time_format else " (ISO-8601)")) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=mapping.timezone)
    return int(round(parsed.timestamp() * 1000))


def _event_id(journey: str, type_: str, at: int, request: str | None) -> str:
    digest = hashlib.sha256(f"{journey}|{type_}|{at}|{request or ''}".encode()).hexdigest()[:32]
    return f"{IMPORT_PREFIX}{digest}"


def row_events(row: dict[str, str], mapping: ImportMapping, now_ms: int | None = None) -> list[dict[str, Any]]:
    """The touchpoints one row holds (validated, decoded shape); RowError if it cannot be imported."""
    def cell(column: str) -> str:
        return (row.get(column) or "").strip()

    key = cell(mapping.journey)
    if not key:
        raise RowError(f"column {mapping.journey}: the journey is empty")
    journey = mapping.journey_prefix + key
    customer = cell(mapping.customer) if mapping.customer else ""
    events = []
    for spec in mapping.events:
        if any(cell(col) != value for col, value in spec.when.items()):
            continue
        when = cell(spec.time)
        if not when:
            continue  # this row does not hold that event (a review row has no ship time)
        at = _time_ms(when, spec.time, mapping)
        promise = spec.promised_within_s
        if spec.promise_s and cell(spec.promise_s):
            try:
                promise = int(float(cell(spec.promise_s)))
            except ValueError:
                raise RowError(f"column {spec.promise_s}: {cell(spec.promise_s)[:40]!r} is not seconds") from None
        elif spec.promised_by and cell(spec.promised_by):
            promise = (_time_ms(cell(spec.promised_by), spec.promised_by, mapping) - at) // 1000
        request = cell(spec.request) if spec.request else None
        attrs = {**spec.constants, **{name: cell(col) for name, col in spec.attrs.items() if cell(col)}}
        channel = spec.channel or (cell(mapping.channel_column) if mapping.channel_column else "") or mapping.channel
        if channel not in CHANNELS:
            raise RowError(f"column {mapping.channel_column}: channel {channel[:40]!r} is not one of "
                           f"{', '.join(CHANNELS)}")
        # built in the decoded shape and checked by the contract's own checks (the JSON form's
        # ISO round trip cost half of reading an export)
        event: dict[str, Any] = {
            "event_id": _event_id(journey, spec.type, at, request), "journey_id": journey,
            "customer_id": mapping.customer_prefix + customer if customer else None, "type": spec.type,
            "stage": STAGE_OF_TYPE[spec.type], "channel": channel, "occurred_at": at,
            "store_id": spec.store or (cell(mapping.store_column) if mapping.store_column else "") or mapping.store,
            "staff_id": None, "request_id": request or None, "promised_within_s": promise, "incident_id": None,
            "attrs": attrs, "source": SOURCE,
        }
        try:
            check_contract(event, now_ms)
        except ContractError as exc:
            raise RowError(f"{spec.type} from column {spec.time}: {exc}") from None
        events.append(event)
    return events


def read_export(path: Path, mapping: ImportMapping, now_ms: int | None = None,
                on_row: Callable[[int], None] | None = None) -> ImportPlan:
    """Every event of the export, deduplicated and sorted by event time (ties: file order)."""
    plan = ImportPlan()
    try:
        handle = open(path, newline="", encoding="utf-8-sig")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise JourneyError(f"{path}: no such file; pass the CSV export to import") from None
    with handle:
        reader = csv.DictReader(handle)
        missing = sorted(mapping.columns() - set(reader.fieldnames or ()))
        if missing:
            raise JourneyError(f"{path}: the mapping reads columns the file does not have: {', '.join(missing)} "
                               f"(the file's header: {', '.join(reader.fieldnames or ())[:300]})")
        by_id: dict[str, dict[str, Any]] = {}
        used = sorted(mapping.columns())
        # an order's line items repeat its columns: a row the mapping reads the same as the last
        # one holds the same events (derived ids), so it is counted without being mapped again
        last_key: tuple[str | None, ...] | None = None
        last_count = 0
        try:
            for row in reader:
                plan.rows += 1
                line = reader.line_num
                key = tuple(row.get(c) for c in used)
                if key == last_key:
                    plan.duplicates += last_count
                else:
                    last_key, last_count = None, 0
                    try:
                        events = row_events(row, mapping, now_ms)
                    except RowError as exc:
                        plan.refused.append((line, str(exc)))
                    else:
                        last_key, last_count = key, len(events)
                        for event in events:
                            if event["event_id"] in by_id:
                                plan.duplicates += 1
                            else:
                                by_id[event["event_id"]] = event
                if on_row is not None:
                    on_row(plan.rows)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise JourneyError(f"{path} line {reader.line_num}: not a readable CSV file ({exc})") from None
    plan.events = sorted(by_id.values(), key=lambda e: e["occurred_at"])  # stable: file order breaks ties
    plan.journeys = len({e["journey_id"] for e in plan.events})
    return plan
