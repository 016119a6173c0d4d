"""The collector's platform endpoints: signature -> dedupe -> mapping -> touchpoints (or dead letter).

    POST /v1/webhooks/shopify       Shopify webhooks (X-Shopify-Hmac-Sha256)
    POST /v1/webhooks/square        Square notifications (x-square-hmacsha256-signature)
    POST /v1/webhooks/woocommerce   WooCommerce webhooks (X-WC-Webhook-Signature)
    POST /v1/track                  Segment-spec track/identify calls (the collector's API keys)

Answers: 404 platform not configured (no secret); 401 signature (or key) missing or wrong,
nothing produced; 200 produced, or acknowledged without a touchpoint (an unknown topic, a
status we do not map, a delivery seen before); 202 the payload could not be mapped and is in
the dead-letter topic with the reason; 503 the broker did not take it (the platform retries).

Deduplication happens in two layers. Here, a bounded memory of recent delivery ids answers a
retry 200 without producing it again (cheap, lost on restart). Below, every touchpoint's
event id is derived from the delivery id, so a retry this process does not remember (after a
restart, or two copies in flight at once) yields the same event ids, which the worker drops
as duplicates: a retried delivery never changes anything twice.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import InvalidOperation
from typing import Any, Protocol

from aiohttp import web

from infra.base.config import Settings
from streams.collector.intake import Checked, check_events
from streams.collector.limits import Access, RateLimiter
from streams.platforms import segment, shopify, square, woocommerce
from streams.platforms.common import Delivery, Mapped, MappingError, signature_ok

log = logging.getLogger("journey.collector.platforms")

SEEN_DELIVERIES = 100_000
WC_PING = re.compile(rb"webhook_id=\d{1,20}")
# What a mapping may raise on a payload of unexpected shape: all of it is the payload's fault.
MAPPING_FAILURES = (MappingError, ValueError, TypeError, KeyError, AttributeError, InvalidOperation)


class PlatformBackend(Protocol):
    """What these routes need from Kafka (the collector process implements it)."""

    @property
    def broker_ok(self) -> bool: ...

    async def produce(self, checked: list[Checked]) -> None: ...

    async def dead_letter(self, raw: bytes, reason: str, origin: str) -> None: ...


class DeliveryLog:
    """The most recent delivery ids seen (bounded): a retry of one is acknowledged, not produced."""

    def __init__(self, capacity: int = SEEN_DELIVERIES) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, key: str) -> bool:
        return key in self._seen

    def add(self, key: str) -> None:
        self._seen[key] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)


@dataclass(frozen=True)
class Platform:
    """One webhook platform: how its signature is checked and its delivery read."""

    name: str
    secret_env: str
    secret: str
    signed: Callable[[Mapping[str, str], bytes, str], bool]
    delivery: Callable[[Mapping[str, str], bytes], Delivery]
    mapper: Callable[[Delivery, int], Mapped]


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise MappingError(f"the body is not valid JSON ({exc})") from None


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if not value:
        raise MappingError(f"header {name} is missing")
    return value


def _shopify_delivery(headers: Mapping[str, str], body: bytes) -> Delivery:
    return Delivery(_header(headers, shopify.TOPIC_HEADER), _header(headers, shopify.DELIVERY_HEADER),
                    _header(headers, shopify.SHOP_HEADER), _json(body))


def _square_delivery(headers: Mapping[str, str], body: bytes) -> Delivery:
    data = _json(body)
    topic, event_id, merchant = square.envelope(data)
    return Delivery(topic, event_id, merchant, data)


def _woocommerce_delivery(headers: Mapping[str, str], body: bytes) -> Delivery:
    return Delivery(_header(headers, woocommerce.TOPIC_HEADER), _header(headers, woocommerce.DELIVERY_HEADER),
                    woocommerce.shop_of(headers.get(woocommerce.SOURCE_HEADER)), _json(body))


def platforms(settings: Settings) -> dict[str, Platform]:
    """The three webhook platforms with their configured secrets (empty: not configured)."""
    url = (settings.square_notification_url or "").encode()
    return {
        "shopify": Platform("shopify", "JOURNEY_SHOPIFY_WEBHOOK_SECRET", settings.shopify_webhook_secret,
                            lambda h, b, s: signature_ok(s, b, h.get(shopify.SIGNATURE_HEADER)),
                            _shopify_delivery, shopify.map_delivery),
        "square": Platform("square", "JOURNEY_SQUARE_SIGNATURE_KEY", settings.square_signature_key,
                           lambda h, b, s: signature_ok(s, url + b, h.get(square.SIGNATURE_HEADER)),
                           _square_delivery, square.map_delivery),
        "woocommerce": Platform("woocommerce", "JOURNEY_WOOCOMMERCE_WEBHOOK_SECRET",
                                settings.woocommerce_webhook_secret,
                                lambda h, b, s: signature_ok(s, b, h.get(woocommerce.SIGNATURE_HEADER)),
                                _woocommerce_delivery, woocommerce.map_delivery),
    }


def _answer(code: int, **body: Any) -> web.Response:
    return web.json_response(body, status=code, headers={"Cache-Control": "no-store"})


def _broker_down(exc: Exception) -> web.Response:
    return web.json_response({"error": f"Kafka is unreachable, nothing was accepted ({exc}): retry the delivery",
                              "retry_after_s": 2}, status=503, headers={"Retry-After": "2"})


class PlatformRoutes:
    """The request handlers; `stats` counts outcomes per platform (the collector's heartbeat shows them)."""

    def __init__(self, settings: Settings, backend: PlatformBackend, access: Access, limiter: RateLimiter,
                 stats: Counter[str]) -> None:
        self.settings, self.backend, self.access, self.limiter, self.stats = settings, backend, access, limiter, stats
        self.platforms = platforms(settings)
        self.seen = DeliveryLog()

    def count(self, platform: str, outcome: str, n: int = 1) -> None:
        self.stats[f"{platform}_{outcome}"] += n

    async def _body(self, request: web.Request) -> bytes | web.Response:
        limit = self.settings.collector_max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return _answer(413, error=f"the body is over the limit of {limit} bytes (JOURNEY_COLLECTOR_MAX_BODY_BYTES)")
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _answer(413, error=f"the body is over the limit of {limit} bytes (JOURNEY_COLLECTOR_MAX_BODY_BYTES)")

    async def webhook(self, request: web.Request) -> web.Response:
        platform = self.platforms[request.match_info["platform"]]
        if not platform.secret:
            self.count(platform.name, "not_configured")
            return _answer(404, error=f"{platform.name} webhooks are not configured: set {platform.secret_env}")
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        if (platform.name == "woocommerce" and WC_PING.fullmatch(body)
                and woocommerce.TOPIC_HEADER not in request.headers):
            # WooCommerce pings a new webhook's URL, unsigned, and refuses to save it unless 2xx.
            # The ping carries nothing but its id, so acknowledging it produces nothing.
            self.count(platform.name, "ping")
            return _answer(200, status="pong")
        if not platform.signed(request.headers, body, platform.secret):
            self.count(platform.name, "unauthorized")
            return _answer(401, error=f"missing or wrong {platform.name} signature: check {platform.secret_env}"
                                      + (" and JOURNEY_SQUARE_NOTIFICATION_URL" if platform.name == "square" else ""))
        origin = f"webhook:{platform.name}"
        try:
            delivery = platform.delivery(request.headers, body)
        except MAPPING_FAILURES as exc:
            return await self._dead_letter(platform.name, body, f"{platform.name} delivery unreadable: {exc}", origin)
        key = f"{platform.name}:{delivery.shop}:{delivery.delivery_id}"
        if key in self.seen:
            self.count(platform.name, "duplicate")
            return _answer(200, status="duplicate", delivery_id=delivery.delivery_id)
        try:
            mapped = platform.mapper(delivery, self.settings.platform_promise_s)
        except MAPPING_FAILURES as exc:
            reason = f"{platform.name} {delivery.topic} delivery {delivery.delivery_id}: {exc}"
            return await self._dead_letter(platform.name, body, reason, origin, key)
        response = await self._produce(platform.name, mapped, body, origin,
                                       f"{platform.name} {delivery.topic} delivery {delivery.delivery_id}")
        if response.status < 300:
            self.seen.add(key)
        return response

    async def _dead_letter(self, platform: str, raw: bytes, reason: str, origin: str,
                           key: str | None = None) -> web.Response:
        try:
            await self.backend.dead_letter(raw, reason, origin)
        except Exception as exc:  # noqa: BLE001 - the broker did not take it: the platform must retry
            return _broker_down(exc)
        if key is not None:
            self.seen.add(key)
        self.count(platform, "dead_lettered")
        log.warning("dead-lettered: %s", reason[:300])  # the reason names fields, never secrets or bodies
        return _answer(202, status="dead_lettered", reason=reason)

    async def _produce(self, platform: str, mapped: Mapped, raw: bytes, origin: str, what: str) -> web.Response:
        if mapped.ignored is not None:
            self.count(platform, "ignored")
            return _answer(200, status="ignored", reason=mapped.ignored)
        checked = check_events(mapped.events, platform)
        refused = [c.reason for c in checked if not c.valid]
        if refused:  # all or nothing: the delivery as a whole goes to the dead letters
            return await self._dead_letter(platform, raw, f"{what}: touchpoint refused: {refused[0]}", origin)
        try:
            if not self.backend.broker_ok:
                raise RuntimeError("the broker did not answer the last health check")
            await self.backend.produce(checked)
        except Exception as exc:  # noqa: BLE001 - BrokerUnavailable or the probe: answer 503
            return _broker_down(exc)
        self.count(platform, "produced")
        self.stats["platform_events"] += len(checked)
        return _answer(200, status="produced", event_ids=[c.event_id for c in checked])

    async def track(self, request: web.Request) -> web.Response:
        """Segment-spec calls, authenticated by the collector's API keys (header, or Basic auth as Segment sends)."""
        source = self.access.source_of(_segment_key(request))
        if source is None:
            self.count("segment", "unauthorized")
            return _answer(401, error="missing or unknown API key: send it in X-Journey-Key or as the Basic auth "
                                      "user (keys per source: JOURNEY_COLLECTOR_KEYS)")
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        try:
            messages = segment.messages_of(_json(body), self.settings.collector_max_batch)
        except MappingError as exc:
            return _answer(400, error=str(exc))
        wait = self.limiter.take(source, len(messages))
        if wait:
            return web.json_response({"error": f"source {source!r} is over its rate (JOURNEY_COLLECTOR_RATE_PER_S)",
                                      "retry_after_s": wait}, status=429, headers={"Retry-After": str(wait)})
        outcome: Counter[str] = Counter()
        events: list[dict[str, Any]] = []
        keys: list[str] = []
        for message in messages:
            mid = segment.message_key(message)
            key = f"segment:{source}:{mid}"
            if mid is not None and (key in self.seen or key in keys):
                outcome["duplicate"] += 1
                continue
            try:
                mapped = segment.map_message(message, source, self.settings.platform_promise_s)
                checked = check_events(mapped.events, "segment")
                refused = next((c.reason for c in checked if not c.valid), None)
                if refused is not None:
                    raise MappingError(f"touchpoint refused: {refused}")
            except MAPPING_FAILURES as exc:
                response = await self._dead_letter("segment", json.dumps(message).encode(),
                                                   f"segment call {mid}: {exc}", "track:segment", key if mid else None)
                if response.status >= 500:
                    return response
                outcome["dead_lettered"] += 1
                continue
            outcome["ignored" if mapped.ignored else "produced"] += 1
            events += mapped.events
            if mid is not None:
                keys.append(key)
        if events:
            response = await self._produce("segment", Mapped(events), body, "track:segment", "segment batch")
            if response.status >= 300:
                return response
        for key in keys:
            self.seen.add(key)
        for name, n in outcome.items():
            self.count("segment", name, n)
        return _answer(200, accepted=len(events), **outcome)


def _segment_key(request: web.Request) -> str | None:
    key = request.headers.get("X-Journey-Key")
    auth = request.headers.get("Authorization", "")
    if not key and auth.lower().startswith("basic "):
        try:
            key = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8").partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            return None
    return key or None


def add_platform_routes(app: web.Application, settings: Settings, backend: PlatformBackend, access: Access,
                        limiter: RateLimiter, stats: Counter[str]) -> None:
    """Register the platform endpoints on the collector's app."""
    routes = PlatformRoutes(settings, backend, access, limiter, stats)
    app.router.add_post("/v1/webhooks/{platform:shopify|square|woocommerce}", routes.webhook)
    app.router.add_post("/v1/track", routes.track)
