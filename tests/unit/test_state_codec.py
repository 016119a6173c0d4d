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
    assert restored.journeys == json.loads(json.dumps(live.journeys))
    later = [(0, _event(20, "VISIT", "j-3"))]
    assert restored.process(later, T0).incident_changes == live.process(later, T0).incident_changes != []


def test_reads_state_written_by_fausts_json_codec() -> None:
    state = {"p": 1, "c": "c-7", "seen": ["e-1"], "req": {}, "inc": {}, "dl": [[T0, "exp", ""]], "last": T0}
    assert decode_journey(json.dumps(state).encode()) == state
