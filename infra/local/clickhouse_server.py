"""ClickHouse's HTTP interface in front of the chDB engine (data on disk), for the local stack.

    python -m infra.local.clickhouse_server --host 127.0.0.1 --port 8123 --data-dir .journey/clickhouse

Order of a request, cheapest refusal first: CORS (a browser page of another origin is refused
unless its origin is configured), credentials (from headers or the URL, before the body is
read; failures are slowed and logged without the secret), the body (read and decompressed up
to the user's limit), then the engine (`infra.local.clickhouse_engine`): parse, judge, run — on a
thread pool, each request on its own chDB connection, read-only users on their own smaller
pool so BI queries never take the pipeline's threads. A client that disconnects has its query
killed; `KILL QUERY WHERE query_id = ...` finds queries by the endpoint's query id.

`session_id` works as in ClickHouse for what a session keeps here: SET and USE (replayed on the
request's connection), one request at a time per session (SESSION_IS_LOCKED otherwise).

Passwords come from CLICKHOUSE_PASSWORD / CLICKHOUSE_READONLY_PASSWORD (not argv: `ps` shows
argv) and are never logged.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import logging
import os
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from infra.base.escaping import escape_log_lines, one_line
from infra.base.login_throttle import LoginThrottle
from infra.base.secrets import kept_secret
from infra.local.clickhouse_engine import MUTATION_WAIT_S, Engine, Job, Outcome
from infra.local.clickhouse_http import (
    VERSION,
    ParsedRequest,
    RequestError,
    credentials,
    decompress_body,
    error_body,
    http_status,
    parse_request,
)
from infra.local.sql_guard import Caps

log = logging.getLogger("journey.clickhouse")

READONLY_MAX_BODY = 1024 * 1024  # a read-only user sends queries, not data
ADMIN_MAX_BODY = 1024**3
MAX_SESSIONS = 10_000
MAX_SESSION_SETS = 256


@dataclass(frozen=True)
class User:
    name: str
    password: str
    readonly: bool


@dataclass
class Session:
    """What a ClickHouse HTTP session keeps here: its SETs and USE, and whether a request holds it."""

    sets: list[str] = field(default_factory=list)
    database: str | None = None
    busy: bool = False
    expires: float = 0.0


@dataclass(frozen=True)
class Limits:
    """Pool sizes and body limits of the endpoint."""

    threads: int = 8
    readonly_threads: int = 2
    readonly_max_body: int = READONLY_MAX_BODY
    admin_max_body: int = ADMIN_MAX_BODY
    cors_origins: tuple[str, ...] = ()


class Endpoint:
    """aiohttp handlers: CORS, authentication, limits, sessions, execution, responses."""

    def __init__(self, engine: Engine, users: dict[str, User], limits: Limits | None = None) -> None:
        self.engine = engine
        self.users = users
        self.limits = limits or Limits()
        self.pool = ThreadPoolExecutor(max_workers=self.limits.threads, thread_name_prefix="chdb")
        self.readonly_pool = ThreadPoolExecutor(max_workers=self.limits.readonly_threads, thread_name_prefix="chdb-ro")
        self.killer = ThreadPoolExecutor(max_workers=2, thread_name_prefix="chdb-kill")
        self.throttle = LoginThrottle(log)
        self.running: dict[str, str] = {}  # endpoint query id -> user
        self.sessions: dict[tuple[str, str], Session] = {}

    async def ping(self, request: web.Request) -> web.Response:
        return web.Response(text="Ok.\n")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        query_id = request.query.get("query_id") or str(uuid.uuid4())
        started = time.perf_counter_ns()
        try:
            refused = self._cors(request)
            if refused is not None:
                return refused
            user = await self._authenticate(request)
            limit = self.limits.readonly_max_body if user.readonly else self.limits.admin_max_body
            body = decompress_body(await _read_body(request, limit), request.headers.get("Content-Encoding", ""),
                                   limit)
            if request.method == "GET" and "query" not in request.query and not body:
                return web.Response(text="Ok.\n")
            req = parse_request(request.query, request.headers, body)
            outcome = await self._run(request, user, user.readonly or req.readonly, query_id, req)
        except RequestError as exc:
            response = self._error(exc, query_id)
            if exc.code in (307, 516):
                # refused before or while reading the body: close rather than read (and inflate) the rest
                response.force_close()
            return response
        except Exception as exc:  # a bug here must answer like a server error, not drop the socket
            log.exception("request failed")
            return self._error(RequestError(1001, "STD_EXCEPTION", f"{type(exc).__name__}: {exc}"), query_id)
        summary = {
            "read_rows": str(outcome.counters.get("read_rows", 0)),
            "read_bytes": str(outcome.counters.get("read_bytes", 0)),
            "written_rows": str(outcome.counters.get("written_rows", 0)),
            "written_bytes": str(outcome.counters.get("written_bytes", 0)),
            "total_rows_to_read": "0",
            "result_rows": str(outcome.counters.get("result_rows", 0)),
            "result_bytes": str(outcome.counters.get("result_bytes", 0)),
            "elapsed_ns": str(time.perf_counter_ns() - started),
        }
        headers = self._headers(query_id)
        headers["X-ClickHouse-Format"] = outcome.fmt
        headers["X-ClickHouse-Summary"] = json.dumps(summary)
        return web.Response(body=outcome.body, headers=headers, content_type=_content_type(outcome.fmt))

    def _cors(self, request: web.Request) -> web.Response | None:
        """ClickHouse sends no CORS headers unless configured; here a foreign origin is also not served.

        A browser sends a 'simple' cross-origin POST without asking first (no preflight), so
        withholding the CORS headers alone would still run the query: refuse it outright.
        """
        origin = request.headers.get("Origin")
        if origin is None:
            return None
        if origin in self.limits.cors_origins:
            if request.method == "OPTIONS":
                return web.Response(status=204, headers=_cors_headers(origin))
            return None
        log.warning("refused a request from origin %s (not in JOURNEY_CLICKHOUSE_CORS_ORIGINS)", one_line(origin, 200))
        return web.Response(status=403, text=error_body(
            497, f"Cross-origin requests from {origin} are not allowed (ACCESS_DENIED)"))

    async def _authenticate(self, request: web.Request) -> User:
        name, password = credentials(request.headers, request.query)
        user = self.users.get(name)
        # compare_digest: the time taken does not tell how much of the password was right
        if user is not None and hmac.compare_digest(user.password.encode(), password.encode()):
            return user
        await self.throttle.failed(request.remote or "?", name, "ClickHouse login")
        raise RequestError(
            516, "AUTHENTICATION_FAILED",
            f"{name}: Authentication failed: password is incorrect, or there is no user "
            "with such name. (AUTHENTICATION_FAILED)",
        )

    async def _run(self, request: web.Request, user: User, readonly: bool, query_id: str,
                   req: ParsedRequest) -> Outcome:
        if query_id in self.running:
            raise RequestError(216, "QUERY_WITH_SAME_ID_IS_ALREADY_RUNNING",
                               f"Query with id = {query_id} is already running.")
        session = self._session(user.name, request)
        job = Job(req, user.name, readonly, query_id, own_query_ids=lambda qid: self.running.get(qid) == user.name,
                  over_get=request.method == "GET")
        if session is not None:
            job.session_sets, job.session_database = list(session.sets), session.database
        self.running[query_id] = user.name
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.readonly_pool if user.readonly else self.pool, self.engine.execute, job)
        try:
            while True:
                done, _ = await asyncio.wait({future}, timeout=0.2)
                if done:
                    break
                if request.transport is None or request.transport.is_closing():
                    log.info("client of query %s went away: killing it", query_id)
                    await loop.run_in_executor(self.killer, self.engine.kill, [query_id])
            outcome = future.result()
        except asyncio.CancelledError:
            await loop.run_in_executor(self.killer, self.engine.kill, [query_id])
            raise
        finally:
            self.running.pop(query_id, None)
            if session is not None:
                session.busy = False
        if session is not None and outcome.statement is not None:
            if outcome.statement.kind == "SetQuery":
                if len(session.sets) >= MAX_SESSION_SETS:  # each is replayed on every request of the session
                    raise RequestError(202, "TOO_MANY_SIMULTANEOUS_QUERIES",
                                       f"Session holds {MAX_SESSION_SETS} SET statements already: start a new one")
                session.sets.append(req.sql)
            elif outcome.statement.kind == "UseQuery":
                session.database = str(((outcome.statement.ast or {}).get("database") or {}).get("name") or "default")
        return outcome

    def _session(self, user: str, request: web.Request) -> Session | None:
        """The request's session (created on first use), marked busy; ClickHouse's errors otherwise."""
        session_id = request.query.get("session_id")
        if not session_id:
            return None
        now = time.monotonic()
        for key in [k for k, s in self.sessions.items() if s.expires < now and not s.busy]:
            del self.sessions[key]
        key = (user, session_id)  # one user's session id never reaches another user's session
        session = self.sessions.get(key)
        if session is None:
            if request.query.get("session_check", "0") not in ("", "0"):
                raise RequestError(372, "SESSION_NOT_FOUND", f"Session {session_id} not found")
            if len(self.sessions) >= MAX_SESSIONS:
                raise RequestError(202, "TOO_MANY_SIMULTANEOUS_QUERIES", "Too many open sessions")
            session = self.sessions[key] = Session()
        if session.busy:
            raise RequestError(373, "SESSION_IS_LOCKED", f"Session {session_id} is locked by a concurrent client.")
        try:
            timeout = min(3600, max(1, int(request.query.get("session_timeout", "60"))))
        except ValueError:
            raise RequestError(72, "CANNOT_PARSE_NUMBER", "Invalid session timeout") from None
        session.busy, session.expires = True, now + timeout
        return session

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

    def close(self) -> None:
        for pool in (self.pool, self.readonly_pool, self.killer):
            pool.shutdown(wait=False, cancel_futures=True)


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The body, refused once it passes `limit` bytes (aiohttp inflates gzip/deflate/br/zstd
    chunk by chunk as we read, so a compression bomb stops at the limit too)."""
    chunks, size = [], 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise RequestError(307, "TOO_MANY_BYTES", f"Request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _cors_headers(origin: str) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin",
            "Access-Control-Allow-Headers": "Authorization, Content-Type, X-ClickHouse-User, X-ClickHouse-Key, "
                                            "X-ClickHouse-Format, X-ClickHouse-Database",
            "Access-Control-Allow-Methods": "GET, POST, OPTIONS"}


