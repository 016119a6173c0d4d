"""The chDB engine behind the HTTP endpoint: one fresh chDB connection per request.

Why a connection per request: chDB connections on the same data path are separate sessions
(their own settings) that run concurrently, and opening one costs about half a millisecond
(measured: 100 connect + SET + SELECT 1 + close in 0.28 s). A request's settings, database and
SETs therefore die with its connection — a `dialect` or `max_query_size` never reaches another
query or user — and a long query holds only its own thread, so `SELECT 1`, the sink's inserts
and `KILL QUERY` run beside it. An anchor connection keeps the database open in between.

Every statement is parsed by the engine first (`parseQueryToJSON`, bound as a parameter, on the
fresh connection before any client setting touches it) and judged by `infra.local.sql_guard`.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.local.clickhouse_http import (
    GET_IS_READONLY,
    ParsedRequest,
    RequestError,
    insert_statement,
    quote_literal,
    result_format,
    split_engine_error,
)
from infra.local.sql_guard import (
    CATALOG_QUERIES,
    READ_KINDS,
    Caps,
    Catalog,
    Refused,
    Statement,
    check_admin,
    check_admin_settings,
    check_dialect,
    check_readonly,
    check_settings,
    from_explain_ast,
    from_json_ast,
    kill_query_ids,
    outfile_in_explain_ast,
    readonly_refusal,
)

log = logging.getLogger("journey.clickhouse")

PARSE_CACHE_ENTRIES = 1024
PARSE_CACHE_MAX_TEXT = 64 * 1024
BAD_ARGUMENTS = 36  # parseQueryToJSON: this statement has no JSON form
# A BI query runs in the CPU-capped workload, its threads niced (neither client-settable), so the
# pipeline's inserts and `SELECT 1` come first. Measured: the workload's max_cpus does not bite in
# chDB 26.9 (system.server_settings cpu_slot_preemption = 0, not changed by connect arguments: at
# max_cpus 0.05 a read-only query ran as fast as the admin's), and nice orders threads only inside
# this process (each stack process is its own session, hence its own autogroup). (ClickHouse's
# `priority` setting, which pauses lower-priority queries, was tried and measured worse here: sink
# 0.23-0.51x with a BI query.)
READONLY_WORKLOAD = "journey_readonly"
READONLY_PRIORITY = [("os_thread_priority", "19"), ("workload", quote_literal(READONLY_WORKLOAD))]
_EXPLAIN_FUNCTION = re.compile(r"^ *Function (\S+)", re.MULTILINE)
_EXPLAIN_SET = re.compile(r"^ *Set\b", re.MULTILINE)
_IN_SCOPE = re.compile(r":? In scope SELECT parseQueryToJSON\(.*$", re.DOTALL)
# Statements that make mutations. The engine waits for a mutation with no bound and no way to cancel
# it (KILL QUERY does not stop the wait; a mutation held up behind merges on a loaded machine kept a
# DELETE waiting past the client's 300 s): the endpoint starts them asynchronously and waits itself,
# bounded, answering UNFINISHED like ClickHouse does when a mutation cannot be awaited.
MUTATION_KINDS = frozenset({"DeleteQuery", "UpdateQuery", "AlterQuery"})  # ALTER: its DELETE and UPDATE
ASYNC_MUTATION = [("mutations_sync", "0"), ("lightweight_deletes_sync", "0")]
MUTATION_WAIT_S = 60.0
# A lightweight DELETE is by default a mutation of every active part, run by chDB's two background
# threads after any merge that is due (merges come first): its time grows with the part count and
# the insert load (measured: 100-200 parts, 7-22 s on a loaded machine). As patch parts (tables with
# block number/offset columns, migrations 0012-0014) it costs the matching rows only (0.3-2.6 s there);
# on other tables the engine falls back to the mutation.
DELETE_MODE = ("lightweight_delete_mode", "'lightweight_update'")
_PENDING_MUTATIONS = ("SELECT mutation_id, parts_to_do, latest_fail_reason FROM system.mutations "
                      "WHERE database = if({db:String} = '', currentDatabase(), {db:String}) "
                      "AND table = {table:String} AND NOT is_done")


@dataclass
class Job:
    """One request to run: who asks, what, with which settings, under which query id."""

    request: ParsedRequest
    user: str
    readonly: bool
    query_id: str
    session_sets: list[str] = field(default_factory=list)  # SET statements of the client's session
    session_database: str | None = None
    own_query_ids: Callable[[str], bool] = lambda _qid: False  # is this running query the user's?
    over_get: bool = False  # GET implies readonly in ClickHouse: reads only (for any user)


@dataclass
class Outcome:
    body: bytes
    counters: dict[str, int]
    fmt: str
    statement: Statement | None = None


class Engine:
    """chDB on a data directory; `execute` is called from many threads at once."""

    def __init__(self, data_dir: Path, caps: Caps | None = None, mutation_wait_s: float = MUTATION_WAIT_S) -> None:
        import chdb

        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = str(data_dir / "db")
        self.tmp_dir = Path(tempfile.mkdtemp(prefix="inserts-", dir=data_dir))  # 0700 by mkdtemp
        self.caps = caps or Caps()
        self.mutation_wait_s = mutation_wait_s
        self._waiting: set[str] = set()  # endpoint query ids waiting on a mutation
        self._cancelled: set[str] = set()  # ... of them, those killed meanwhile
        self._connect_lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._parsed: OrderedDict[str, Statement] = OrderedDict()  # the parse depends on the text only
        self._chdb = chdb
        # The workload definitions are made afresh at each start: chDB writes them to disk but does
        # not load them again (after a restart they are missing, yet CREATE says they exist).
        shutil.rmtree(data_dir / "db" / "workload", ignore_errors=True)
        self.anchor = chdb.connect(self.path)  # keeps the engine and its data open between requests
        self.catalog = self._load_catalog()
        # Read-only users' queries run in a workload whose CPU is capped (ClickHouse's workload
        # scheduling): on two cores a dashboard query would otherwise take a whole core from the
        # pipeline, and nice values do not reach across processes (the kernel's autogroups).
        for sql in ("CREATE RESOURCE cpu (MASTER THREAD, WORKER THREAD)", "CREATE WORKLOAD all",
                    f"CREATE WORKLOAD {READONLY_WORKLOAD} IN all SETTINGS max_cpus = {self.caps.max_cpus}"):
            self._query(self.anchor, sql)

    def _load_catalog(self) -> Catalog:
        found = {name: frozenset(self._rows(self.anchor, sql)) for name, sql in CATALOG_QUERIES.items()}
        return Catalog(**found)

    @staticmethod
    def _rows(conn: Any, sql: str, params: dict[str, Any] | None = None) -> list[str]:
        text = conn.query(sql, "TSVRaw", params=params).bytes().decode()
        return [line for line in text.split("\n") if line]

    def connect(self) -> Any:
        with self._connect_lock:  # opening connections concurrently is not documented as safe
            return self._chdb.connect(self.path)

    def parse(self, conn: Any, sql: str) -> Statement:
        """The engine's own parse of `sql` (cached: dashboards, `SELECT 1` and the sink's inserts repeat)."""
        if len(sql) > PARSE_CACHE_MAX_TEXT:
            return self._parse(conn, sql)
        with self._cache_lock:
            found = self._parsed.get(sql)
            if found is not None:
                self._parsed.move_to_end(sql)
                return found
        statement = self._parse(conn, sql)
        with self._cache_lock:
            self._parsed[sql] = statement
            if len(self._parsed) > PARSE_CACHE_ENTRIES:
                self._parsed.popitem(last=False)
        return statement

    def _parse(self, conn: Any, sql: str) -> Statement:
        """The engine's own parse of `sql`: its JSON AST, or EXPLAIN AST for statements without one."""
        try:
            text = conn.query("SELECT parseQueryToJSON({q:String})", "TSVRaw",
                              params={"q": tsv_escaped(sql)}).bytes().decode()
        except Exception as exc:  # ChdbError/RuntimeError: the engine refused the text
            code, message = split_engine_error(str(exc))
            if code != BAD_ARGUMENTS or "JSON" not in message:
                raise RequestError(code, "", _IN_SCOPE.sub("", message)) from None
        else:
            return from_json_ast(text.rstrip("\n"))
        # One statement without a JSON form (the parse above refused multi-statements already).
        explained = self._query(conn, "EXPLAIN AST " + sql).decode()
        statement = from_explain_ast(explained)
        statement.into_outfile = outfile_in_explain_ast(explained)
        statement.functions = _EXPLAIN_FUNCTION.findall(explained)  # judged by name, as in a JSON tree
        if _EXPLAIN_SET.search(explained):  # settings of an INSERT with inline data: EXPLAIN AST hides them
            statement.settings.append(("(settings of an INSERT with inline data)", None))
        return statement

    def _query(self, conn: Any, sql: str, fmt: str = "TSVRaw", params: dict[str, str] | None = None) -> bytes:
        try:
            return bytes(conn.query(sql, fmt, params=params or None).bytes())
        except Exception as exc:
            code, message = split_engine_error(str(exc))
            raise RequestError(code, "", message) from None

    def judge(self, job: Job, statement: Statement) -> None:
        """Raise RequestError unless the job's user may run `statement` with the request's settings."""
        try:
            if job.readonly:
                check_readonly(statement, job.user, self.catalog, self.caps)
                check_settings(job.request.settings, job.user, self.caps)
                database = job.request.database if job.request.database_given else job.session_database
                if (database or "").lower() == "system":
                    raise readonly_refusal(job.user, "the system database is not open to read-only users as the "
                                                     "current database (name system tables in full)")
                if statement.kind == "KillQueryQuery":
                    ids = kill_query_ids(statement)
                    if ids is None or not all(job.own_query_ids(i) for i in ids):
                        raise readonly_refusal(job.user, "a read-only user kills only their own queries, by query_id")
            else:
                check_admin(statement, job.user, self.catalog)
                check_admin_settings(job.request.settings, job.user)
                if job.over_get and statement.kind not in READ_KINDS:
                    raise Refused(164, "READONLY", GET_IS_READONLY)
        except Refused as exc:
            raise RequestError(exc.code, exc.name, str(exc)) from None

    def execute(self, job: Job) -> Outcome:
        """Parse, judge and run one request on its own connection."""
        req = job.request
        if not job.readonly:  # before the parse: PRQL text would only meet a SQL syntax error there
            try:
                check_dialect(list(req.settings.items()))
            except Refused as exc:
                raise RequestError(exc.code, exc.name, str(exc)) from None
        conn = self.connect()
        try:
            statement = self.parse(conn, req.sql)
            self.judge(job, statement)
            if statement.kind == "KillQueryQuery" and (ids := kill_query_ids(statement)) is not None:
                return Outcome(self.kill(ids, conn=conn, sync=bool((statement.ast or {}).get("sync"))),
                               {}, "TabSeparated", statement)
            self._prepare(conn, job)
            if req.insert_target is not None:
                return Outcome(b"", self._insert(conn, req), req.output_format, statement)
            awaited = self._mutation_to_await(job, statement)
            if awaited is not None:
                changes = ASYNC_MUTATION + ([DELETE_MODE] if statement.kind == "DeleteQuery" else [])
                self._query(conn, "SET " + ", ".join(f"{name} = {value}" for name, value in changes))
            try:
                result = conn.query(req.sql, req.output_format, params=req.params or None)
            except Exception as exc:
                code, message = split_engine_error(str(exc))
                raise RequestError(code, "", message) from None
            if awaited is not None:
                self._await_mutations(conn, job.query_id, *awaited)
            body = bytes(result.bytes())
            counters = {"read_rows": result.rows_read(), "read_bytes": result.bytes_read(),
                        "result_rows": result.rows_read(), "result_bytes": len(body)}
            return Outcome(body, counters, result_format(req.sql, req.output_format), statement)
        finally:
            conn.close()

    @staticmethod
    def _mutation_to_await(job: Job, statement: Statement) -> tuple[str, str] | None:
        """(database, table) of a mutation the client waits for (ClickHouse's default); None otherwise."""
        if statement.kind not in MUTATION_KINDS or job.readonly:
            return None
        tree = statement.ast or {}
        commands = ((tree.get("command_list") or {}).get("children") or []) if statement.kind == "AlterQuery" else []
        if any(c.get("command_type") not in ("DELETE", "UPDATE") for c in commands):
            return None  # ALTERs of the table itself (ADD COLUMN, ...): the engine's own way
        asked = dict(statement.settings) | job.request.settings
        if any(str(asked.get(name, "")) == "0" for name, _ in ASYNC_MUTATION):
            return None  # the client asked not to wait
        database, table = tree.get("database"), tree.get("table")
        if isinstance(database, dict):
            database = database.get("name")
        if isinstance(table, dict):
            table = table.get("name")
        return (str(database or ""), str(table)) if table else None

    def _await_mutations(self, conn: Any, query_id: str, database: str, table: str) -> None:
        """Wait, at most `mutation_wait_s`, for the table's mutations unfinished when the statement returned."""
        self._waiting.add(query_id)
        try:
            self._await(conn, query_id, database, table)
        finally:
            self._waiting.discard(query_id)
            self._cancelled.discard(query_id)

    def _await(self, conn: Any, query_id: str, database: str, table: str) -> None:
        params = {"db": database, "table": table}
        pending = {row.split("\t", 1)[0] for row in self._rows(conn, _PENDING_MUTATIONS, params)}
        deadline, pause = time.monotonic() + self.mutation_wait_s, 0.02
        name = f"{database + '.' if database else ''}{table}"
        while pending:
            left = [row.split("\t") + ["", ""] for row in self._rows(conn, _PENDING_MUTATIONS, params)
                    if row.split("\t", 1)[0] in pending]
            if not left:
                return
            mutation_id, parts_to_do, reason = left[0][:3]
            if reason:  # ClickHouse's own answer to a failed mutation it was waiting for
                raise RequestError(341, "UNFINISHED", f"Exception happened during execution of mutation "
                                   f"'{mutation_id}' of {name}: {reason} (UNFINISHED)")
            if query_id in self._cancelled:
                raise RequestError(394, "QUERY_WAS_CANCELLED", "Query was cancelled while it waited for mutation "
                                   f"'{mutation_id}' of {name}, which goes on in the background")
            if time.monotonic() >= deadline:
                raise RequestError(341, "UNFINISHED", (
                    f"Mutation '{mutation_id}' of {name} is not finished after {self.mutation_wait_s:g} s "
                    f"({parts_to_do} parts to do); it goes on in the background: see system.mutations, "
                    "or KILL MUTATION to drop it. (UNFINISHED)"))
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    def _prepare(self, conn: Any, job: Job) -> None:
        """The query's tag, read-only caps, session SETs, database, request settings, in that order."""
        # log_comment carries the endpoint's query id: KILL QUERY and a disconnect find the query by it.
        # First, so that a client's own settings (max_query_size=12) cannot stop it being set.
        first = [("log_comment", quote_literal(job.query_id))]
        if job.readonly:
            # the ceilings first: a client's lower value (checked against them) then overrides
            first += [(name, str(cap)) for name, cap in self.caps.as_settings().items()]
            first += READONLY_PRIORITY
        statements = ["SET " + ", ".join(f"{name} = {value}" for name, value in first), *job.session_sets]
        database = job.request.database if job.request.database_given or not job.session_database \
            else job.session_database
        if database != "default":
            statements.append(f"USE {_ident(database)}")
        changes = [f"{name} = {quote_literal(value)}" for name, value in job.request.settings.items()
                   if name != "log_comment"] + (["readonly = 2"] if job.readonly else [])
        if changes:  # readonly = 2: the engine's own guard too (no writes, no change of readonly)
            statements.append("SET " + ", ".join(changes))
        for sql in statements:
            self._query(conn, sql)

    def _insert(self, conn: Any, req: ParsedRequest) -> dict[str, int]:
        # chDB has no stdin for INSERT ... FORMAT X: the payload goes through a file.
        path = self.tmp_dir / f"{uuid.uuid4().hex}.{req.insert_format}"
        path.write_bytes(req.insert_data)
        try:
            result = conn.query(
                insert_statement(req.insert_target or "", str(path), req.insert_format or "Native"),
                "TabSeparated", params=req.params or None,
            )
        except Exception as exc:
            code, message = split_engine_error(str(exc))
            raise RequestError(code, "", message) from None
        finally:
            path.unlink(missing_ok=True)
        return {"written_rows": result.rows_written(), "written_bytes": result.bytes_written()}

    def kill(self, query_ids: list[str], conn: Any | None = None, sync: bool = True) -> bytes:
        """KILL QUERY for the endpoint's query ids (chDB's own ids differ: the tag is log_comment)."""
        self._cancelled.update(set(query_ids) & self._waiting)  # a wait on a mutation ends too
        own = conn is None
        conn = conn or self.connect()
        try:
            mode = "SYNC" if sync else "ASYNC"
            ids = "[" + ",".join(quote_literal(i) for i in query_ids) + "]"
            return self._query(conn, f"KILL QUERY WHERE Settings['log_comment'] IN {{ids:Array(String)}} {mode}",
                               "TabSeparated", params={"ids": ids})
        finally:
            if own:
                conn.close()

    def close(self) -> None:
        self.anchor.close()


_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\0": "\\0",
                              "\b": "\\b", "\f": "\\f"})


def tsv_escaped(text: str) -> str:
    """`text` as a query parameter value: ClickHouse reads parameters in its Escaped (TSV) format."""
    return text.translate(_TSV_ESCAPES)


def _ident(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"
