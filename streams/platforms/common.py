"""What every platform mapping shares: signatures, derived ids, amounts, the touchpoint builder.

Ids are derived, never random, so the same delivery always becomes the same touchpoints:

- journey id = platform + shop + the platform's own order id (or checkout token), so a
  fulfilment or refund that names only the order lands in the order's journey without any
  lookup table, in this process or after a restart;
- event id = platform + the delivery's id + the touchpoint's position in the delivery: a
  delivery retried hours later yields the same event ids, which the worker deduplicates.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from schemas.contract import MAX_ID_LEN, MAX_PROMISE_S, iso_from_ms

# Currencies whose smallest unit is not a hundredth (ISO 4217 minor units); the rest have 2.
_MINOR_UNITS = {"BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
                "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
                "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3}


class MappingError(ValueError):
    """The payload cannot be mapped (a field missing or malformed): it is dead-lettered with this reason."""


@dataclass(frozen=True)
class Delivery:
    """One webhook delivery as the collector received it, after its signature was verified."""

    topic: str  # the platform's event name (Shopify topic, Square type, WooCommerce topic)
    delivery_id: str  # the platform's id of this delivery / event: the same on every retry
    shop: str  # the shop (domain, merchant id, site URL)
    body: Any  # the parsed JSON payload


@dataclass
class Mapped:
    """What a delivery became: touchpoints (JSON form) or nothing (`ignored` says why)."""

    events: list[dict[str, Any]] = field(default_factory=list)
    ignored: str | None = None


Handler = Callable[[Delivery, int], Mapped]  # (delivery, default promise s) -> touchpoints


def dispatch(handlers: Mapping[str, Handler], delivery: Delivery, promise_default_s: int, what: str) -> Mapped:
    """The handler of the delivery's topic applied to it; unknown topics -> `Mapped(ignored=...)`."""
    handler = handlers.get(delivery.topic)
    if handler is None:
        return Mapped(ignored=f"{what} {delivery.topic!r} is not mapped")
    if not isinstance(delivery.body, dict):
        raise MappingError(f"a {delivery.topic} payload must be a JSON object")
    return handler(delivery, promise_default_s)


def signature_ok(secret: str, message: bytes, signature: str | None) -> bool:
    """True when `signature` is base64(HMAC-SHA256(secret, message)); compared in constant time."""
    if not signature:
        return False
    expected = base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest())
    return hmac.compare_digest(expected, signature.strip().encode("ascii", "replace"))


def sign(secret: str, message: bytes) -> str:
    """The signature `signature_ok` accepts (what the platforms send; used by tests and the bench)."""
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def short_id(*parts: object) -> str:
    """`a:b:c`, or a hash of it when that is longer than an id may be."""
    text = ":".join(str(p) for p in parts)
    if len(text) <= MAX_ID_LEN:
        return text
    return f"{parts[0]}:{hashlib.sha256(text.encode()).hexdigest()[:40]}"


def email_id(platform: str, shop: str, email: str | None) -> str | None:
    """A guest customer's id from their email, hashed: no address in ids, topics or ClickHouse."""
    if not email:
        return None
    return short_id(platform, shop, "email", hashlib.sha256(email.strip().lower().encode()).hexdigest()[:24])


def ms_of(value: Any, what: str) -> int:
    """A platform timestamp (ISO-8601; naive ones are UTC, as WooCommerce's *_gmt fields) -> epoch ms."""
    if not isinstance(value, str) or not value:
        raise MappingError(f"{what} is missing or not a timestamp string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise MappingError(f"{what} {value[:60]!r} is not an ISO-8601 timestamp") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(round(parsed.timestamp() * 1000))


def decimal_text(value: Any, what: str) -> str:
    """A decimal amount (string or number) as a plain decimal string."""
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise MappingError(f"{what} {str(value)[:40]!r} is not a number") from None
    if not amount.is_finite():
        raise MappingError(f"{what} {value!r} is not a finite number")
    return format(amount.normalize(), "f")


def minor_units(amount: Any, currency: str | None, what: str) -> str:
    """An amount in the currency's smallest unit (Square: cents, yen) -> currency units as a decimal string."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise MappingError(f"{what} must be an integer in the currency's smallest unit, got {amount!r}")
    exponent = _MINOR_UNITS.get((currency or "").upper(), 2)
    return format((Decimal(amount) / (Decimal(10) ** exponent)).normalize(), "f")


def promise_s(seconds: Any = None, until_ms: int | None = None, from_ms: int | None = None,
              default_s: int = 0) -> int | None:
    """The promise of an order: given seconds, or a promised time minus the order's, or the default.

    Out-of-range promises are clamped to what the contract allows rather than refusing the order.
    """
    value: int | None = None
    if seconds not in (None, ""):
        try:
            value = int(Decimal(str(seconds)))
        except (InvalidOperation, ValueError):
            raise MappingError(f"promise {str(seconds)[:40]!r} is not a number of seconds") from None
    elif until_ms is not None and from_ms is not None:
        value = (until_ms - from_ms) // 1000
    elif default_s > 0:
        value = default_s
    if value is None:
        return None
    return min(max(value, 1), MAX_PROMISE_S)


class Builder:
    """Builds one delivery's touchpoints with event ids `platform:delivery:n`."""

    def __init__(self, platform: str, delivery_id: str, store_id: str | None, channel: str) -> None:
        self.platform, self.delivery_id = platform, delivery_id
        self.store_id, self.channel = store_id, channel
        self.events: list[dict[str, Any]] = []

    def add(self, type_: str, journey_id: str, at_ms: int, customer_id: str | None = None,
            request_id: str | None = None, promised_within_s: int | None = None,
            **attrs: Any) -> dict[str, Any]:
        event: dict[str, Any] = {
            "event_id": short_id(self.platform, self.delivery_id, len(self.events)),
            "journey_id": journey_id, "type": type_, "channel": self.channel,
            "occurred_at": iso_from_ms(at_ms),
            "attrs": {k: str(v)[:1024] for k, v in attrs.items() if v not in (None, "")},
        }
        for name, value in (("customer_id", customer_id), ("store_id", self.store_id),
                            ("request_id", request_id), ("promised_within_s", promised_within_s)):
            if value is not None:
                event[name] = value
        self.events.append(event)
        return event

    def mapped(self) -> Mapped:
        return Mapped(self.events)


def need(obj: Any, *path: str) -> Any:
    """`obj[path[0]][path[1]]...`, or MappingError naming the missing field."""
    here = obj
    for i, name in enumerate(path):
        if not isinstance(here, dict) or here.get(name) in (None, ""):
            raise MappingError(f"field {'.'.join(path[:i + 1])} is missing")
        here = here[name]
    return here


def text_id(value: Any, what: str) -> str:
    """A platform id (number or string) as a non-empty string."""
    if isinstance(value, bool) or value is None or (not isinstance(value, str | int)) or value == "":
        raise MappingError(f"{what} is missing or not an id")
    return str(value)
