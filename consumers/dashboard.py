"""The managers' dashboard on the notifier's web server (read-only).

    GET /dashboard                      the page (static; it holds no data)
    GET /dashboard/static/NAME          its script, style and the vendored Chart.js (an allow-list)
    GET /dashboard/api/report           the report as JSON: ?from=YYYY-MM-DD&to=YYYY-MM-DD&store=S

The API needs the read-only manager token (JOURNEY_MANAGER_TOKEN) or the on-call token, as
`X-Journey-Token` or `Authorization: Bearer`; the page keeps it from its URL fragment
(`/dashboard#token=...`). Without dates the range is the 4 weeks up to the newest data.
ClickHouse is read with the read-only user when one is configured.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
from typing import Any

from aiohttp import web

from consumers.html_report import ASSET_TYPES, STATIC, bundle, served_page
from consumers.insight_queries import newest_ms, stores_in
from consumers.report import recovery_report, report_window, store_timezones
from infra.base.clickhouse import get_client
from infra.base.config import Settings
from infra.base.errors import JourneyError

DEFAULT_RANGE = "28d"
_dumps = functools.partial(json.dumps, default=str)


def _token_ok(request: web.Request, tokens: list[str]) -> bool:
    given = request.headers.get("X-Journey-Token") or request.headers.get("Authorization", "").removeprefix("Bearer ")
    return bool(given) and any(hmac.compare_digest(given.encode(), t.encode()) for t in tokens if t)


class DashboardData:
    """Builds the report for a request; one ClickHouse client, one query at a time."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Any = None
        self._lock = asyncio.Lock()

    def _connect(self) -> Any:
        s = self.settings
        if s.clickhouse_readonly_user:
            return get_client(s.clickhouse_url, s.clickhouse_readonly_user, s.clickhouse_readonly_password)
        return get_client(s.clickhouse_url, s.clickhouse_user, s.clickhouse_password)

    def build(self, date_from: str | None, date_to: str | None, store: str | None) -> dict[str, Any]:
        if self._client is None:
            self._client = self._connect()
        client = self._client
        newest = newest_ms(client)
        window = report_window(DEFAULT_RANGE, date_from, date_to, store, newest, at_newest=newest is not None)
        report = recovery_report(client, window, store_timezones(self.settings.stores_file),
                                 self.settings.rules_file, self.settings.sla_goal)
        title = f"Service recovery, {window.describe()}"
        return {**bundle(report, title), "title": title, "stores": stores_in(client, window.params())}

    async def __call__(self, date_from: str | None, date_to: str | None, store: str | None) -> dict[str, Any]:
        async with self._lock:
            try:
                return await asyncio.to_thread(self.build, date_from, date_to, store)
            except Exception:
                self._client = None  # reconnect next time (ClickHouse restarted, credentials changed)
                raise


def add_dashboard(app: web.Application, settings: Settings, oncall_token: str) -> web.Application:
    """Register the dashboard's routes on the notifier's web application (returned)."""
    tokens = [oncall_token, settings.manager_token]
    data = DashboardData(settings)

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=served_page(), content_type="text/html")

    async def asset(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in ASSET_TYPES:
            raise web.HTTPNotFound()
        return web.FileResponse(STATIC / name, headers={"Content-Type": ASSET_TYPES[name]})

    async def report(request: web.Request) -> web.Response:
        if not _token_ok(request, tokens):
            return web.json_response({"error": "missing or wrong token: open /dashboard#token=TOKEN with the "
                                               "manager token (JOURNEY_MANAGER_TOKEN) or the on-call token"},
                                     status=401)
        q = request.query
        try:
            body = await data(q.get("from") or None, q.get("to") or None, q.get("store") or None)
        except JourneyError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        except Exception as exc:  # ClickHouse down or refusing: say so, keep serving
            return web.json_response({"error": f"ClickHouse did not answer: {type(exc).__name__}"}, status=503)
        return web.json_response(body, dumps=_dumps)

    app.router.add_get("/dashboard", page)
    app.router.add_get("/dashboard/static/{name:.+}", asset)
    app.router.add_get("/dashboard/api/report", report)
    return app
