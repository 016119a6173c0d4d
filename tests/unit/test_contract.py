"""The JSON event contract: exact reasons for each kind of bad input, round trips, fuzzing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.contract import ContractError, event_to_json, parse_json_line, validate_event

NOW = 1763899200000  # 2025-11-23T12:00:00Z


def good(**changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "event_id": "0b6c", "journey_id": "j-1042", "customer_id": "c-77", "type": "ITEM_REQUESTED",
        "stage": "during", "channel": "pos", "occurred_at": "2025-11-23T12:00:00.000Z",
        "store_id": "seoul-01", "staff_id": "s-7", "request_id": "r-3", "promised_within_s": 600,
        "attrs": {"item": "spoon"},
    }
    obj.update(changes)
    return {k: v for k, v in obj.items() if v is not ...}


def test_design_example_is_valid_and_round_trips() -> None:
    event = validate_event(good(), NOW)
    assert event["occurred_at"] == NOW
    assert event["incident_id"] is None and event["source"] is None
    assert validate_event(event_to_json(event), NOW) == event


def test_stage_is_derived_when_omitted() -> None:
    assert validate_event(good(stage=...), NOW)["stage"] == "during"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"journey_id": ...}, "missing field 'journey_id'"),
        ({"journey_id": ""}, "missing field 'journey_id' (empty string)"),
        ({"type": "TELEPORTED"}, "unknown type 'TELEPORTED'"),
        ({"occurred_at": "2025-13-01T00:00:00Z"}, "bad timestamp 'occurred_at'"),
        ({"occurred_at": "2025-11-23T12:00:00"}, "has no time zone"),
        ({"occurred_at": 1763899200}, "must be an ISO-8601 string"),
        ({"occurred_at": "2025-11-26T12:00:00Z"}, "h in the future (limit 24 h)"),
        ({"occurred_at": "1970-01-02T00:00:00Z"}, "before 2000-01-01"),
        ({"stage": "after"}, "stage 'after' does not match type 'ITEM_REQUESTED' (expected 'during')"),
        ({"channel": "fax"}, "unknown channel 'fax'"),
        ({"attrs": {"score": 4}}, "attrs must map strings to strings"),
        ({"attrs": {f"k{i}": "v" for i in range(65)}}, "attrs has 65 entries"),
        ({"attrs": {"note": "x" * 2000}}, "is too long"),
        ({"promised_within_s": -5}, "promised_within_s must be a positive integer"),
        ({"promised_within_s": "600"}, "promised_within_s must be a positive integer"),
        ({"event_id": "e" * 300}, "field 'event_id' is too long"),
        ({"customer_id": 77}, "field 'customer_id' must be a string"),
        ({"colour": "red"}, "unknown field 'colour'"),
    ],
)
def test_each_violation_has_its_reason(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(ContractError) as err:
        validate_event(good(**changes), NOW)
    assert reason in str(err.value)


def test_bad_json_line() -> None:
    with pytest.raises(ContractError, match="line is not valid JSON"):
        parse_json_line("{oops", NOW)
    with pytest.raises(ContractError, match="must be a JSON object"):
        parse_json_line("[1, 2]", NOW)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_arbitrary_json_is_accepted_or_rejected_with_contract_error(value: Any) -> None:
    try:
        validate_event(value, NOW)
    except ContractError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(good())), json_values, max_size=8))
def test_mutated_events_never_raise_anything_else(changes: dict[str, Any]) -> None:
    try:
        event = validate_event(good(**changes), NOW)
    except ContractError:
        return
    assert json.loads(json.dumps(event_to_json(event)))["event_id"] == event["event_id"]
