"""Shopify webhooks -> touchpoints (pure).

Headers: X-Shopify-Topic, X-Shopify-Shop-Domain, X-Shopify-Webhook-Id (the same on every
retry), X-Shopify-Hmac-Sha256 = base64(HMAC-SHA256(app secret, raw body)).

Journeys: a checkout is `shopify:SHOP:checkout:TOKEN`, an order `shopify:SHOP:order:ID`.
Fulfilments, transactions and refunds name only the order id, so they land in the order's
journey with no lookup. Abandonment needs the checkout's start and completion in one journey:
the completion comes from `checkouts/update` (with `completed_at`) and, because Shopify does
not promise that update, also from `orders/create`, whose order names its `checkout_token`.
A second completion changes nothing (the first one fulfilled the checkout).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from streams.platforms.common import (
    Builder,
    Delivery,
    Handler,
    Mapped,
    decimal_text,
    dispatch,
    email_id,
    ms_of,
    need,
    promise_s,
    short_id,
    text_id,
)

PLATFORM = "shopify"
TOPIC_HEADER = "X-Shopify-Topic"
SHOP_HEADER = "X-Shopify-Shop-Domain"
DELIVERY_HEADER = "X-Shopify-Webhook-Id"
SIGNATURE_HEADER = "X-Shopify-Hmac-Sha256"
FAILED_TRANSACTION = frozenset({"failure", "error"})
PAID_KINDS = frozenset({"sale", "capture"})


def checkout_journey(shop: str, token: str) -> str:
    return short_id(PLATFORM, shop, "checkout", token)


def order_journey(shop: str, order_id: str) -> str:
    return short_id(PLATFORM, shop, "order", order_id)


def _customer(shop: str, obj: dict[str, Any]) -> str | None:
    customer = obj.get("customer")
    if isinstance(customer, dict) and customer.get("id") not in (None, ""):
        return short_id(PLATFORM, shop, "customer", customer["id"])
    return email_id(PLATFORM, shop, obj.get("email") or (customer or {}).get("email"))


def _channel(obj: dict[str, Any]) -> str:
    return "pos" if obj.get("source_name") == "pos" else "web"


def _builder(d: Delivery, obj: dict[str, Any]) -> Builder:
    return Builder(PLATFORM, d.delivery_id, d.shop, _channel(obj))


def _note(order: dict[str, Any], name: str) -> Any:
    for item in order.get("note_attributes") or ():
        if isinstance(item, dict) and item.get("name") == name:
            return item.get("value")
    return None


def _checkout_created(d: Delivery, promise_default_s: int) -> Mapped:
    c = d.body
    token = text_id(need(c, "token"), "checkout token")
    b = _builder(d, c)
    b.add("CHECKOUT_STARTED", checkout_journey(d.shop, token), ms_of(need(c, "created_at"), "created_at"),
          _customer(d.shop, c), request_id=token, amount=c.get("total_price"), currency=c.get("currency"),
          platform=PLATFORM)
    return b.mapped()


def _checkout_updated(d: Delivery, promise_default_s: int) -> Mapped:
    c = d.body
    if not c.get("completed_at"):
        return Mapped(ignored="checkout update without completion")
    token = text_id(need(c, "token"), "checkout token")
    b = _builder(d, c)
    b.add("CHECKOUT_COMPLETED", checkout_journey(d.shop, token), ms_of(c["completed_at"], "completed_at"),
          _customer(d.shop, c), request_id=token, platform=PLATFORM)
    return b.mapped()


def _order_created(d: Delivery, promise_default_s: int) -> Mapped:
    o = d.body
    order_id = text_id(need(o, "id"), "order id")
    at = ms_of(o.get("created_at") or o.get("processed_at"), "created_at")
    customer = _customer(d.shop, o)
    promised_by = _note(o, "promised_by")
    promise = promise_s(_note(o, "promised_within_s"), ms_of(promised_by, "note promised_by") if promised_by
                        else None, at, promise_default_s)
    b = _builder(d, o)
    token = o.get("checkout_token")
    if token:  # the checkout this order completes (see the module docstring)
        b.add("CHECKOUT_COMPLETED", checkout_journey(d.shop, str(token)), at, customer, request_id=str(token),
              order_id=order_id, platform=PLATFORM)
    b.add("ORDER_PLACED", order_journey(d.shop, order_id), at, customer, request_id=order_id,
          promised_within_s=promise, order=o.get("name"), amount=decimal_text(o.get("total_price", "0"), "total_price"),
          currency=o.get("currency"), platform=PLATFORM)
    return b.mapped()


def _transaction(d: Delivery, promise_default_s: int) -> Mapped:
    t = d.body
    order_id = text_id(need(t, "order_id"), "transaction order_id")
    at = ms_of(t.get("processed_at") or t.get("created_at"), "transaction created_at")
    status, kind = t.get("status"), t.get("kind")
    if status in FAILED_TRANSACTION:
        type_ = "PAYMENT_FAILED"
    elif status == "success" and kind in PAID_KINDS:
        type_ = "PAYMENT_SUCCEEDED"
    else:
        return Mapped(ignored=f"transaction {kind}/{status}")
    b = _builder(d, t)
    b.add(type_, order_journey(d.shop, order_id), at, amount=decimal_text(t.get("amount", "0"), "amount"),
          currency=t.get("currency"), gateway=t.get("gateway"), error=t.get("error_code"), platform=PLATFORM)
    return b.mapped()


def _fulfillment(d: Delivery, promise_default_s: int) -> Mapped:
    f = d.body
    order_id = text_id(need(f, "order_id"), "fulfillment order_id")
    b = _builder(d, f)
    b.add("ORDER_SERVED", order_journey(d.shop, order_id), ms_of(need(f, "created_at"), "fulfillment created_at"),
          request_id=order_id, tracking=f.get("tracking_number"), platform=PLATFORM)
    return b.mapped()


def _order_fulfilled(d: Delivery, promise_default_s: int) -> Mapped:
    o = d.body
    order_id = text_id(need(o, "id"), "order id")
    times = [f.get("created_at") for f in o.get("fulfillments") or () if isinstance(f, dict) and f.get("created_at")]
    at = ms_of(max(times) if times else o.get("updated_at"), "fulfilment time")
    b = _builder(d, o)
    b.add("ORDER_SERVED", order_journey(d.shop, order_id), at, _customer(d.shop, o), request_id=order_id,
          platform=PLATFORM)
    return b.mapped()


def _refund(d: Delivery, promise_default_s: int) -> Mapped:
    r = d.body
    order_id = text_id(need(r, "order_id"), "refund order_id")
    transactions = [t for t in r.get("transactions") or () if isinstance(t, dict) and t.get("status") != "failure"]
    total = sum((Decimal(decimal_text(t.get("amount", "0"), "refund amount")) for t in transactions), Decimal(0))
    currency = next((t.get("currency") for t in transactions if t.get("currency")), None)
    b = _builder(d, r)
    b.add("COMPENSATION_GIVEN", order_journey(d.shop, order_id),
          ms_of(r.get("processed_at") or r.get("created_at"), "refund created_at"),
          kind="refund", amount=decimal_text(total, "refund amount"), currency=currency,
          reason=r.get("note"), platform=PLATFORM)
    return b.mapped()


TOPICS: dict[str, Handler] = {
    "checkouts/create": _checkout_created,
    "checkouts/update": _checkout_updated,
    "orders/create": _order_created,
    "order_transactions/create": _transaction,
    "fulfillments/create": _fulfillment,
    "orders/fulfilled": _order_fulfilled,
    "refunds/create": _refund,
}


def map_delivery(delivery: Delivery, promise_default_s: int = 0) -> Mapped:
    """One Shopify delivery -> touchpoints; unknown topics -> `Mapped(ignored=...)`; MappingError if malformed."""
    return dispatch(TOPICS, delivery, promise_default_s, "topic")
