"""The event contract in JSON form (what `journey emit` and the HTTP collector accept).

`validate_event` turns one JSON object into an event dict in the codec's decoded shape
(occurred_at as int epoch ms, every optional field present, attrs a dict) or raises
`ContractError` with a reason a person can act on. `check_contract` applies the checks that
also matter for already-decoded Avro (empty ids, absurd timestamps, oversized values).
"""

from __future__ import annotations

import json
import os
import re
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas.event_types import CHANNELS, EVENT_TYPES, STAGE_OF_TYPE

MAX_FUTURE_MS = 24 * 3600 * 1000  # an event more than a day ahead of now is a broken clock
MIN_TIME_MS = 946684800000  # 2000-01-01: anything older is a broken clock too
MAX_ID_LEN = 256
MAX_ATTRS = 64
MAX_ATTR_KEY_LEN = 128
MAX_ATTR_VALUE_LEN = 1024
DEFAULT_MAX_PROMISE_DAYS = 365  # real promises: a delivery in three weeks, a repair in 30 days, a year's warranty
AVRO_INT_MAX_S = 2**31 - 1  # promised_within_s is an Avro int


def promise_limit_s(days_text: str | None) -> int:
    """JOURNEY_MAX_PROMISE_DAYS (its text; None or empty: the default) in seconds: the longest promise
    the contract accepts. ValueError when it is not a whole number of days within an Avro int."""
    days = DEFAULT_MAX_PROMISE_DAYS if not days_text else int(days_text)
    if not 1 <= days * 86_400 <= AVRO_INT_MAX_S:
        raise ValueError(f"JOURNEY_MAX_PROMISE_DAYS={days} must be between 1 and {AVRO_INT_MAX_S // 86_400} days")
    return days * 86_400


# Read at import, so every process of a stack (they share its environment) holds the same limit.
try:
    MAX_PROMISE_S = promise_limit_s(os.environ.get("JOURNEY_MAX_PROMISE_DAYS"))
except ValueError:  # reported as one line by `Settings.from_env()`, which every command and service reads
    MAX_PROMISE_S = DEFAULT_MAX_PROMISE_DAYS * 86_400

REQUIRED = ("event_id", "journey_id", "type", "channel", "occurred_at")
ID_FIELDS = ("event_id", "journey_id", "customer_id", "store_id", "staff_id", "request_id", "incident_id", "source")
OPTIONAL_NONE = ("customer_id", "store_id", "staff_id", "request_id", "promised_within_s", "incident_id", "source")
TIME_FIELDS = ("sent_at", "received_at")  # optional device send time, our receive time (ISO-8601 in JSON)
KNOWN_FIELDS = frozenset(REQUIRED + OPTIONAL_NONE + TIME_FIELDS + ("stage", "attrs"))
# C0, DEL, C1 and the Unicode line/paragraph separators: they forge log lines, run terminal escape
# sequences and break one-line outputs, and no real id needs them.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_TYPES = frozenset(EVENT_TYPES)
_CHANNELS = frozenset(CHANNELS)


class ContractError(ValueError):
    """The event violates the contract; the message says which field and why."""


def now_ms() -> int:
    return int(time.time() * 1000)


def iso_from_ms(ms: int) -> str:
    """Epoch milliseconds -> ISO-8601 UTC with milliseconds and a Z."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def ms_from_iso(text: str, name: str = "occurred_at") -> int:
    """ISO-8601 with a time zone -> epoch ms; ContractError (naming field `name`) otherwise."""
    try:
        parsed = datetime.fromisoformat(text)  # reads a trailing Z itself (Python 3.11+)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ContractError(f"bad timestamp '{name}': {text!r} is not ISO-8601") from None
    if parsed.tzinfo is None:
        raise ContractError(f"bad timestamp '{name}': {text!r} has no time zone (add Z or +HH:MM)")
    return int(round(parsed.timestamp() * 1000))


def parse_json_line(line: str | bytes, now: int | None = None) -> dict[str, Any]:
    """One JSON line -> validated event dict (ContractError for bad JSON too).

    orjson parses a line ~4x faster than the standard library. What orjson refuses goes to the
    standard library, which decides: it reads a few things orjson does not (lone surrogate
    escapes, NaN, nesting deeper than 1,024), which validation then refuses with their own
    reason, and its error messages are the ones this module has always given. One difference
    stays: orjson reads an integer beyond 64 bits as a float; no field accepts either, so such a
    line is refused just the same, its reason showing the float.
    """
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise ContractError(f"line is not valid JSON: {exc}") from None
    return validate_event(obj, now)


def _string(obj: dict[str, Any], name: str, required: bool) -> str | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise ContractError(f"missing field '{name}'")
        return None
    if not isinstance(value, str):
        raise ContractError(f"field '{name}' must be a string, got {type(value).__name__}")
    return value if value.isascii() else _text(value, f"field '{name}'")


def _text(value: str, what: str) -> str:
    """`value` if it is encodable text; JSON's \\ud800-style escapes can carry lone surrogates,
    which Avro (UTF-8) cannot write."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ContractError(f"{what} is not valid Unicode text (a lone surrogate, or bytes not UTF-8)") from None
    return value


