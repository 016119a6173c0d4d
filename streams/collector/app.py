"""The collector's HTTP face (aiohttp): routes, key check, limits, CORS. Kafka sits behind `Backend`.

    POST    /v1/touchpoints   one event or a JSON array of events -> per-event answer
    OPTIONS /v1/touchpoints   CORS preflight (configured web-shop origins only)
    GET     /healthz          200 when the broker answers, else 503 (for load balancers)
    GET     /journey.js       the browser snippet web shops include
    POST    /v1/webhooks/{shopify,square,woocommerce}, /v1/track   shop platforms (streams.platforms.routes)

Status codes: 200 all accepted; 207 some accepted, some rejected; 400 none accepted (or the
body is not JSON); 401 missing/unknown key; 403 browser origin not allowed; 413 body or batch
too large; 429 over the key's rate (Retry-After); 503 broker unreachable (Retry-After). A 2xx
is only sent once the broker acknowledged (acks=all) every accepted event.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from infra.base.config import Settings
from infra.base.login_throttle import LoginThrottle
from streams.collector.intake import BodyError, Checked, answer, check_events, parse_body
from streams.collector.limits import Access, RateLimiter
from streams.platforms.routes import add_platform_routes

STATIC = Path(__file__).parent / "static"
PATH = "/v1/touchpoints"
KEY_HEADER = "X-Journey-Key"
BROKER_RETRY_AFTER_S = 2
CORS_MAX_AGE_S = 600


class BrokerUnavailable(Exception):
    """The broker did not acknowledge the events in time (or refused them): answer 503."""


class Backend(Protocol):
    """What the HTTP layer needs from Kafka."""

    @property
    def broker_ok(self) -> bool: ...

    async def produce(self, checked: list[Checked]) -> None:
        """Return once the broker acknowledged every event; raise `BrokerUnavailable` otherwise."""


def _error(status: int, message: str, retry_after: int | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    headers = {}
    if retry_after is not None:
        body["retry_after_s"] = retry_after
        headers["Retry-After"] = str(retry_after)
    return web.json_response(body, status=status, headers=headers)


def _api_key(request: web.Request) -> str | None:
    # The header is the way; `?key=` exists because navigator.sendBeacon cannot set headers
    # (browser keys are public anyway: they sit in the web shop's page source).
    return request.headers.get(KEY_HEADER) or request.query.get("key") or None


def create_collector_app(settings: Settings, backend: Backend, access: Access, limiter: RateLimiter,
                         stats: Counter[str]) -> web.Application:
    """The aiohttp application of the collector; `stats` counts answers by status and events."""
    max_body = settings.collector_max_body_bytes
    throttle = LoginThrottle(logging.getLogger("journey.collector"))  # key guesses wait and are logged

    @web.middleware
    async def cors(request: web.Request, handler: Any) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if request.path == PATH and not access.origin_allowed(origin):
            # CORS alone only hides the answer from the page; refusing here keeps other sites'
            # pages from writing events at all.
            response: web.StreamResponse = _error(403, f"origin {(origin or '')[:200]} is not allowed: add it to "
                                                       "JOURNEY_COLLECTOR_ORIGINS")
        else:
            response = await handler(request)
        if request.path == PATH and origin is not None and access.origin_allowed(origin):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = "Retry-After"
            response.headers["Vary"] = "Origin"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    async def preflight(_: web.Request) -> web.Response:
        return web.Response(status=204, headers={
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": f"Content-Type, {KEY_HEADER}",
            "Access-Control-Max-Age": str(CORS_MAX_AGE_S),
        })

    async def touchpoints(request: web.Request) -> web.Response:
        response = await _touchpoints(request)
        stats[f"http_{response.status}"] += 1
        return response

    async def _touchpoints(request: web.Request) -> web.Response:
        source = access.source_of(_api_key(request))
        if source is None:
            await throttle.failed(request.remote or "?", "the collector", "API key")
            return _error(401, f"missing or unknown API key: send it in the {KEY_HEADER} header "
                               "(keys per source: JOURNEY_COLLECTOR_KEYS)")
        if request.content_length is not None and request.content_length > max_body:
            return _too_large(request.content_length, max_body)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _too_large(None, max_body)
        try:
            items = parse_body(body, settings.collector_max_batch)
        except BodyError as exc:
            return _error(exc.status, str(exc))
        wait = limiter.take(source, len(items))
        if wait:
            return _error(429, f"source {source!r} is over its rate of {settings.collector_rate_per_s} events/s "
                               f"(JOURNEY_COLLECTOR_RATE_PER_S): retry in {wait} s", wait)
        checked = check_events(items, source, staff=source in settings.collector_staff_sources)
        valid = [c for c in checked if c.valid]
        if valid:
            try:
                if not backend.broker_ok:
                    raise BrokerUnavailable("the broker did not answer the last health check")
                await backend.produce(valid)
            except BrokerUnavailable as exc:
                return _error(503, f"Kafka is unreachable, nothing of this request is accepted ({exc}): "
                                   "retry the same request (duplicate event_ids are harmless)",
                              BROKER_RETRY_AFTER_S)
        status, result = answer(checked)
        stats["accepted"] += result["accepted"]
        stats["rejected"] += result["rejected"]
        return web.json_response(result, status=status, headers={"Cache-Control": "no-store"})

    async def healthz(_: web.Request) -> web.Response:
        ok = backend.broker_ok
        return web.json_response({"status": "ok" if ok else "broker unreachable",
                                  "broker": settings.bootstrap_servers}, status=200 if ok else 503)

    async def snippet(_: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "journey.js", headers={
            "Content-Type": "application/javascript; charset=utf-8", "Cache-Control": "public, max-age=300"})

    # client_max_size makes aiohttp stop reading at the limit (chunked bodies have no length).
    app = web.Application(middlewares=[cors], client_max_size=max_body)
    app.router.add_post(PATH, touchpoints)
    app.router.add_route("OPTIONS", PATH, preflight)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/journey.js", snippet)
    add_platform_routes(app, settings, backend, access, limiter, stats)  # type: ignore[arg-type]
    return app


def _too_large(size: int | None, limit: int) -> web.Response:
    actual = f"{size} bytes" if size is not None else "the body"
    return _error(413, f"{actual} is over the limit of {limit} bytes (JOURNEY_COLLECTOR_MAX_BODY_BYTES): "
                       "send smaller batches")
