"""Property-based fuzzing of both ways in: JSON lines (`journey emit`) and Avro bytes (the worker).

Properties: valid events survive both round trips unchanged; no input, however broken, makes
either path raise anything but its own error (ContractError / a dead letter with a reason);
whatever the JSON path accepts, Avro can write (a lone surrogate once slipped through here);
the worker's gate sends every message of a batch to exactly one place.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from schemas.codec import decode, encode, encode_with
from schemas.contract import (
    MAX_ATTR_KEY_LEN,
    MAX_ATTR_VALUE_LEN,
    MAX_FUTURE_MS,
    MAX_ID_LEN,
    MAX_PROMISE_S,
    MIN_TIME_MS,
    ContractError,
    event_to_json,
    iso_from_ms,
    parse_json_line,
    validate_event,
)
from schemas.event_types import CHANNELS, EVENT_TYPES, STAGE_OF_TYPE
from schemas.registry import get_registry
from streams.intake import sort_batch

NOW = 1795514400000  # 2026-11-24T10:00:00Z
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)  # any encodable text
# ids: printable text (control characters and line separators are refused in ids)
ident = st.text(st.characters(exclude_categories=("Cs", "Cc"), exclude_characters="\u2028\u2029"),
                min_size=1, max_size=MAX_ID_LEN)
optional_ident = st.none() | ident

# every touchpoint version's id is a legal frame for a touchpoint; any other id must be refused
TOUCHPOINT_IDS = frozenset(e.id for e in get_registry().versions("touchpoint"))


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    """Events in the JSON contract's form, anywhere inside its limits."""
    type_ = draw(st.sampled_from(EVENT_TYPES))
    obj: dict[str, Any] = {
        "event_id": draw(ident), "journey_id": draw(ident), "type": type_,
        "channel": draw(st.sampled_from(CHANNELS)),
        "occurred_at": iso_from_ms(draw(st.integers(MIN_TIME_MS, NOW + MAX_FUTURE_MS))),
    }
    if draw(st.booleans()):
        obj["stage"] = STAGE_OF_TYPE[type_]
    for name in ("customer_id", "store_id", "staff_id", "request_id", "incident_id", "source"):
        value = draw(optional_ident)
        if value is not None:
            obj[name] = value
    if draw(st.booleans()):
        obj["promised_within_s"] = draw(st.integers(1, MAX_PROMISE_S))
    if draw(st.booleans()):
        obj["attrs"] = draw(st.dictionaries(
            st.text(st.characters(exclude_categories=("Cs",)), max_size=MAX_ATTR_KEY_LEN),
            st.text(st.characters(exclude_categories=("Cs",)), max_size=MAX_ATTR_VALUE_LEN), max_size=8))
    return obj


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)


def _accepted_is_writable(event: dict[str, Any]) -> None:
    """What the JSON path accepts, Avro writes and reads back unchanged, and the worker keeps."""
    data = encode("touchpoint", event)
    assert decode(data, "touchpoint") == event
    assert [i for i, _ in sort_batch([data], NOW).valid] == [0]


@FUZZ
@given(valid_events())
def test_valid_events_round_trip_through_json_and_avro(obj: dict[str, Any]) -> None:
    event = validate_event(obj, NOW)
    line = json.dumps(event_to_json(event))
    assert parse_json_line(line, NOW) == event
    _accepted_is_writable(event)


@FUZZ
@given(valid_events(), st.sampled_from(["event_id", "journey_id", "type", "channel", "occurred_at", "stage",
                                        "customer_id", "promised_within_s", "attrs", "extra"]), json_values)
def test_one_field_replaced_by_any_json_is_accepted_or_refused_with_a_reason(
    obj: dict[str, Any], name: str, value: Any
) -> None:
    obj[name] = value
    try:
        event = validate_event(obj, NOW)
    except ContractError as exc:
        assert str(exc)
        return
    _accepted_is_writable(event)


@FUZZ
@given(valid_events(), st.sampled_from(["event_id", "journey_id", "customer_id", "store_id"]),
       st.sampled_from(["\ud800", "a\udfff", "\udc80x"]))
def test_lone_surrogates_from_json_escapes_are_refused(obj: dict[str, Any], name: str, bad: str) -> None:
    obj[name] = bad
    line = json.dumps(obj)  # ensure_ascii: the surrogate travels as a \\uXXXX escape, as senders do
    try:
        parse_json_line(line, NOW)
    except ContractError as exc:
        assert "Unicode" in str(exc) or "must be" in str(exc)
    else:
        raise AssertionError("a lone surrogate was accepted")


