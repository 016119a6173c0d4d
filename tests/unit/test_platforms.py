"""Platform payloads (built from Shopify, Square, WooCommerce and Segment field lists) -> touchpoints."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from schemas.contract import ms_from_iso, validate_event
from streams.platforms import segment, shopify, square, woocommerce
from streams.platforms.common import Delivery, MappingError, minor_units, sign, signature_ok

FIXTURES = Path(__file__).parents[1] / "fixtures" / "platforms"
SHOP = "fake-bakery.myshopify.com"
NOW = ms_from_iso("2026-11-30T00:00:00Z")


def payload(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def valid(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every mapped touchpoint passes the contract the collector applies."""
    return [validate_event(e, NOW) for e in events]


def shop(topic: str, name: str, delivery: str = "d-1") -> list[dict[str, Any]]:
    return valid(shopify.map_delivery(Delivery(topic, delivery, SHOP, payload(name)), 0).events)


def test_signature_is_base64_hmac_sha256_compared_whole() -> None:
    body = b'{"id": 1}'
    expected = base64.b64encode(hmac.new(b"s3cret", body, hashlib.sha256).digest()).decode()
    assert sign("s3cret", body) == expected
    assert signature_ok("s3cret", body, expected)
    assert not signature_ok("s3cret", body + b" ", expected)
    assert not signature_ok("other", body, expected)
    assert not signature_ok("s3cret", body, None)
    assert not signature_ok("s3cret", body, expected[:-2])
    assert not signature_ok("s3cret", body, "é" + expected)  # non-ASCII header: refused, not an exception


def test_shopify_checkout_started_and_completed_share_the_checkout_journey() -> None:
    [started] = shop("checkouts/create", "shopify_checkouts_create")
    [completed] = shop("checkouts/update", "shopify_checkouts_update_completed", "d-2")
    token = "7a1f0c3e9b2d4e5f8a6b1c2d3e4f5a6b"
    assert started["type"] == "CHECKOUT_STARTED" and completed["type"] == "CHECKOUT_COMPLETED"
    assert started["journey_id"] == completed["journey_id"] == f"shopify:{SHOP}:checkout:{token}"
    assert started["request_id"] == completed["request_id"] == token
    assert started["occurred_at"] == ms_from_iso("2026-11-23T03:00:00Z")  # the payload's time, +09:00 read
    assert completed["occurred_at"] == ms_from_iso("2026-11-23T03:06:00Z")
    assert started["customer_id"] == completed["customer_id"] == f"shopify:{SHOP}:customer:6001"
    assert started["attrs"]["amount"] == "42000" and started["attrs"]["currency"] == "KRW"
    assert started["event_id"] == "shopify:d-1:0" and started["channel"] == "web" and started["store_id"] == SHOP


def test_shopify_checkout_update_without_completion_is_acknowledged_without_a_touchpoint() -> None:
    body = payload("shopify_checkouts_create")
    mapped = shopify.map_delivery(Delivery("checkouts/update", "d-3", SHOP, body), 0)
    assert mapped.events == [] and "without completion" in (mapped.ignored or "")


def test_shopify_order_completes_its_checkout_and_opens_the_order_with_its_promise() -> None:
    completed, placed = shop("orders/create", "shopify_orders_create")
    assert completed["type"] == "CHECKOUT_COMPLETED"
    assert completed["journey_id"] == f"shopify:{SHOP}:checkout:7a1f0c3e9b2d4e5f8a6b1c2d3e4f5a6b"
    assert placed["type"] == "ORDER_PLACED" and placed["journey_id"] == f"shopify:{SHOP}:order:820982911946154508"
    assert placed["promised_within_s"] == 86400 and placed["request_id"] == "820982911946154508"
    assert placed["attrs"]["order"] == "#1001" and placed["attrs"]["amount"] == "42000"
    assert [completed["event_id"], placed["event_id"]] == ["shopify:d-1:0", "shopify:d-1:1"]


def test_shopify_order_promise_falls_back_to_the_configured_default() -> None:
    body = payload("shopify_orders_create")
    body["note_attributes"] = []
    placed = shopify.map_delivery(Delivery("orders/create", "d", SHOP, body), 7200).events[-1]
    assert placed["promised_within_s"] == 7200
    assert "promised_within_s" not in shopify.map_delivery(Delivery("orders/create", "d", SHOP, body), 0).events[-1]


def test_shopify_fulfilment_transaction_and_refund_land_in_the_order_journey() -> None:
    order = f"shopify:{SHOP}:order:820982911946154508"
    [failed] = shop("order_transactions/create", "shopify_order_transactions_create_failed")
    [served] = shop("fulfillments/create", "shopify_fulfillments_create")
    [refund] = shop("refunds/create", "shopify_refunds_create")
    assert (failed["type"], served["type"], refund["type"]) == ("PAYMENT_FAILED", "ORDER_SERVED", "COMPENSATION_GIVEN")
    assert failed["journey_id"] == served["journey_id"] == refund["journey_id"] == order
    assert served["request_id"] == "820982911946154508"
    assert refund["attrs"] == {"kind": "refund", "amount": "21500.5", "currency": "KRW",
                               "reason": "Loaf arrived crushed", "platform": "shopify"}
    assert refund["stage"] == "recovery"


