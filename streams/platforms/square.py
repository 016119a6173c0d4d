"""Square webhooks -> touchpoints (pure).

Every notification is an envelope `{merchant_id, type, event_id, created_at, data: {type, id,
object}}`; `event_id` is the same on every retry. Signature: header
`x-square-hmacsha256-signature` = base64(HMAC-SHA256(signature key, notification URL + raw
body)), the URL exactly as registered in the Square developer console.

Journeys: `square:MERCHANT:order:ORDER_ID` (a payment without an order: `...:payment:ID`).
Amounts come in the currency's smallest unit (`amount_money.amount`, cents or yen) and are
converted to currency units. Square is mostly point of sale: the channel is `pos` unless the
payment says it came from Square's online products.
"""

from __future__ import annotations

from typing import Any

from streams.platforms.common import (
    Builder,
    Delivery,
    Handler,
    Mapped,
    MappingError,
    dispatch,
    minor_units,
    ms_of,
    need,
    promise_s,
    short_id,
    text_id,
)

PLATFORM = "square"
SIGNATURE_HEADER = "x-square-hmacsha256-signature"
ONLINE_PRODUCTS = frozenset({"ECOMMERCE_API", "ONLINE_STORE", "INVOICES", "CHECKOUT_LINK"})
SERVED_STATES = frozenset({"PREPARED", "COMPLETED"})


def order_journey(merchant: str, order_id: str) -> str:
    return short_id(PLATFORM, merchant, "order", order_id)


def _object(d: Delivery, name: str) -> dict[str, Any]:
    obj = need(d.body, "data", "object", name)
    if not isinstance(obj, dict):
        raise MappingError(f"field data.object.{name} must be an object")
    return obj


def _money(obj: dict[str, Any], field: str) -> tuple[str, str | None]:
    money = obj.get(field) or {}
    currency = money.get("currency")
    return minor_units(money.get("amount", 0), currency, f"{field}.amount"), currency


def _customer(merchant: str, obj: dict[str, Any]) -> str | None:
    return short_id(PLATFORM, merchant, "customer", obj["customer_id"]) if obj.get("customer_id") else None


def _payment(d: Delivery, promise_default_s: int) -> Mapped:
    p = _object(d, "payment")
    status = p.get("status")
    if status not in ("FAILED", "COMPLETED"):
        return Mapped(ignored=f"payment status {status}")
    pid = text_id(need(p, "id"), "payment id")
    journey = (order_journey(d.shop, str(p["order_id"])) if p.get("order_id")
               else short_id(PLATFORM, d.shop, "payment", pid))
    product = (p.get("application_details") or {}).get("square_product")
    b = Builder(PLATFORM, d.delivery_id, p.get("location_id"), "web" if product in ONLINE_PRODUCTS else "pos")
    amount, currency = _money(p, "amount_money")
    b.add("PAYMENT_FAILED" if status == "FAILED" else "PAYMENT_SUCCEEDED", journey,
          ms_of(p.get("updated_at") or p.get("created_at"), "payment updated_at"), _customer(d.shop, p),
          amount=amount, currency=currency, payment_id=pid, platform=PLATFORM)
    return b.mapped()


def _order_created(d: Delivery, promise_default_s: int) -> Mapped:
    o = _object(d, "order_created")
    order_id = text_id(need(o, "order_id"), "order_id")
    if o.get("state") != "OPEN":  # a counter sale is COMPLETED at once: nothing to wait for
        return Mapped(ignored=f"order created {o.get('state')}")
    b = Builder(PLATFORM, d.delivery_id, o.get("location_id"), "pos")
    b.add("ORDER_PLACED", order_journey(d.shop, order_id), ms_of(need(o, "created_at"), "order created_at"),
          request_id=order_id, promised_within_s=promise_s(default_s=promise_default_s), platform=PLATFORM)
    return b.mapped()


def _served(d: Delivery, o: dict[str, Any], what: str) -> Mapped:
    order_id = text_id(need(o, "order_id"), "order_id")
    b = Builder(PLATFORM, d.delivery_id, o.get("location_id"), "pos")
    b.add("ORDER_SERVED", order_journey(d.shop, order_id), ms_of(need(o, "updated_at"), f"{what} updated_at"),
          request_id=order_id, platform=PLATFORM)
    return b.mapped()


def _order_updated(d: Delivery, promise_default_s: int) -> Mapped:
    """An order COMPLETED (paid, every fulfilment done) is served: counter sales have no fulfilment."""
    o = _object(d, "order_updated")
    if o.get("state") != "COMPLETED":
        return Mapped(ignored=f"order state {o.get('state')}")
    return _served(d, o, "order")


def _fulfillment_updated(d: Delivery, promise_default_s: int) -> Mapped:
    o = _object(d, "order_fulfillment_updated")
    updates = o.get("fulfillment_update") or []
    if not any(isinstance(u, dict) and u.get("new_state") in SERVED_STATES for u in updates):
        return Mapped(ignored="fulfilment not prepared or completed")
    return _served(d, o, "fulfilment")


def _refund(d: Delivery, promise_default_s: int) -> Mapped:
    r = _object(d, "refund")
    order_id = r.get("order_id")
    journey = (order_journey(d.shop, str(order_id)) if order_id
               else short_id(PLATFORM, d.shop, "payment", text_id(need(r, "payment_id"), "refund payment_id")))
    amount, currency = _money(r, "amount_money")
    b = Builder(PLATFORM, d.delivery_id, r.get("location_id"), "pos")
    b.add("COMPENSATION_GIVEN", journey, ms_of(r.get("created_at") or d.body.get("created_at"), "refund created_at"),
          kind="refund", amount=amount, currency=currency, reason=r.get("reason"), platform=PLATFORM)
    return b.mapped()


TOPICS: dict[str, Handler] = {
    "payment.created": _payment,
    "payment.updated": _payment,
    "order.created": _order_created,
    "order.updated": _order_updated,
    "order.fulfillment.updated": _fulfillment_updated,
    "refund.created": _refund,
}


def map_delivery(delivery: Delivery, promise_default_s: int = 0) -> Mapped:
    """One Square notification -> touchpoints; unknown types -> `Mapped(ignored=...)`; MappingError if malformed."""
    return dispatch(TOPICS, delivery, promise_default_s, "event type")


def envelope(body: Any) -> tuple[str, str, str]:
    """(type, event_id, merchant_id) of a notification; MappingError when one is missing."""
    if not isinstance(body, dict):
        raise MappingError("a Square notification must be a JSON object")
    return (text_id(body.get("type"), "type"), text_id(body.get("event_id"), "event_id"),
            text_id(body.get("merchant_id"), "merchant_id"))