@FUZZ
@given(st.text(max_size=300))
def test_any_line_of_text_is_an_event_or_a_contract_error(line: str) -> None:
    try:
        event = parse_json_line(line, NOW)
    except ContractError:
        return
    _accepted_is_writable(event)


@FUZZ
@given(valid_events(), st.data())
def test_character_mutations_of_a_good_line_never_escape(obj: dict[str, Any], data: st.DataObject) -> None:
    line = json.dumps(obj, ensure_ascii=data.draw(st.booleans()))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(line)))
        cut = data.draw(st.integers(0, 3))
        line = line[:at] + data.draw(st.text(max_size=3)) + line[at + cut:]
    try:
        event = parse_json_line(line, NOW)
    except ContractError:
        return
    _accepted_is_writable(event)


def test_deeply_nested_json_is_a_contract_error() -> None:
    try:
        parse_json_line("[" * 100_000 + "]" * 100_000, NOW)
    except ContractError as exc:
        assert "not valid JSON" in str(exc) or "must be a JSON object" in str(exc)


@FUZZ
@given(valid_events(), st.data())
def test_byte_mutations_of_a_good_message_land_in_exactly_one_place(obj: dict[str, Any], data: st.DataObject) -> None:
    good = encode("touchpoint", validate_event(obj, NOW))
    bad = bytearray(good)
    for _ in range(data.draw(st.integers(1, 6))):
        op = data.draw(st.sampled_from(["flip", "cut", "grow", "schema"]))
        if op == "flip" and bad:
            at = data.draw(st.integers(0, len(bad) - 1))
            bad[at] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del bad[data.draw(st.integers(0, len(bad))):]
        elif op == "grow":
            bad += data.draw(st.binary(min_size=1, max_size=16))
        elif len(bad) >= 5:
            bad[1:5] = data.draw(st.integers(0, 2**32 - 1)).to_bytes(4, "big")
    values = [good, bytes(bad), good]
    result = sort_batch(values, NOW)
    places = [i for i, _ in result.valid] + list(result.rejected)
    assert sorted(places) == [0, 1, 2]  # each message exactly once: kept or dead-lettered
    assert {0, 2} <= {i for i, _ in result.valid}
    for index, (reason, kind) in result.rejected.items():
        assert reason and kind in ("decode", "contract"), (index, reason, kind)
    for _, record in result.valid:  # whatever passes the gate is a writable, contract-abiding event
        assert decode(encode("touchpoint", record), "touchpoint") == record


@FUZZ
@given(st.lists(st.binary(max_size=64), max_size=20))
def test_a_batch_of_garbage_is_all_dead_letters_with_reasons(values: list[bytes]) -> None:
    assume(all(not v.startswith(b"\x00\x00\x00\x00\x01") for v in values))  # not a framed touchpoint
    result = sort_batch(values, NOW)
    assert result.valid == []
    assert sorted(result.rejected) == list(range(len(values)))
    assert all(reason for reason, _ in result.rejected.values())


@FUZZ
@given(valid_events(), st.integers(0, 2**31 - 1).filter(lambda i: i not in TOUCHPOINT_IDS))
def test_another_subjects_or_unknown_schema_id_is_refused_by_name(obj: dict[str, Any], schema_id: int) -> None:
    data = bytearray(encode("touchpoint", validate_event(obj, NOW)))
    data[1:5] = schema_id.to_bytes(4, "big")
    [(reason, kind)] = sort_batch([bytes(data)], NOW).rejected.values()
    assert kind == "decode" and (f"schema id {schema_id}" in reason)


def test_a_far_future_or_ancient_event_in_avro_is_a_contract_dead_letter() -> None:
    base = validate_event({"event_id": "e", "journey_id": "j", "type": "VISIT", "channel": "pos",
                           "occurred_at": iso_from_ms(NOW)}, NOW)
    future = encode_with(1, {**base, "occurred_at": NOW + 30 * 86_400_000})
    ancient = encode_with(1, {**base, "occurred_at": 0})
    result = sort_batch([future, ancient], NOW)
    assert [kind for _, kind in result.rejected.values()] == ["contract", "contract"]
