"""The collector's pure parts: body parsing, per-event checks and answer, keys, origins, rate limits."""

from __future__ import annotations

import json

import pytest

from infra.base.config import ConfigError, Settings
from schemas.codec import decode
from schemas.contract import parse_json_line
from streams.collector.intake import BodyError, answer, check_events, parse_body
from streams.collector.limits import ANONYMOUS, Access, RateLimiter, TokenBucket, is_loopback

NOW = 1_796_000_000_000  # 2026-11-29, after the events' time


def event(n: int, **extra: object) -> dict[str, object]:
    return {"event_id": f"e-{n}", "journey_id": f"j-{n}", "type": "VISIT", "channel": "web",
            "occurred_at": "2026-11-24T10:00:00Z", **extra}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_body_is_one_object_or_a_batch() -> None:
    assert parse_body(b'{"a": 1}', 10) == [{"a": 1}]
    assert parse_body(b"[1, 2]", 10) == [1, 2]


@pytest.mark.parametrize(("body", "status", "words"), [
    (b"{nope", 400, "not valid JSON"), (b'"text"', 400, "got str"), (b"[]", 400, "empty"),
    (json.dumps([{}] * 11).encode(), 413, "11 events, more than the limit of 10"),
])
def test_unusable_bodies_say_why_with_the_status(body: bytes, status: int, words: str) -> None:
    with pytest.raises(BodyError, match=words) as err:
        parse_body(body, 10)
    assert err.value.status == status


def test_events_are_checked_as_journey_emit_does_and_stamped_with_the_source() -> None:
    items = [event(1), event(2, type="NOPE"), event(3, source="pos-1"), "x", event(5, source="other")]
    checked = check_events(items, "pos-1", NOW)
    assert [c.valid for c in checked] == [True, False, True, False, False]
    # the same reason `journey emit` gives for the same line
    with pytest.raises(ValueError) as emit_err:
        parse_json_line(json.dumps(event(2, type="NOPE")), NOW)
    assert checked[1].reason == str(emit_err.value)
    assert "does not match the API key's source 'pos-1'" in str(checked[4].reason)
    assert checked[3].event_id is None and checked[4].event_id == "e-5"
    written = decode(checked[0].value or b"", "touchpoint")
    assert written["source"] == "pos-1" and written["stage"] == "before" and checked[0].key == b"j-1"


@pytest.mark.parametrize(("valid", "status"), [([True, True], 200), ([True, False], 207), ([False, False], 400)])
def test_answer_status(valid: list[bool], status: int) -> None:
    items = [event(n) if ok else event(n, channel="fax") for n, ok in enumerate(valid)]
    got, body = answer(check_events(items, "s", NOW))
    assert got == status
    assert body["accepted"] == sum(valid) and body["rejected"] == len(valid) - sum(valid)
    assert [r["status"] for r in body["results"]] == ["accepted" if ok else "rejected" for ok in valid]
    assert all("reason" in r for r in body["results"] if r["status"] == "rejected")


def test_keys_map_to_sources_and_unknown_keys_to_none() -> None:
    access = Access.from_settings(Settings(collector_keys={"pos-1": "k1", "web": "k2"}))
    assert (access.source_of("k1"), access.source_of("k2")) == ("pos-1", "web")
    assert access.source_of("k3") is None and access.source_of(None) is None and access.source_of("") is None
    assert "k1" not in repr(access)


def test_without_keys_only_loopback_and_anonymous() -> None:
    access = Access.from_settings(Settings(host="127.0.0.1"))
    assert access.source_of(None) == ANONYMOUS and access.source_of("made-up") is None
    with pytest.raises(ConfigError, match="JOURNEY_COLLECTOR_KEYS"):
        Access.from_settings(Settings(host="0.0.0.0"))
    assert Access.from_settings(Settings(host="0.0.0.0", collector_keys={"a": "b"})).keys == {"a": "b"}
    assert is_loopback("::1") and is_loopback("localhost") and not is_loopback("10.0.0.1")


def test_origins_only_matter_for_browser_calls() -> None:
    access = Access.from_settings(Settings(collector_origins=("https://shop.example",)))
    assert access.origin_allowed(None) and access.origin_allowed("https://shop.example")
    assert not access.origin_allowed("https://evil.example") and not access.origin_allowed("null")


def test_bucket_allows_two_seconds_of_burst_then_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(100, clock)
    assert bucket.take(150) == 0 and bucket.take(50) == 0
    assert bucket.take(50) == pytest.approx(0.5)  # empty: 50 events at 100/s
    clock.now += 0.5
    assert bucket.take(50) == 0


def test_a_batch_bigger_than_the_burst_passes_when_full_and_is_paid_back() -> None:
    clock = Clock()
    bucket = TokenBucket(8, clock)  # capacity 16
    assert bucket.take(100) == 0  # allowed once; the bucket owes 84 events
    assert bucket.take(1) == 10.625  # (84 + 1) / 8
    clock.now += 10.625
    assert bucket.take(1) == 0


def test_limiter_per_source_in_whole_seconds_and_zero_disables() -> None:
    clock = Clock()
    limiter = RateLimiter(10, clock)
    assert limiter.take("a", 20) == 0
    assert limiter.take("a", 1) == 1 and limiter.take("a", 15) == 2
    assert limiter.take("b", 20) == 0
    unlimited = RateLimiter(0, clock)
    assert all(unlimited.take("a", 1000) == 0 for _ in range(10))
