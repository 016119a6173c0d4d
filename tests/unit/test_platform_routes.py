"""The platform endpoints' HTTP rules: 404 unconfigured, 401 bad signature, dedupe, ignore, dead letter.

In-process aiohttp app with a backend that records what it was asked to produce; what reaches
Kafka and the incidents it raises are tested end to end in tests/integration/test_platforms.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections import Counter
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from infra.base.config import Settings
from schemas.codec import decode
from streams.collector.app import create_collector_app
from streams.collector.intake import Checked
from streams.collector.limits import Access, RateLimiter
from streams.platforms.common import sign

FIXTURES = Path(__file__).parents[1] / "fixtures" / "platforms"
SECRETS = {"shopify_webhook_secret": "shp-secret", "square_signature_key": "sq-key",
           "square_notification_url": "https://journey.example/v1/webhooks/square"}


class Recorder:
    """Stands in for the collector process's Kafka side: records what it is handed."""

    broker_ok = True

    def __init__(self) -> None:
        self.produced: list[dict[str, Any]] = []
        self.dead: list[tuple[bytes, str, str]] = []

    async def produce(self, checked: list[Checked]) -> None:
        self.produced += [decode(c.record[1], "touchpoint") for c in checked]

    async def dead_letter(self, raw: bytes, reason: str, origin: str) -> None:
        self.dead.append((raw, reason, origin))


def call(requests: list[tuple[str, bytes, dict[str, str]]], settings: Settings | None = None,
         ) -> tuple[list[tuple[int, Any]], Recorder, Counter[str]]:
    """POST each (path, body, headers) to a fresh app; the answers, the recorder and the stats."""
    settings = settings or Settings().with_(**SECRETS, collector_keys={"web-shop": "k-web"})
    backend, stats = Recorder(), Counter[str]()

    async def run() -> list[tuple[int, Any]]:
        app = create_collector_app(settings, backend, Access.from_settings(settings), RateLimiter(0), stats)
        async with TestClient(TestServer(app)) as client:
            out = []
            for path, body, headers in requests:
                response = await client.post(path, data=body, headers=headers)
                out.append((response.status, await response.json()))
            return out

    return asyncio.run(run()), backend, stats


def shopify(topic: str, fixture: str, delivery: str, secret: str = "shp-secret") -> tuple[str, bytes, dict[str, str]]:
    body = (FIXTURES / f"{fixture}.json").read_bytes()
    return "/v1/webhooks/shopify", body, {
        "X-Shopify-Topic": topic, "X-Shopify-Webhook-Id": delivery, "X-Shopify-Shop-Domain": "fake.myshopify.com",
        "X-Shopify-Hmac-Sha256": sign(secret, body), "Content-Type": "application/json"}


def test_a_platform_without_its_secret_answers_404_and_produces_nothing() -> None:
    body = b'{"id": 1}'
    answers, backend, _ = call([("/v1/webhooks/woocommerce", body, {"X-WC-Webhook-Signature": sign("x", body)})])
    assert answers[0][0] == 404 and "JOURNEY_WOOCOMMERCE_WEBHOOK_SECRET" in answers[0][1]["error"]
    assert backend.produced == [] and backend.dead == []


def test_wrong_or_missing_signature_is_401_and_nothing_is_produced() -> None:
    good = shopify("orders/create", "shopify_orders_create", "d-1")
    wrong = shopify("orders/create", "shopify_orders_create", "d-2", secret="guessed")
    missing = (good[0], good[1], {k: v for k, v in good[2].items() if k != "X-Shopify-Hmac-Sha256"})
    tampered = (good[0], good[1].replace(b"42000.00", b"1.00"), good[2])
    answers, backend, stats = call([wrong, missing, tampered])
    assert [a[0] for a in answers] == [401, 401, 401]
    assert "shp-secret" not in json.dumps(answers)  # the secret is never echoed
    assert backend.produced == [] and backend.dead == [] and stats["shopify_unauthorized"] == 3