def _content_type(fmt: str) -> str:
    if fmt.upper().startswith("JSON"):
        return "application/json"
    if fmt in ("TabSeparated", "TSV", "CSV", "TabSeparatedWithNames", "Pretty"):
        return "text/plain"
    return "application/octet-stream"


def build_app(engine: Engine, users: dict[str, User], limits: Limits | None = None) -> web.Application:
    """The aiohttp application (also used by tests)."""
    endpoint = Endpoint(engine, users, limits)
    # Long request lines: an INSERT ... SELECT with its checks travels in the URL (ClickHouse's own
    # limit is 1 MiB); header fields keep aiohttp's 8 KiB limit. Both apply before authentication.
    # lingering_time: after refusing a body, aiohttp reads (and inflates) the rest for this long so
    # the client sees the answer; its 10 s default would let one refused bomb cost 10 s of CPU.
    app = web.Application(client_max_size=ADMIN_MAX_BODY,
                          handler_args={"max_line_size": 1024 * 1024, "lingering_time": 1.0})
    app.router.add_get("/ping", endpoint.ping)
    app.router.add_route("*", "/", endpoint.handle)

    async def on_cleanup(_app: web.Application) -> None:
        endpoint.close()

    app.on_cleanup.append(on_cleanup)
    return app


def serve(
    host: str, port: int, data_dir: Path, users: dict[str, User], limits: Limits, caps: Caps,
    mutation_wait_s: float = MUTATION_WAIT_S,
) -> None:
    """Run the endpoint until SIGTERM/SIGINT, then close chDB cleanly (data stays on disk)."""
    engine = Engine(data_dir, caps, mutation_wait_s)
    app = build_app(engine, users, limits)
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
    parser.add_argument("--password-file", type=Path, default=None,
                        help="without CLICKHOUSE_PASSWORD: the password kept here (made if missing, 0600)")
    parser.add_argument("--readonly-password-file", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=Limits.threads)
    parser.add_argument("--readonly-threads", type=int, default=Limits.readonly_threads)
    parser.add_argument("--cors-origin", action="append", default=[])
    parser.add_argument("--readonly-max-execution-s", type=int, default=Caps.max_execution_time)
    parser.add_argument("--readonly-max-memory", type=int, default=Caps.max_memory_usage)
    parser.add_argument("--readonly-max-result-rows", type=int, default=Caps.max_result_rows)
    parser.add_argument("--readonly-max-cpus", type=float, default=Caps.max_cpus)
    parser.add_argument("--mutation-wait-s", type=float, default=MUTATION_WAIT_S,
                        help="longest wait for a mutation (DELETE, ALTER) before answering UNFINISHED")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    escape_log_lines()  # one line per record, whatever an id holds
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    os.umask(0o077)  # chDB's data, parts and temporary files: the owner's only
    users = {args.user: User(args.user, _password("CLICKHOUSE_PASSWORD", args.password_file), readonly=False)}
    if args.readonly_user:
        users[args.readonly_user] = User(
            args.readonly_user, _password("CLICKHOUSE_READONLY_PASSWORD", args.readonly_password_file), readonly=True)
    limits = Limits(threads=args.threads, readonly_threads=args.readonly_threads,
                    cors_origins=tuple(args.cors_origin))
    caps = Caps(max_execution_time=args.readonly_max_execution_s, max_memory_usage=args.readonly_max_memory,
                max_result_rows=args.readonly_max_result_rows, max_cpus=args.readonly_max_cpus)
    serve(args.host, args.port, args.data_dir, users, limits, caps, args.mutation_wait_s)


def _password(variable: str, kept_in: Path | None) -> str:
    """The password from the environment, else the one kept in `kept_in` (made there if missing)."""
    value = os.environ.get(variable)
    if value is not None or kept_in is None:
        return value or ""
    return kept_secret(kept_in)


if __name__ == "__main__":
    main()