def test_shopify_successful_capture_is_a_payment_and_an_authorization_nothing() -> None:
    body = payload("shopify_order_transactions_create_failed")
    body.update(status="success", kind="capture")
    assert shopify.map_delivery(Delivery("order_transactions/create", "d", SHOP, body)).events[0]["type"] == \
        "PAYMENT_SUCCEEDED"
    body["kind"] = "authorization"
    assert shopify.map_delivery(Delivery("order_transactions/create", "d", SHOP, body)).ignored


def test_unknown_topics_are_ignored_not_errors() -> None:
    assert shopify.map_delivery(Delivery("products/update", "d", SHOP, {})).ignored
    assert square.map_delivery(Delivery("customer.created", "d", "M", {})).ignored
    assert woocommerce.map_delivery(Delivery("product.created", "d", "s", {})).ignored


@pytest.mark.parametrize(("mutate", "reason"), [
    (lambda b: b.pop("order_id"), "order_id is missing"),
    (lambda b: b.update(created_at="yesterday"), "not an ISO-8601"),
    (lambda b: b.update(created_at=None), "missing"),
])
def test_a_payload_without_what_its_mapping_needs_raises_a_mapping_error(mutate: Any, reason: str) -> None:
    body = payload("shopify_fulfillments_create")
    mutate(body)
    with pytest.raises(MappingError, match=reason):
        shopify.map_delivery(Delivery("fulfillments/create", "d", SHOP, body))


def test_square_amounts_are_converted_from_the_smallest_unit() -> None:
    assert minor_units(1550, "USD", "a") == "15.5"
    assert minor_units(1550, "JPY", "a") == "1550"
    assert minor_units(1550, "KWD", "a") == "1.55"
    with pytest.raises(MappingError):
        minor_units("15.50", "USD", "a")


def test_square_failed_payment_fulfilment_and_refund_share_the_order_journey() -> None:
    def sq(name: str) -> list[dict[str, Any]]:
        body = payload(name)
        topic, event_id, merchant = square.envelope(body)
        return valid(square.map_delivery(Delivery(topic, event_id, merchant, body), 0).events)

    [placed] = sq("square_order_created")
    [failed] = sq("square_payment_updated_failed")
    [served] = sq("square_order_fulfillment_updated")
    [refund] = sq("square_refund_created")
    journey = "square:MLFAKE0000001:order:OFAKEorder001"
    assert {e["journey_id"] for e in (placed, failed, served, refund)} == {journey}
    assert failed["type"] == "PAYMENT_FAILED" and failed["attrs"]["amount"] == "15.5"
    assert failed["occurred_at"] == ms_from_iso("2026-11-23T03:00:04.500Z")
    assert failed["event_id"] == "square:6a8f5f28-54a1-4eb0-a98a-3111513fd4fc:0"
    assert failed["channel"] == "pos" and failed["store_id"] == "LFAKE01"
    assert failed["customer_id"] == "square:MLFAKE0000001:customer:CFAKE0042"
    assert (placed["type"], served["type"]) == ("ORDER_PLACED", "ORDER_SERVED")
    assert placed["request_id"] == served["request_id"] == "OFAKEorder001"
    assert refund["attrs"]["amount"] == "5" and refund["attrs"]["reason"] == "Cold coffee"


def test_square_completed_payment_succeeds_and_pending_is_ignored() -> None:
    body = payload("square_payment_updated_failed")
    body["data"]["object"]["payment"]["status"] = "COMPLETED"
    assert square.map_delivery(Delivery("payment.updated", "e", "M", body)).events[0]["type"] == "PAYMENT_SUCCEEDED"
    body["data"]["object"]["payment"]["status"] = "APPROVED"
    assert square.map_delivery(Delivery("payment.updated", "e", "M", body)).ignored


def test_square_order_completed_is_served_and_a_counter_sale_opens_no_watch() -> None:
    created = payload("square_order_created")
    created["data"]["object"]["order_created"]["state"] = "COMPLETED"
    assert square.map_delivery(Delivery("order.created", "e", "M", created)).ignored == "order created COMPLETED"
    updated = {"merchant_id": "M", "type": "order.updated", "event_id": "e2", "data": {"type": "order_updated",
               "id": "O1", "object": {"order_updated": {"order_id": "O1", "state": "COMPLETED", "location_id": "L",
                                                        "updated_at": "2026-11-23T03:05:00Z", "version": 3}}}}
    [served] = valid(square.map_delivery(Delivery("order.updated", "e2", "M", updated)).events)
    assert (served["type"], served["journey_id"], served["request_id"]) == ("ORDER_SERVED", "square:M:order:O1", "O1")
    updated["data"]["object"]["order_updated"]["state"] = "OPEN"
    assert square.map_delivery(Delivery("order.updated", "e3", "M", updated)).ignored