def test_square_signs_the_notification_url_with_the_body() -> None:
    body = (FIXTURES / "square_payment_updated_failed.json").read_bytes()
    url = SECRETS["square_notification_url"].encode()
    signed_with_url = {"x-square-hmacsha256-signature": sign("sq-key", url + body)}
    signed_body_only = {"x-square-hmacsha256-signature": sign("sq-key", body)}
    answers, backend, _ = call([("/v1/webhooks/square", body, signed_body_only),
                                ("/v1/webhooks/square", body, signed_with_url)])
    assert [a[0] for a in answers] == [401, 200]
    assert [e["type"] for e in backend.produced] == ["PAYMENT_FAILED"]


def test_a_retried_delivery_is_acknowledged_and_not_produced_again() -> None:
    first = shopify("orders/create", "shopify_orders_create", "d-7")
    answers, backend, stats = call([first, first, shopify("orders/create", "shopify_orders_create", "d-8")])
    assert [a[1]["status"] for a in answers] == ["produced", "duplicate", "produced"]
    ids = [e["event_id"] for e in backend.produced]
    assert ids == ["shopify:d-7:0", "shopify:d-7:1", "shopify:d-8:0", "shopify:d-8:1"]
    assert stats["shopify_duplicate"] == 1


def test_unknown_topics_are_2xx_and_counted_and_unmappable_payloads_dead_lettered_with_the_reason() -> None:
    unknown = shopify("products/update", "shopify_orders_create", "d-20")
    unknown_again = shopify("products/update", "shopify_orders_create", "d-19")
    path, body, headers = shopify("fulfillments/create", "shopify_fulfillments_create", "d-21")
    broken_body = body.replace(b'"order_id": 820982911946154508, ', b"")
    broken = (path, broken_body, {**headers, "X-Shopify-Hmac-Sha256": sign("shp-secret", broken_body)})
    not_json = (path, b"{nope", {**headers, "X-Shopify-Webhook-Id": "d-22", "X-Shopify-Hmac-Sha256":
                                 sign("shp-secret", b"{nope")})
    answers, backend, stats = call([unknown, unknown_again, broken, not_json])
    assert [a[0] for a in answers] == [200, 200, 202, 202]
    assert answers[0][1]["status"] == "ignored" and stats["shopify_ignored"] == 2
    assert backend.produced == []
    assert [d[0] for d in backend.dead] == [broken_body, b"{nope"]
    assert "fulfillments/create delivery d-21: field order_id is missing" in backend.dead[0][1]
    assert "not valid JSON" in backend.dead[1][1] and backend.dead[0][2] == "webhook:shopify"


def test_woocommerce_ping_on_registration_is_acknowledged_without_a_signature() -> None:
    settings = Settings().with_(woocommerce_webhook_secret="wc-secret")
    answers, backend, stats = call([("/v1/webhooks/woocommerce", b"webhook_id=12",
                                     {"Content-Type": "application/x-www-form-urlencoded"}),
                                    ("/v1/webhooks/woocommerce", b'{"id": 1}', {})], settings)
    assert [a[0] for a in answers] == [200, 401] and stats["woocommerce_ping"] == 1 and backend.produced == []


def test_track_needs_a_collector_key_header_or_basic_auth() -> None:
    call_ = {"type": "track", "event": "Checkout Started", "messageId": "m-1", "userId": "u-1",
             "timestamp": "2026-11-23T12:00:00Z", "properties": {"order_id": "o-1"}}
    body = json.dumps({"batch": [call_, call_, {"type": "identify", "userId": "u-1"}]}).encode()
    basic = "Basic " + base64.b64encode(b"k-web:").decode()
    answers, backend, _ = call([("/v1/track", body, {}), ("/v1/track", body, {"Authorization": basic}),
                                ("/v1/track", body, {"X-Journey-Key": "k-web"})])
    assert answers[0][0] == 401
    assert answers[1] == (200, {"accepted": 1, "produced": 1, "duplicate": 1, "ignored": 1})
    assert answers[2] == (200, {"accepted": 0, "duplicate": 2, "ignored": 1})
    assert {e["event_id"] for e in backend.produced} == {"segment:m-1:0"}
    assert backend.produced[0]["journey_id"] == "segment:web-shop:order:o-1"
