"""WooCommerce webhooks -> touchpoints (pure).

Headers: X-WC-Webhook-Topic (`order.created`, `order.updated`), X-WC-Webhook-Source (the
shop's URL), X-WC-Webhook-Delivery-ID, X-WC-Webhook-Signature = base64(HMAC-SHA256(secret,
raw body)). The payload is the order as the REST API shows it; its status says what happened,
so `order.created` and `order.updated` map the same way. Times are the `*_gmt` fields (UTC
without a zone). Journeys: `woocommerce:SHOP:order:ID`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from streams.platforms.common import (
    Builder,
    Delivery,
    Mapped,
    MappingError,
    decimal_text,
    email_id,
    ms_of,
    need,
    promise_s,
    short_id,
    text_id,
)

PLATFORM = "woocommerce"
TOPIC_HEADER = "X-WC-Webhook-Topic"
SOURCE_HEADER = "X-WC-Webhook-Source"
DELIVERY_HEADER = "X-WC-Webhook-Delivery-ID"
SIGNATURE_HEADER = "X-WC-Webhook-Signature"
ORDER_TOPICS = frozenset({"order.created", "order.updated"})
POS_SOURCES = frozenset({"pos", "woocommerce-pos"})


def shop_of(source_url: str | None) -> str:
    """The shop's host from X-WC-Webhook-Source (`https://shop.example/` -> `shop.example`)."""
    host = urlsplit(source_url or "").hostname
    if not host:
        raise MappingError("header X-WC-Webhook-Source is missing or not the shop's URL")
    return host


def order_journey(shop: str, order_id: str) -> str:
    return short_id(PLATFORM, shop, "order", order_id)


def _meta(order: dict[str, Any], key: str) -> Any:
    for item in order.get("meta_data") or ():
        if isinstance(item, dict) and item.get("key") == key:
            return item.get("value")
    return None


def _customer(shop: str, o: dict[str, Any]) -> str | None:
    if o.get("customer_id") not in (None, 0, "0", ""):
        return short_id(PLATFORM, shop, "customer", o["customer_id"])
    return email_id(PLATFORM, shop, (o.get("billing") or {}).get("email"))


def map_delivery(delivery: Delivery, promise_default_s: int = 0) -> Mapped:
    """One WooCommerce delivery -> touchpoints by the order's status; MappingError if malformed."""
    if delivery.topic not in ORDER_TOPICS:
        return Mapped(ignored=f"topic {delivery.topic!r} is not mapped")
    o = delivery.body
    if not isinstance(o, dict):
        raise MappingError(f"a {delivery.topic} payload must be a JSON object")
    order_id = text_id(need(o, "id"), "order id")
    status = need(o, "status")
    journey = order_journey(delivery.shop, order_id)
    customer = _customer(delivery.shop, o)
    channel = "pos" if o.get("created_via") in POS_SOURCES else "web"
    b = Builder(PLATFORM, delivery.delivery_id, delivery.shop, channel)
    money = {"amount": decimal_text(o.get("total", "0"), "total"), "currency": o.get("currency"),
             "platform": PLATFORM}
    modified = o.get("date_modified_gmt") or o.get("date_created_gmt")
    if status == "pending":
        b.add("CHECKOUT_STARTED", journey, ms_of(o.get("date_created_gmt"), "date_created_gmt"), customer,
              request_id=order_id, **money)
    elif status == "failed":
        b.add("PAYMENT_FAILED", journey, ms_of(modified, "date_modified_gmt"), customer,
              method=o.get("payment_method"), **money)
    elif status == "processing":
        at = ms_of(o.get("date_paid_gmt") or modified, "date_paid_gmt")
        promised_by = _meta(o, "promised_by")
        promise = promise_s(_meta(o, "promised_within_s"),
                            ms_of(promised_by, "meta promised_by") if promised_by else None, at, promise_default_s)
        b.add("CHECKOUT_COMPLETED", journey, at, customer, request_id=order_id, platform=PLATFORM)
        b.add("PAYMENT_SUCCEEDED", journey, at, customer, method=o.get("payment_method"), **money)
        b.add("ORDER_PLACED", journey, at, customer, request_id=order_id, promised_within_s=promise, **money)
    elif status == "completed":
        b.add("ORDER_SERVED", journey, ms_of(o.get("date_completed_gmt") or modified, "date_completed_gmt"),
              customer, request_id=order_id, platform=PLATFORM)
    elif status == "refunded":
        refunds = [r for r in o.get("refunds") or () if isinstance(r, dict)]
        total = (sum((abs(Decimal(decimal_text(r.get("total", "0"), "refund total"))) for r in refunds), Decimal(0))
                 if refunds else Decimal(money["amount"]))
        b.add("COMPENSATION_GIVEN", journey, ms_of(modified, "date_modified_gmt"), customer, kind="refund",
              amount=decimal_text(total, "refund total"), currency=o.get("currency"),
              reason=next((r.get("reason") for r in refunds if r.get("reason")), None), platform=PLATFORM)
    else:
        return Mapped(ignored=f"order status {status!r}")
    return b.mapped()
