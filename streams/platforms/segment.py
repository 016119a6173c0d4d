"""Segment-spec calls (`track` v2 ecommerce events, `identify`) -> touchpoints (pure).

Sites instrumented for Segment or RudderStack point a webhook destination at `POST /v1/track`.
A call is one message or `{"batch": [messages]}`; `messageId` is the delivery id (the same on
every retry). Journeys are `segment:SOURCE:order:ORDER_ID` (SOURCE: the collector API key's
source). The customer is `userId` (as the shop itself names its customers, so it joins their
POS touchpoints), else `anon:` + `anonymousId`. `identify` produces nothing: analytics.js and
RudderStack put the identified `userId` on every later call, which is where we read it.
"""

from __future__ import annotations

from typing import Any

from streams.platforms.common import Builder, Mapped, MappingError, decimal_text, ms_of, promise_s, short_id, text_id

PLATFORM = "segment"
CHECKOUT_STEPS = frozenset({"Checkout Started", "Checkout Step Viewed", "Checkout Step Completed",
                            "Payment Info Entered"})
SERVED = frozenset({"Order Shipped", "Order Fulfilled", "Order Delivered"})  # custom: not in the v2 spec


def messages_of(body: Any, max_batch: int) -> list[Any]:
    """The calls of a request body: one message or a `batch` of them."""
    if isinstance(body, dict) and isinstance(body.get("batch"), list):
        messages = body["batch"]
    elif isinstance(body, dict):
        messages = [body]
    else:
        raise MappingError("a Segment call must be a JSON object (or {\"batch\": [...]})")
    if len(messages) > max_batch:
        raise MappingError(f"the batch has {len(messages)} calls, more than {max_batch} (JOURNEY_COLLECTOR_MAX_BATCH)")
    return messages


def _amount(props: dict[str, Any]) -> str | None:
    for name in ("total", "revenue", "value"):
        if props.get(name) not in (None, ""):
            return decimal_text(props[name], f"properties.{name}")
    return None


def map_message(message: Any, source: str, promise_default_s: int = 0) -> Mapped:
    """One Segment call -> touchpoints; calls we do not map -> `Mapped(ignored=...)`; MappingError if malformed."""
    if not isinstance(message, dict):
        raise MappingError("a Segment call must be a JSON object")
    kind = message.get("type")
    if kind != "track":
        return Mapped(ignored=f"{kind} calls produce no touchpoint")
    name = message.get("event")
    mapped = name in CHECKOUT_STEPS or name in SERVED or name in (
        "Order Completed", "Order Refunded", "Payment Failed")
    if not mapped:
        return Mapped(ignored=f"track event {name!r} is not mapped")
    message_id = text_id(message.get("messageId"), "messageId")
    props = message.get("properties") or {}
    if not isinstance(props, dict):
        raise MappingError("properties must be an object")
    order_id = text_id(props.get("order_id") or props.get("checkout_id"), "properties.order_id")
    at = ms_of(message.get("timestamp") or message.get("originalTimestamp"), "timestamp")
    user = message.get("userId")
    customer = str(user) if user not in (None, "") else (
        f"anon:{message['anonymousId']}" if message.get("anonymousId") else None)
    context = message.get("context") if isinstance(message.get("context"), dict) else {}
    b = Builder(PLATFORM, message_id, str(props.get("affiliation") or source), "app" if context.get("app") else "web")
    journey = short_id(PLATFORM, source, "order", order_id)
    money = {"amount": _amount(props), "currency": props.get("currency"), "platform": PLATFORM}
    if name in CHECKOUT_STEPS:  # every step names the same request: only the first opens the watch
        b.add("CHECKOUT_STARTED", journey, at, customer, request_id=order_id, step=name, **money)
    elif name == "Order Completed":
        b.add("CHECKOUT_COMPLETED", journey, at, customer, request_id=order_id, platform=PLATFORM)
        b.add("PAYMENT_SUCCEEDED", journey, at, customer, **money)
        promise = promise_s(props.get("promised_within_s"), default_s=promise_default_s)
        if promise is not None:  # the v2 spec has no shipping event: watch only a promise the site states
            b.add("ORDER_PLACED", journey, at, customer, request_id=order_id, promised_within_s=promise, **money)
    elif name == "Payment Failed":
        b.add("PAYMENT_FAILED", journey, at, customer, **money)
    elif name in SERVED:
        b.add("ORDER_SERVED", journey, at, customer, request_id=order_id, platform=PLATFORM)
    else:  # Order Refunded
        b.add("COMPENSATION_GIVEN", journey, at, customer, kind="refund", **money)
    return b.mapped()


def message_key(message: Any) -> str | None:
    """The dedupe key of a call (its messageId), when it has one."""
    return str(message["messageId"]) if isinstance(message, dict) and message.get("messageId") else None