def validate_event(obj: Any, now: int | None = None) -> dict[str, Any]:
    """A JSON object in the design's form -> event dict; raises ContractError."""
    if not isinstance(obj, dict):
        raise ContractError(f"an event must be a JSON object, got {type(obj).__name__}")
    if not KNOWN_FIELDS.issuperset(obj):
        unknown = sorted(set(obj) - KNOWN_FIELDS)
        raise ContractError(f"unknown field {unknown[0]!r} (allowed: {', '.join(sorted(KNOWN_FIELDS))})")
    for name in REQUIRED:
        if obj.get(name) is None:
            raise ContractError(f"missing field '{name}'")
    event_type = _string(obj, "type", True)
    if event_type not in _TYPES:
        raise ContractError(f"unknown type {event_type!r} (expected one of {', '.join(EVENT_TYPES)})")
    expected_stage = STAGE_OF_TYPE[event_type]
    stage = _string(obj, "stage", False) or expected_stage
    if stage != expected_stage:
        raise ContractError(f"stage {stage!r} does not match type {event_type!r} (expected {expected_stage!r})")
    channel = _string(obj, "channel", True)
    if channel not in _CHANNELS:
        raise ContractError(f"unknown channel {channel!r} (expected one of {', '.join(CHANNELS)})")
    occurred = obj["occurred_at"]
    if not isinstance(occurred, str):
        raise ContractError("bad timestamp 'occurred_at': must be an ISO-8601 string such as 2026-11-23T12:00:00Z")
    event: dict[str, Any] = {
        "event_id": _string(obj, "event_id", True),
        "journey_id": _string(obj, "journey_id", True),
        "customer_id": _string(obj, "customer_id", False),
        "type": event_type,
        "stage": stage,
        "channel": channel,
        "occurred_at": ms_from_iso(occurred),
        "store_id": _string(obj, "store_id", False),
        "staff_id": _string(obj, "staff_id", False),
        "request_id": _string(obj, "request_id", False),
        "promised_within_s": obj.get("promised_within_s"),
        "incident_id": _string(obj, "incident_id", False),
        "attrs": attrs if (attrs := obj.get("attrs")) is not None else {},
        "source": _string(obj, "source", False),
        **{name: _optional_time(obj, name) for name in TIME_FIELDS},
    }
    check_contract(event, now)
    return event


def _optional_time(obj: dict[str, Any], name: str) -> int | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ContractError(f"bad timestamp '{name}': must be an ISO-8601 string such as 2026-11-23T12:00:00Z")
    return ms_from_iso(value, name)


def check_contract(event: dict[str, Any], now: int | None = None) -> None:
    """Checks shared by JSON input and decoded Avro: ids, sizes, promise, time sanity."""
    for name in ID_FIELDS:
        value = event.get(name)
        if value is None or (0 < len(value) <= MAX_ID_LEN and value.isprintable()):  # the usual id, fast
            continue
        if name in ("event_id", "journey_id") and not value:
            raise ContractError(f"missing field '{name}' (empty string)")
        if len(value) > MAX_ID_LEN:
            raise ContractError(f"field '{name}' is too long ({len(value)} chars, max {MAX_ID_LEN})")
        if (found := CONTROL_CHARACTERS.search(value)) is not None:
            raise ContractError(f"field '{name}' contains a control character (U+{ord(found.group()):04X}): "
                                "ids are printable text")
    promise = event.get("promised_within_s")
    if promise is not None and (isinstance(promise, bool) or not isinstance(promise, int)
                                or not 0 < promise <= MAX_PROMISE_S):
        raise ContractError(f"promised_within_s must be a positive integer up to {MAX_PROMISE_S}, got {promise!r}")
    _check_attrs(event.get("attrs"))
    occurred = event["occurred_at"]
    limit = (now if now is not None else now_ms()) + MAX_FUTURE_MS
    if occurred > limit:
        ahead_h = (occurred - limit + MAX_FUTURE_MS) / 3_600_000
        raise ContractError(f"occurred_at is {ahead_h:.1f} h in the future (limit 24 h): fix the sender's clock")
    if occurred < MIN_TIME_MS:
        raise ContractError(f"occurred_at {iso_from_ms(occurred)} is before 2000-01-01: fix the sender's clock")
    for name in TIME_FIELDS:
        at = event.get(name)
        if at is not None and not MIN_TIME_MS <= at <= limit:
            raise ContractError(f"{name} is before 2000-01-01 or more than 24 h ahead: fix the sender's clock")


def _check_attrs(attrs: Any) -> None:
    if not isinstance(attrs, dict):
        raise ContractError(f"attrs must map strings to strings, got {type(attrs).__name__}")
    if len(attrs) > MAX_ATTRS:
        raise ContractError(f"attrs has {len(attrs)} entries (max {MAX_ATTRS})")
    for key, value in attrs.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ContractError(f"attrs must map strings to strings (numbers as decimal strings): {key!r}")
        if not (key.isascii() and value.isascii()):  # str.isascii is O(1); ASCII is always valid
            _text(key + value, f"attrs entry {key[:40]!r}")
        if len(key) > MAX_ATTR_KEY_LEN or len(value) > MAX_ATTR_VALUE_LEN:
            raise ContractError(
                f"attrs entry {key[:40]!r} is too long (key max {MAX_ATTR_KEY_LEN}, value max {MAX_ATTR_VALUE_LEN})"
            )


def event_to_json(event: dict[str, Any]) -> dict[str, Any]:
    """Event dict -> the design's JSON form (optional fields that are None are left out)."""
    out: dict[str, Any] = {}
    for key, value in event.items():
        if value is None or (key == "attrs" and not value):
            continue
        out[key] = iso_from_ms(value) if key == "occurred_at" or key in TIME_FIELDS else value
    return out
