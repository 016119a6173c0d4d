"""Journey state encoding for the table: compact, lossless for detector state, reads old JSON."""

from __future__ import annotations

import json

from streams.domain.config import load_detection_config
from streams.domain.processor import Detector
from streams.state_codec import decode_journey, encode_journey

T0 = 1_795_000_000_000


def _event(i: int, type_: str, journey: str, **extra: object) -> dict[str, object]:
    return {"event_id": f"e-{i}", "journey_id": journey, "customer_id": "c-ü", "type": type_, "stage": "during",
            "channel": "pos", "occurred_at": T0 + i * 1000, "store_id": "seoul-01", "staff_id": None,
            "request_id": extra.get("request_id"), "promised_within_s": extra.get("promise"),
            "incident_id": None, "attrs": {}, "source": None}


def test_detector_state_round_trips_and_a_restored_detector_goes_on_the_same() -> None:
    events = [_event(0, "ITEM_REQUESTED", "j-1", request_id="spoon", promise=5), _event(1, "COMPLAINT_FILED", "j-1"),
              _event(2, "VISIT", "j-2")]
    live = Detector(load_detection_config())
    live.process([(0, e) for e in events], T0)
    encoded = {jid: encode_journey(state) for jid, state in live.journeys.items()}
    assert all(b" " not in data for data in encoded.values())  # compact
    restored = Detector(load_detection_config())
    restored.load(((jid, decode_journey(data)) for jid, data in encoded.items()), now_ms=T0)
    assert {jid: j.to_state() for jid, j in restored.journeys.items()} == json.loads(
        json.dumps({jid: j.to_state() for jid, j in live.journeys.items()}))
    # j-1: its request, three SLA deadlines, its expiry check; j-2: its expiry check
    assert restored.deadline_index_size() == live.deadline_index_size() == 6
    later = [(0, _event(20, "VISIT", "j-3"))]
    assert restored.process(later, T0).incident_changes == live.process(later, T0).incident_changes != []


def test_reads_state_written_by_fausts_json_codec() -> None:
    state = {"p": 1, "c": "c-7", "seen": ["e-1"], "req": {}, "inc": {}, "dl": [[T0, "exp", ""]], "last": T0}
    journey = decode_journey(json.dumps(state).encode())
    assert (journey.p, journey.c, journey.seen_ids(), journey.last, journey.exp) == (1, "c-7", ["e-1"], T0, T0)
    assert journey.req is journey.inc is journey.dl is None  # the expiry check lives in `exp` alone


def test_reads_the_older_layout_with_every_key_and_the_expiry_in_dl() -> None:
    state = {"p": 0, "c": "c-1", "seen": ["e-1", "e-2"], "req": {}, "early": [], "fired": {},
             "inc": {"inc-b": {"x": 2}, "inc-a": {"x": 1}}, "order": ["inc-a", "inc-b"],
             "dl": [[T0 + 5, "sla", "inc-a|resolve_s"], [T0 + 9, "exp", ""]], "last": T0, "exp": T0 + 9}
    journey = decode_journey(json.dumps(state).encode())
    assert list(journey.inc or {}) == ["inc-a", "inc-b"]  # `order` kept
    assert journey.dl == [(T0 + 5, "sla", "inc-a|resolve_s")] and journey.exp == T0 + 9
    assert journey.req is journey.early is journey.fired is None
    assert decode_journey(encode_journey(journey)).to_state() == journey.to_state()


def test_an_idle_journey_is_written_without_its_empty_parts() -> None:
    live = Detector(load_detection_config())
    live.process([(0, _event(0, "VISIT", "j-1"))], T0)
    assert json.loads(encode_journey(live.journeys["j-1"])) == {
        "p": 0, "c": "c-ü", "seen": ["e-0"], "last": T0, "exp": T0 + 2 * 86_400_000}


def test_seen_ids_keep_the_newest_and_a_lone_id_is_kept_bare() -> None:
    journey = decode_journey(b'{"p":0,"c":null,"seen":[],"last":null}')
    assert not journey.has_seen("a")
    journey.remember("a", keep=2)
    assert journey.seen == "a" and journey.has_seen("a")
    journey.remember("b", keep=2)
    journey.remember("c", keep=2)
    assert journey.seen_ids() == ["b", "c"] and not journey.has_seen("a") and journey.has_seen("c")
