"""The local stack's schema registry: Confluent's Schema Registry API over our schemas.

    python -m infra.local.schema_registry_server      (started by `journey up` unless SCHEMA_REGISTRY_URL is set)

Serves `schemas/registry.json` under `<topic>-value` subjects, and keeps the versions producers
register (compatible both ways with the subject's latest, as `journey schemas check` demands) in
`$JOURNEY_HOME/schema-registry.json`, so their ids are permanent. Binds to JOURNEY_HOST.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from infra.base.config import Settings
from infra.base.schema_registry import topic_subjects
from infra.local.processes import write_private
from schemas.registry import RegisteredSchema, Registry, load_registry
from schemas.registry_api import CONTENT_TYPE, RegistryApi, Response

log = logging.getLogger("journey.schema_registry")


def state_file(settings: Settings) -> Path:
    return settings.home.resolve() / "schema-registry.json"


def load(settings: Settings) -> Registry:
    """Our shipped versions, then those registered through the API before."""
    registry = load_registry()
    path = state_file(settings)
    if path.is_file():
        for item in json.loads(path.read_text()):
            registry.register(int(item["id"]), item["subject"], int(item["version"]), item["schema"])
    return registry


def saver(settings: Settings) -> Callable[[RegisteredSchema], None]:
    def save(entry: RegisteredSchema) -> None:
        path = state_file(settings)
        items = json.loads(path.read_text()) if path.is_file() else []
        items.append({"id": entry.id, "subject": entry.subject, "version": entry.version, "schema": entry.raw})
        write_private(path, json.dumps(items, indent=1))  # all at once: written beside it and renamed
        log.info("registered %s version %d as id %d", entry.subject, entry.version, entry.id)
    return save


def _reply(result: Response) -> web.Response:
    status, body = result
    return web.Response(status=status, text=json.dumps(body), content_type=CONTENT_TYPE)


def create_app(api: RegistryApi) -> web.Application:
    """The HTTP routes Confluent's clients call, each answered by `api`."""

    async def body_of(request: web.Request) -> Any:
        try:
            return await request.json(loads=json.loads)
        except ValueError:
            return None

    def sid(request: web.Request) -> int:
        try:
            return int(request.match_info["id"])
        except ValueError:
            raise web.HTTPNotFound() from None

    async def root(_request: web.Request) -> web.Response:
        return _reply((200, {}))

    async def schema(request: web.Request) -> web.Response:
        return _reply(api.schema_by_id(sid(request)))

    async def id_versions(request: web.Request) -> web.Response:
        return _reply(api.versions_of_id(sid(request)))

    async def id_subjects(request: web.Request) -> web.Response:
        status, body = api.versions_of_id(sid(request))
        return _reply((status, [v["subject"] for v in body] if status == 200 else body))

    async def subjects(_request: web.Request) -> web.Response:
        return _reply(api.list_subjects())

    async def versions(request: web.Request) -> web.Response:
        return _reply(api.list_versions(request.match_info["subject"]))

    async def version(request: web.Request) -> web.Response:
        return _reply(api.get_version(request.match_info["subject"], request.match_info["version"]))

    async def version_schema(request: web.Request) -> web.Response:
        status, body = api.get_version(request.match_info["subject"], request.match_info["version"])
        return _reply((status, json.loads(body["schema"]) if status == 200 else body))

    async def lookup(request: web.Request) -> web.Response:
        return _reply(api.lookup(request.match_info["subject"], await body_of(request)))

    async def register(request: web.Request) -> web.Response:
        return _reply(api.register(request.match_info["subject"], await body_of(request)))

    async def compatibility(request: web.Request) -> web.Response:
        verbose = request.query.get("verbose", "").lower() == "true"
        return _reply(api.compatibility(request.match_info["subject"], request.match_info.get("version", "latest"),
                                        await body_of(request), verbose))

    async def config(request: web.Request) -> web.Response:
        return _reply(api.config(request.match_info.get("subject")))

    async def fixed(_request: web.Request) -> web.Response:
        # ids are permanent and the compatibility level is what the tracker needs: neither changes here
        return _reply((405, {"error_code": 405, "message": "schemas are permanent and compatibility is FULL here"}))

    @web.middleware
    async def confluent_errors(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)  # type: ignore[no-any-return]
        except web.HTTPException as exc:  # unknown route or method: Confluent's error shape
            return _reply((exc.status, {"error_code": exc.status, "message": f"HTTP {exc.status} {exc.reason}"}))

    app = web.Application(middlewares=[confluent_errors], client_max_size=1 << 20)
    add = app.router.add_route
    add("GET", "/", root)
    add("GET", "/schemas/ids/{id}", schema)
    add("GET", "/schemas/ids/{id}/versions", id_versions)
    add("GET", "/schemas/ids/{id}/subjects", id_subjects)
    add("GET", "/subjects", subjects)
    add("GET", "/subjects/{subject}/versions", versions)
    add("POST", "/subjects/{subject}/versions", register)
    add("GET", "/subjects/{subject}/versions/{version}", version)
    add("GET", "/subjects/{subject}/versions/{version}/schema", version_schema)
    add("POST", "/subjects/{subject}", lookup)
    add("POST", "/compatibility/subjects/{subject}/versions/{version}", compatibility)
    add("POST", "/compatibility/subjects/{subject}/versions", compatibility)
    add("GET", "/config", config)
    add("GET", "/config/{subject}", config)
    for path in ("/config", "/config/{subject}"):
        add("PUT", path, fixed)
    for path in ("/subjects/{subject}", "/subjects/{subject}/versions/{version}"):
        add("DELETE", path, fixed)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The stack's schema registry (Confluent API)")
    parser.add_argument("--host", help="address to bind (default: JOURNEY_HOST)")
    parser.add_argument("--port", type=int, help="port (default: JOURNEY_SCHEMA_REGISTRY_PORT)")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    settings = settings.with_(host=args.host or settings.host,
                              schema_registry_port=args.port or settings.schema_registry_port)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    api = RegistryApi(load(settings), topic_subjects(settings), saver(settings))
    app = create_app(api)
    log.info("schema registry on http://%s:%d", settings.host, settings.schema_registry_port)
    web.run_app(app, host=settings.host, port=settings.schema_registry_port, access_log=None, print=None)


if __name__ == "__main__":
    main()
