"""ClickHouse's HTTP interface in front of the chDB engine (data on disk), for the local stack.

    python -m infra.clickhouse_server --host 127.0.0.1 --port 8123 --data-dir .journey/clickhouse

Why aiohttp plus one worker thread: chDB runs in-process and its session is not safe for
concurrent use, so every statement runs on a single executor thread (serialised, never
interleaved), while the event loop keeps accepting and reading requests (chunked, compressed
bodies) concurrently. Per-request state (database, settings) is set before a statement and
reset after it inside that same thread, so one request never sees another's settings.

Passwords come from CLICKHOUSE_PASSWORD / CLICKHOUSE_READONLY_PASSWORD (not argv: `ps` shows
argv) and are never logged.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from infra.clickhouse_http import (
    VERSION,
    ParsedRequest,
    RequestError,
    check_access,
    decompress_body,
    error_body,
    http_status,
    insert_statement,
    parse_request,
    quote_literal,
    result_format,
    split_engine_error,
)

log = logging.getLogger("journey.clickhouse")

@dataclass(frozen=True)
class User:
    name: str
    password: str
    readonly: bool


class Engine:
    """The chDB session, used only from one thread."""

    def __init__(self, data_dir: Path) -> None:
        from chdb import session

        data_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir = Path(tempfile.mkdtemp(prefix="inserts-", dir=data_dir))
        self.session = session.Session(str(data_dir / "db"))

    def run(self, req: ParsedRequest) -> tuple[bytes, dict[str, int], str]:
        """Execute one request; returns (body, counters, format). Raises RequestError."""
        from chdb import ChdbError

        applied: list[str] = []
        try:
            self._exec(f"USE {_ident(req.database)}")
            for name, value in req.settings.items():
                self._exec(f"SET {name} = {quote_literal(value)}")
                applied.append(name)
            if req.insert_target is not None:
                return b"", self._insert(req), req.output_format
            result = self.session.query(req.sql, req.output_format, params=req.params or None)
            counters = {
                "read_rows": result.rows_read(), "read_bytes": result.bytes_read(),
                "result_rows": result.rows_read(), "result_bytes": len(result.bytes()),
            }
            return result.bytes(), counters, result_format(req.sql, req.output_format)
        except (ChdbError, RuntimeError) as exc:
            code, message = split_engine_error(str(exc))
            raise RequestError(code, "", message) from None
        finally:
            for name in applied:
                try:
                    self._exec(f"SET {name} = DEFAULT")
                except (ChdbError, RuntimeError):
                    log.warning("could not reset setting %s", name)

    def _exec(self, sql: str) -> None:
        self.session.query(sql, "TabSeparated")

    def _insert(self, req: ParsedRequest) -> dict[str, int]:
        # chDB has no stdin for INSERT ... FORMAT X: the payload goes through a file.
        path = self.tmp_dir / f"{uuid.uuid4().hex}.{req.insert_format}"
        path.write_bytes(req.insert_data)
        try:
            result = self.session.query(
                insert_statement(req.insert_target or "", str(path), req.insert_format or "Native"),
                "TabSeparated", params=req.params or None,
            )
        finally:
            path.unlink(missing_ok=True)
        return {"written_rows": result.rows_written(), "written_bytes": result.bytes_written()}

    def close(self) -> None:
        self.session.close()


def _ident(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


class Endpoint:
    """aiohttp handlers: authentication, parsing, execution on the engine thread, responses."""

    def __init__(self, engine: Engine, users: dict[str, User]) -> None:
        self.engine = engine
        self.users = users
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chdb")

    async def ping(self, request: web.Request) -> web.Response:
        return web.Response(text="Ok.\n")

    async def handle(self, request: web.Request) -> web.Response:
        query_id = request.query.get("query_id") or str(uuid.uuid4())
        started = time.perf_counter_ns()
        try:
            body = decompress_body(await request.read(), request.headers.get("Content-Encoding", ""))
            if request.method == "GET" and "query" not in request.query and not body:
                return web.Response(text="Ok.\n")
            req = parse_request(request.query, request.headers, body)
            user = self._authenticate(req)
            check_access(req.sql, user.name, user.readonly or req.readonly, request.method)
            loop = asyncio.get_running_loop()
            data, counters, fmt = await loop.run_in_executor(self.executor, self.engine.run, req)
        except RequestError as exc:
            return self._error(exc, query_id)
        except Exception as exc:  # a bug here must answer like a server error, not drop the socket
            log.exception("request failed")
            return self._error(RequestError(1001, "STD_EXCEPTION", f"{type(exc).__name__}: {exc}"), query_id)
        summary = {
            "read_rows": str(counters.get("read_rows", 0)),
            "read_bytes": str(counters.get("read_bytes", 0)),
            "written_rows": str(counters.get("written_rows", 0)),
            "written_bytes": str(counters.get("written_bytes", 0)),
            "total_rows_to_read": "0",
            "result_rows": str(counters.get("result_rows", 0)),
            "result_bytes": str(counters.get("result_bytes", 0)),
            "elapsed_ns": str(time.perf_counter_ns() - started),
        }
        headers = self._headers(query_id)
        headers["X-ClickHouse-Format"] = fmt
        headers["X-ClickHouse-Summary"] = json.dumps(summary)
        return web.Response(body=data, headers=headers, content_type=_content_type(fmt))

    def _authenticate(self, req: ParsedRequest) -> User:
        user = self.users.get(req.user)
        if user is None or user.password != req.password:
            raise RequestError(
                516, "AUTHENTICATION_FAILED",
                f"{req.user}: Authentication failed: password is incorrect, or there is no user "
                "with such name. (AUTHENTICATION_FAILED)",
            )
        return user

    def _headers(self, query_id: str) -> dict[str, str]:
        return {
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Timezone": "UTC",
            "X-ClickHouse-Server-Display-Name": "journey-chdb",
        }

    def _error(self, exc: RequestError, query_id: str) -> web.Response:
        headers = self._headers(query_id)
        headers["X-ClickHouse-Exception-Code"] = str(exc.code)
        message = str(exc)
        if exc.name and f"({exc.name})" not in message:
            message = f"{message} ({exc.name})"
        return web.Response(
            status=http_status(exc.code), text=error_body(exc.code, message), headers=headers
        )


def _content_type(fmt: str) -> str:
    if fmt.upper().startswith("JSON"):
        return "application/json"
    if fmt in ("TabSeparated", "TSV", "CSV", "TabSeparatedWithNames", "Pretty"):
        return "text/plain"
    return "application/octet-stream"


def build_app(engine: Engine, users: dict[str, User]) -> web.Application:
    """The aiohttp application (also used by tests)."""
    endpoint = Endpoint(engine, users)
    # Long request lines: an INSERT ... SELECT with its checks travels in the URL (ClickHouse's own limit is 1 MiB).
    app = web.Application(client_max_size=1024**3, handler_args={"max_line_size": 1024 * 1024})
    app.router.add_get("/ping", endpoint.ping)
    app.router.add_route("*", "/", endpoint.handle)
    return app


def serve(
    host: str, port: int, data_dir: Path, user: str = "default", password: str = "",
    readonly_user: str | None = None, readonly_password: str = "",
) -> None:
    """Run the endpoint until SIGTERM/SIGINT, then close chDB cleanly (data stays on disk)."""
    engine = Engine(data_dir)
    users = {user: User(user, password, readonly=False)}
    if readonly_user:
        users[readonly_user] = User(readonly_user, readonly_password, readonly=True)
    app = build_app(engine, users)
    log.info(
        "ClickHouse HTTP endpoint (chDB %s) on http://%s:%d, data in %s, users: %s",
        VERSION, host, port, data_dir, ", ".join(sorted(users)),
    )
    try:
        web.run_app(app, host=host, port=port, print=None, handle_signals=True, access_log=None)
    finally:
        engine.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="ClickHouse HTTP interface on chDB")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--user", default="default")
    parser.add_argument("--readonly-user", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    serve(
        args.host, args.port, args.data_dir, args.user, os.environ.get("CLICKHOUSE_PASSWORD", ""),
        args.readonly_user, os.environ.get("CLICKHOUSE_READONLY_PASSWORD", ""),
    )


if __name__ == "__main__":
    main()
