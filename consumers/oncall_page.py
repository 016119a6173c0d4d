"""The live on-call page and its JSON API (aiohttp, served by the notifier).

    GET  /                                  the page (static; it holds no data itself)
    GET  /api/incidents                     open incidents, pipeline problems, recent alerts
    GET  /api/incidents/{id}                one open incident (404 unknown, 409 resolved)
    POST /api/incidents/{id}/ack|resolve    emit FAILURE_ACKNOWLEDGED / RECOVERY_RESOLVED ({"by", "note"})
    POST /api/groups/ack|resolve            the same for each open incident of a group ({"group", "by", "note"})

Every /api call needs the on-call token (`Authorization: Bearer ...` or `X-Journey-Token`).
The page keeps the token from its URL fragment (`/#token=...`), which browsers never send to
servers or put in Referer headers, and polls the API each second.
"""

from __future__ import annotations

import hmac
import logging
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from consumers.recovery_actions import ActionRefused
from infra.base.login_throttle import LoginThrottle

STATIC = Path(__file__).parent / "oncall_static"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class OnCallBackend(Protocol):
    token: str

    def page_state(self) -> dict[str, Any]: ...

    def incident_state(self, incident_id: str) -> dict[str, Any]: ...

    async def act(self, action: str, incident_id: str, by: str, note: str | None) -> dict[str, Any]: ...

    async def act_group(self, action: str, group_key: str, by: str, note: str | None) -> dict[str, Any]: ...


def _authorized(request: web.Request, token: str) -> bool:
    given = request.headers.get("X-Journey-Token") or request.headers.get("Authorization", "").removeprefix("Bearer ")
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())


def create_web_app(backend: OnCallBackend) -> web.Application:
    """The aiohttp application of the page and its API."""
    throttle = LoginThrottle(logging.getLogger("journey.oncall"))  # token guesses wait and are logged

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/api/") and not _authorized(request, backend.token):
            await throttle.failed(request.remote or "?", "the on-call API", "on-call token")
            response: web.StreamResponse = web.json_response(
                {"error": "missing or wrong on-call token: open the page as /#token=TOKEN "
                          "(JOURNEY_ONCALL_TOKEN, or the file $JOURNEY_HOME/oncall.token)"}, status=401)
        else:
            response = await handler(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    async def page(_: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "oncall.html")

    async def script(_: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "oncall.js")

    async def style(_: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "oncall.css")

    async def incidents(_: web.Request) -> web.Response:
        return web.json_response(backend.page_state())

    async def incident(request: web.Request) -> web.Response:
        try:
            return web.json_response(backend.incident_state(request.match_info["incident_id"]))
        except ActionRefused as exc:
            return web.json_response({"error": str(exc)}, status=exc.status)

    async def act(request: web.Request) -> web.Response:
        try:
            body = await request.json() if request.can_read_body else {}
        except ValueError:
            return web.json_response({"error": "the body must be JSON: {\"by\": NAME, \"note\": TEXT}"}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"error": "the body must be a JSON object"}, status=400)
        by = str(body.get("by") or "").strip()[:100]
        if not by:
            return web.json_response({"error": "say who acts: {\"by\": NAME}"}, status=400)
        note = str(body["note"])[:500] if body.get("note") else None
        action = request.match_info["action"]
        try:
            if "incident_id" in request.match_info:
                done = await backend.act(action, request.match_info["incident_id"], by, note)
            else:
                group = str(body.get("group") or "").strip()[:300]
                if not group:
                    return web.json_response({"error": "name the group: {\"group\": \"STORE/RULE\"}"}, status=400)
                done = await backend.act_group(action, group, by, note)
        except ActionRefused as exc:
            return web.json_response({"error": str(exc)}, status=exc.status)
        return web.json_response(done, status=202)

    app = web.Application(middlewares=[guard], client_max_size=64 * 1024)
    app.router.add_get("/", page)
    app.router.add_get("/oncall.js", script)
    app.router.add_get("/oncall.css", style)
    app.router.add_get("/api/incidents", incidents)
    app.router.add_get("/api/incidents/{incident_id}", incident)
    app.router.add_post("/api/incidents/{incident_id}/{action:ack|resolve}", act)
    app.router.add_post("/api/groups/{action:ack|resolve}", act)
    return app