def test_woocommerce_maps_by_order_status() -> None:
    body = payload("woocommerce_order_processing")
    events = valid(woocommerce.map_delivery(Delivery("order.updated", "901", "tea.example", body), 0).events)
    assert [e["type"] for e in events] == ["CHECKOUT_COMPLETED", "PAYMENT_SUCCEEDED", "ORDER_PLACED"]
    placed = events[-1]
    assert placed["journey_id"] == "woocommerce:tea.example:order:727"
    assert placed["occurred_at"] == ms_from_iso("2026-11-23T12:01:30Z")  # date_paid_gmt read as UTC
    assert placed["promised_within_s"] == 2 * 86400  # meta promised_by - paid time
    assert placed["customer_id"] == "woocommerce:tea.example:customer:26"
    statuses = {"pending": ["CHECKOUT_STARTED"], "failed": ["PAYMENT_FAILED"], "completed": ["ORDER_SERVED"]}
    for status, types in statuses.items():
        changed = dict(body, status=status, date_completed_gmt="2026-11-26T09:00:00")
        got = woocommerce.map_delivery(Delivery("order.updated", "902", "tea.example", changed), 0).events
        assert [e["type"] for e in got] == types
    on_hold = Delivery("order.updated", "903", "tea.example", dict(body, status="on-hold"))
    assert woocommerce.map_delivery(on_hold).ignored


def test_woocommerce_refund_sums_the_refunds_and_hashes_a_guest_email() -> None:
    [refund] = valid(woocommerce.map_delivery(
        Delivery("order.updated", "904", "tea.example", payload("woocommerce_order_refunded"))).events)
    assert refund["type"] == "COMPENSATION_GIVEN" and refund["attrs"]["amount"] == "29.35"
    assert refund["attrs"]["reason"] == "Box damaged"
    assert refund["customer_id"].startswith("woocommerce:tea.example:email:")
    assert "fake" not in refund["customer_id"].lower()  # no address in ids


def test_woocommerce_shop_is_the_source_host() -> None:
    assert woocommerce.shop_of("https://tea.example/") == "tea.example"
    with pytest.raises(MappingError):
        woocommerce.shop_of(None)


def segment_call(event: str, **props: Any) -> dict[str, Any]:
    return {"type": "track", "event": event, "messageId": f"m-{event}", "userId": "u-9",
            "timestamp": "2026-11-23T12:00:00.000Z", "properties": {"order_id": "o-50", **props},
            "context": {"library": {"name": "analytics.js"}}}


def test_segment_ecommerce_events() -> None:
    started = segment.map_message(segment_call("Checkout Started", revenue=25), "web-shop").events
    info = segment.map_message(segment_call("Payment Info Entered"), "web-shop").events
    done = segment.map_message(segment_call("Order Completed", total=27.5, currency="USD"), "web-shop").events
    refund = segment.map_message(segment_call("Order Refunded", total="5"), "web-shop").events
    valid(started + info + done + refund)
    assert [e["type"] for e in started + info] == ["CHECKOUT_STARTED", "CHECKOUT_STARTED"]
    assert started[0]["request_id"] == info[0]["request_id"] == "o-50"  # one watch, whichever step comes first
    assert [e["type"] for e in done] == ["CHECKOUT_COMPLETED", "PAYMENT_SUCCEEDED"]  # no promise stated: no watch
    assert refund[0]["type"] == "COMPENSATION_GIVEN" and refund[0]["attrs"]["amount"] == "5"
    assert {e["journey_id"] for e in started + done + refund} == {"segment:web-shop:order:o-50"}
    assert started[0]["customer_id"] == "u-9" and started[0]["event_id"] == "segment:m-Checkout Started:0"
    with_promise = segment.map_message(segment_call("Order Completed", promised_within_s=3600), "web-shop").events
    assert with_promise[-1]["type"] == "ORDER_PLACED" and with_promise[-1]["promised_within_s"] == 3600


def test_segment_identify_and_unmapped_events_produce_nothing() -> None:
    assert segment.map_message({"type": "identify", "userId": "u-9", "traits": {}}, "s").ignored
    assert segment.map_message(segment_call("Product Viewed"), "s").ignored
    broken = copy.deepcopy(segment_call("Order Completed"))
    broken["properties"].pop("order_id")
    with pytest.raises(MappingError, match="order_id"):
        segment.map_message(broken, "s")
    assert len(segment.messages_of({"batch": [broken, broken]}, 10)) == 2
    with pytest.raises(MappingError):
        segment.messages_of({"batch": [broken] * 3}, 2)
