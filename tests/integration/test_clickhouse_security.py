"""The ClickHouse endpoint against a hostile user on the network (issue 20), and BI use that must keep working.

One endpoint process for the module (admin `default` with a password, read-only `bi`); the
generated tests ask the engine what it offers (system.table_functions, system.settings), so a new
chDB version's additions are covered without editing this file.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest

from infra.base.clickhouse import get_client
from infra.local import processes
from infra.local.clickhouse_http import TRANSPORT_PARAMS
from infra.local.sql_guard import READONLY_SETTINGS, READONLY_TABLE_FUNCTIONS
from tests.integration.test_clickhouse_endpoint import start_endpoint, stop_endpoint

pytestmark = pytest.mark.integration

ADMIN_PW = f"adm-{uuid.uuid4().hex}"
BI_PW = f"bi-{uuid.uuid4().hex}"
LONG_QUERY = "SELECT count() FROM numbers(100000000000) WHERE sipHash64(number) = 1"


@dataclass
class Endpoint:
    url: str
    port: int
    pid: int
    log: Path

    def post(self, sql: str, user: str = "bi", params: dict[str, str] | None = None,
             headers: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, str]:
        """POST `sql` as `user`; (status, body)."""
        password = ADMIN_PW if user == "default" else BI_PW
        request = urllib.request.Request(
            f"{self.url}/?{urlencode(params or {})}", data=sql.encode(), method="POST",
            headers={"X-ClickHouse-User": user, "X-ClickHouse-Key": password, **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (loopback)
                return response.status, response.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def admin(self, sql: str, **kw: object) -> str:
        status, body = self.post(sql, "default", **kw)  # type: ignore[arg-type]
        assert status == 200, body
        return body

    def peak_rss_kb(self) -> int:
        status = Path(f"/proc/{self.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    port = processes.free_port()
    home = tmp_path_factory.mktemp("ch-security")
    log = home / "endpoint.log"
    proc = start_endpoint(home / "data", port, "--readonly-user", "bi", "--readonly-threads", "4",
                          "--readonly-max-execution-s", "30", "--mutation-wait-s", "2",
                          env={"CLICKHOUSE_PASSWORD": ADMIN_PW, "CLICKHOUSE_READONLY_PASSWORD": BI_PW}, log=log)
    ep = Endpoint(f"http://127.0.0.1:{port}", port, proc.pid, log)
    ep.admin("CREATE DATABASE IF NOT EXISTS journey")
    ep.admin("CREATE TABLE IF NOT EXISTS journey.incidents (incident_id String, status String) "
             "ENGINE = MergeTree ORDER BY incident_id")
    ep.admin("INSERT INTO journey.incidents VALUES ('inc-1', 'open')")
    yield ep
    stop_endpoint(proc)


def refused_as(endpoint: Endpoint, sql: str, code: int, **kw: object) -> str:
    status, body = endpoint.post(sql, **kw)  # type: ignore[arg-type]
    assert status != 200 and body.startswith(f"Code: {code}."), (sql, kw, status, body[:300])
    return body


@pytest.mark.slow
def test_every_table_function_off_the_allow_list_is_refused(endpoint: Endpoint) -> None:
    names = endpoint.admin("SELECT name FROM system.table_functions ORDER BY name").split()
    assert len(names) > 50  # the engine answered with its real list
    others = [n for n in names if n not in READONLY_TABLE_FUNCTIONS]

    def call(name: str) -> tuple[str, tuple[int, str]]:
        # view(), viewExplain(), viewIfPermitted() take a query: the first shape that parses counts
        for args in ("'x'", "SELECT 1", "SELECT 1 ELSE null('x UInt8')"):
            answer = endpoint.post(f"SELECT * FROM `{name}`({args})")
            if not answer[1].startswith("Code: 62."):
                break
        return name, answer

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(call, others))
    wrong = [(n, status, body[:160]) for n, (status, body) in answers
             if status != 403 or f"table function {n}() is not allowed" not in body]
    assert wrong == []


@pytest.mark.slow
def test_every_setting_off_the_allow_list_is_refused_in_the_url_and_in_a_settings_clause(endpoint: Endpoint) -> None:
    names = endpoint.admin("SELECT name FROM system.settings ORDER BY name").split()
    assert len(names) > 1000
    others = [n for n in names if n not in READONLY_SETTINGS]

    def both(name: str) -> list[tuple[str, int, str]]:
        # a URL parameter named like `database` or `readonly` is the HTTP interface's, not a setting
        url = (403, f"setting {name} is not allowed") if name in TRANSPORT_PARAMS else \
            endpoint.post("SELECT 1", params={name: "1"})
        clause = endpoint.post(f"SELECT 1 SETTINGS {name} = 1")
        return [(f"{how} {name}", status, body[:160]) for how, (status, body) in (("url", url), ("clause", clause))
                if status != 403 or f"setting {name} is not allowed" not in body]

    with ThreadPoolExecutor(4) as pool:
        wrong = [w for found in pool.map(both, others) for w in found]
    assert wrong == []


def test_the_issue_s_attacks_each_get_refused(endpoint: Endpoint, tmp_path: Path) -> None:
    written = tmp_path / "written.bin"
    attacks = [
        ("SELECT content FROM filesystem('/proc/self/environ')", {}),
        (f"SELECT 1 FORMAT Protobuf SETTINGS output_format_schema = '{written}'", {}),
        ("SELECT 1 FORMAT Template", {"format_template_row": "/etc/passwd"}),
        ("SELECT 1 SETTINGS format_template_row = '/etc/passwd'", {}),
        ("WITH 1 AS a INSERT INTO journey.incidents SELECT 'forged', 'resolved'", {}),
        ("SELECT * FROM eval('SELECT * FROM file(''/etc/passwd'')') "
         "SETTINGS allow_experimental_eval_table_function = 1", {}),
        ("SELECT 1 FORMAT Avro", {"format_avro_schema_registry_url": "http://127.0.0.1:1/"}),
        ("SELECT * FROM deltaLakeS3('http://127.0.0.1:1/x')", {}),
        ("SELECT 1", {"dialect": "prql"}),
        ("SELECT 1", {"max_query_size": "12"}),
    ]
    for sql, params in attacks:
        body = refused_as(endpoint, sql, 164, params=params)
        assert "root:" not in body and ADMIN_PW not in body
    refused_as(endpoint, f"SELECT 1 INTO OUTFILE '{written}'", 358, user="default")
    # the admin's password sits in every pipeline process: it reaches no file or network either
    refused_as(endpoint, "SELECT content FROM filesystem('/proc/self/environ')", 497, user="default")
    refused_as(endpoint, f"INSERT INTO FUNCTION file('{written}', 'TSV', 'a UInt8') VALUES (1)", 497, user="default")
    # other users' query texts (a password in a URL, a customer id in a DELETE) are not for BI
    refused_as(endpoint, "SELECT query FROM system.processes", 164)
    refused_as(endpoint, "SELECT command FROM system.mutations", 164)
    assert not written.exists()
    assert endpoint.admin("SELECT count() FROM journey.incidents WHERE incident_id = 'forged'") == "0\n"


def test_a_session_breaking_setting_breaks_no_one_else(endpoint: Endpoint) -> None:
    """`?dialect=prql` or `max_query_size=12` once broke every later query of every user."""
    # PRQL is not in this chDB build (no Rust): ClickHouse's own answer, for the admin too, and nothing breaks
    body = refused_as(endpoint, "from t | select {a}", 344, user="default", params={"dialect": "prql"})
    assert "PRQL is not available" in body
    refused_as(endpoint, "SELECT 1 SETTINGS dialect = 'prql'", 344, user="default")
    refused_as(endpoint, "SET dialect = 'kusto'", 344, user="default", params={"session_id": "s-dialect"})
    assert endpoint.post("SELECT 'still sql'", "default", params={"session_id": "s-dialect"}) == (200, "still sql\n")
    assert endpoint.post("SELECT 1", "default", params={"max_query_size": "12"}) == (200, "1\n")
    assert endpoint.post("SELECT 1", "default", params={"max_query_size": "4"})[0] != 200
    assert endpoint.admin("SELECT 'fine afterwards'") == "fine afterwards\n"
    assert endpoint.post("SELECT 'for bi too'") == (200, "for bi too\n")


def test_settings_never_leak_between_queries_sessions_or_users(endpoint: Endpoint) -> None:
    ask = "SELECT getSetting('max_result_rows')"
    assert endpoint.post("SET max_result_rows = 5", params={"session_id": "s-a"})[0] == 200
    assert endpoint.post(ask, params={"session_id": "s-a"}) == (200, "5\n")
    status, body = endpoint.post("SELECT number FROM numbers(10)", params={"session_id": "s-a"})
    assert status != 200 and "TOO_MANY_ROWS" in body  # the session's SET applies to the session
    assert endpoint.post(ask, params={"session_id": "s-b"}) == (200, "1000000\n")  # the cap, not s-a's value
    assert endpoint.post(ask) == (200, "1000000\n")
    assert endpoint.admin(ask, params={"session_id": "s-a"}) == "0\n"  # same id, another user: another session
    assert endpoint.post("SELECT 1", params={"max_result_rows": "3"}) == (200, "1\n")
    assert endpoint.post(ask) == (200, "1000000\n")  # a URL setting lasts one query
    refused_as(endpoint, "SELECT 1", 372, params={"session_id": "never-made", "session_check": "1"})


def test_read_only_queries_run_capped_niced_and_in_the_cpu_capped_workload(endpoint: Endpoint) -> None:
    ask = ("SELECT getSetting('workload'), getSetting('os_thread_priority'), getSetting('max_threads') = 1, "
           "getSetting('max_execution_time') FORMAT CSV")
    assert endpoint.post(ask) == (200, '"journey_readonly",19,1,30\n')
    assert endpoint.admin(ask) == '"default",0,0,0\n'  # the pipeline's queries are not held back
    workload = endpoint.admin("SELECT create_query FROM system.workloads WHERE name = 'journey_readonly'")
    assert "max_cpus = 0.5" in workload
    refused_as(endpoint, "SELECT 1", 164, params={"workload": "default"})  # the client cannot leave it


def test_a_session_serves_one_request_at_a_time(endpoint: Endpoint) -> None:
    holder = threading.Thread(target=endpoint.post, args=("SELECT sleep(2)",),
                              kwargs={"params": {"session_id": "s-busy"}})
    holder.start()
    time.sleep(0.7)
    try:
        refused_as(endpoint, "SELECT 1", 373, params={"session_id": "s-busy"})
    finally:
        holder.join()


def test_a_long_bi_query_does_not_hold_up_others_and_kill_query_ends_it(endpoint: Endpoint) -> None:
    endpoint.admin("CREATE TABLE IF NOT EXISTS journey.sink_t (a UInt32) ENGINE = MergeTree ORDER BY a")
    query_id = f"long-{uuid.uuid4().hex[:8]}"
    answer: dict[str, tuple[int, str]] = {}
    long = threading.Thread(
        target=lambda: answer.setdefault("long", endpoint.post(LONG_QUERY, params={"query_id": query_id})))
    long.start()
    time.sleep(1.0)
    try:
        assert endpoint.admin("SELECT 1") == "1\n"
        endpoint.admin("INSERT INTO journey.sink_t SELECT number FROM numbers(1000)")  # the sink's inserts
        assert endpoint.post("SELECT count() FROM journey.incidents") == (200, "1\n")  # another BI query
        assert long.is_alive()  # all of that answered while the long query still ran
        running = endpoint.admin(f"SELECT count() FROM system.processes WHERE Settings['log_comment'] = '{query_id}'")
        assert running == "1\n"
        refused_as(endpoint, "KILL QUERY WHERE user = 'default' SYNC", 164)  # bi may not kill at large
        killed = endpoint.admin(f"KILL QUERY WHERE query_id = '{query_id}' SYNC")
        assert killed.strip()
    finally:
        long.join(timeout=30)
    assert not long.is_alive()
    status, body = answer["long"]
    assert status != 200 and "QUERY_WAS_CANCELLED" in body


def test_a_delete_whose_mutation_cannot_finish_answers_unfinished_instead_of_hanging(endpoint: Endpoint) -> None:
    """A lightweight DELETE once hung 300 s on CI: the engine waits for its mutation without bound or cancel."""
    endpoint.admin("CREATE TABLE IF NOT EXISTS journey.mutated (a UInt32) ENGINE = MergeTree ORDER BY a")
    endpoint.admin("INSERT INTO journey.mutated SELECT number FROM numbers(10)")
    endpoint.admin("SYSTEM STOP MERGES journey.mutated")  # its mutations cannot run: a wait would never end
    try:
        for sql in ("DELETE FROM journey.mutated WHERE a = 1", "ALTER TABLE journey.mutated DELETE WHERE a = 2"):
            status, body = endpoint.post(sql, "default", timeout=30)  # a hang fails here instead of hanging
            assert status == 500 and body.startswith("Code: 341.") and "is not finished after 2 s" in body, body
        assert endpoint.post("DELETE FROM journey.mutated WHERE a = 3", "default",
                             params={"lightweight_deletes_sync": "0"}) == (200, "")  # asked not to wait
    finally:
        endpoint.admin("SYSTEM START MERGES journey.mutated")
    assert endpoint.admin("DELETE FROM journey.mutated WHERE a = 4") == ""  # the earlier ones finish first
    assert endpoint.admin("SELECT groupArray(a) FROM journey.mutated") == "[0,5,6,7,8,9]\n"


def test_a_read_only_user_kills_its_own_query_by_its_id(endpoint: Endpoint) -> None:
    query_id = f"own-{uuid.uuid4().hex[:8]}"
    answer: dict[str, tuple[int, str]] = {}
    long = threading.Thread(
        target=lambda: answer.setdefault("long", endpoint.post(LONG_QUERY, params={"query_id": query_id})))
    long.start()
    count = f"SELECT count() FROM system.processes WHERE Settings['log_comment'] = '{query_id}'"
    try:
        assert processes.wait_until(lambda: endpoint.admin(count) == "1\n", 10)
        refused_as(endpoint, "SELECT 1", 216, params={"query_id": query_id})  # one query per id at a time
        assert endpoint.post(f"KILL QUERY WHERE query_id = '{query_id}' SYNC")[0] == 200
    finally:
        long.join(timeout=30)
    assert "QUERY_WAS_CANCELLED" in answer["long"][1]


def test_a_client_that_goes_away_has_its_query_cancelled(endpoint: Endpoint) -> None:
    query_id = f"gone-{uuid.uuid4().hex[:8]}"
    conn = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=30)
    auth = base64.b64encode(f"bi:{BI_PW}".encode()).decode()
    conn.request("POST", f"/?query_id={query_id}", body=LONG_QUERY, headers={"Authorization": f"Basic {auth}"})
    count = f"SELECT count() FROM system.processes WHERE Settings['log_comment'] = '{query_id}'"
    assert processes.wait_until(lambda: endpoint.admin(count) == "1\n", 10)
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    assert processes.wait_until(lambda: endpoint.admin(count) == "0\n", 10)


def test_limits_hold_before_authentication(endpoint: Endpoint) -> None:
    bomb = gzip.compress(b"\0" * (1024 * 1024), compresslevel=9) * 256  # 256 gzip members: 256 MiB inflated
    assert len(bomb) < 300 * 1024
    before = endpoint.peak_rss_kb()
    for user, password in (("default", "wrong"), ("bi", BI_PW)):
        request = urllib.request.Request(endpoint.url + "/", data=bomb, method="POST", headers={
            "Content-Encoding": "gzip", "X-ClickHouse-User": user, "X-ClickHouse-Key": password})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)  # noqa: S310
        body = refused.value.read().decode()
        assert (refused.value.code, body[:8]) in ((403, "Code: 51"), (413, "Code: 30")), body[:200]
    assert endpoint.peak_rss_kb() - before < 100 * 1024  # never inflated to 256 MiB
    request = urllib.request.Request(endpoint.url + "/", data=b"SELECT 1", method="POST",
                                     headers={"X-Filler": "x" * 64 * 1024})
    with pytest.raises(urllib.error.HTTPError) as too_big:
        urllib.request.urlopen(request, timeout=10)  # noqa: S310
    assert too_big.value.code in (400, 431)


def test_no_cross_origin_requests_unless_configured(endpoint: Endpoint, tmp_path: Path) -> None:
    """What a page on another origin POSTs through a browser (no preflight for a simple POST)."""
    target = tmp_path / "from-browser.tsv"
    for user in ("default", "bi"):
        status, body = endpoint.post(f"SELECT 1 INTO OUTFILE '{target}'", user,
                                     headers={"Origin": "https://evil.example", "Content-Type": "text/plain"})
        assert status == 403 and "Cross-origin" in body
    preflight = urllib.request.Request(endpoint.url + "/", method="OPTIONS", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(preflight, timeout=10)  # noqa: S310
    assert refused.value.code == 403 and "Access-Control-Allow-Origin" not in refused.value.headers
    assert not target.exists()


def test_failed_logins_are_slowed_and_logged_without_the_secret(endpoint: Endpoint) -> None:
    guesses = [f"guess-{i}-{uuid.uuid4().hex[:6]}" for i in range(6)]
    started = time.monotonic()
    with ThreadPoolExecutor(6) as pool:  # in parallel: they still queue behind each other
        statuses = list(pool.map(lambda g: endpoint.post("SELECT 1", "default", headers={"X-ClickHouse-Key": g})[0],
                                 guesses))
    elapsed = time.monotonic() - started
    assert statuses == [403] * 6
    assert elapsed >= 1.0, elapsed  # 0.05 + 0.1 + 0.2 + 0.4 + 0.8 + 1.0 s of waits, one after another
    assert endpoint.post("SELECT 1", "default", headers={"X-ClickHouse-Key": ADMIN_PW}) == (200, "1\n")
    log = endpoint.log.read_text()
    assert "ClickHouse login failed for default from 127.0.0.1" in log
    assert not [g for g in guesses if g in log] and ADMIN_PW not in log and BI_PW not in log


def test_bi_tools_still_work_for_the_read_only_user(endpoint: Endpoint) -> None:
    """Superset-style: clickhouse-connect's SQLAlchemy dialect reflects, binds parameters, reads formats."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(f"clickhousedb://bi:{BI_PW}@127.0.0.1:{endpoint.port}/default")
    inspector = sqlalchemy.inspect(engine)
    assert "journey" in inspector.get_schema_names()
    assert "incidents" in inspector.get_table_names(schema="journey")
    assert [c["name"] for c in inspector.get_columns("incidents", schema="journey")] == ["incident_id", "status"]
    with engine.connect() as conn:
        rows = conn.execute(sqlalchemy.text("SELECT status FROM journey.incidents WHERE incident_id = :i"),
                            {"i": "inc-1"}).all()
    assert [tuple(r) for r in rows] == [("open",)]
    client = get_client(endpoint.url, "bi", BI_PW)
    bound = client.query("SELECT {s:String}, {n:UInt8} + 1", parameters={"s": "it's", "n": 1})
    assert bound.result_rows == [("it's", 2)]
    assert client.query_arrow("SELECT incident_id FROM journey.incidents").num_rows == 1
    assert len(client.query_df("SELECT * FROM journey.incidents")) == 1
    for fmt, magic in (("Parquet", b"PAR1"), ("JSONEachRow", b'{"incident_id"'), ("ArrowStream", b"\xff\xff\xff\xff")):
        assert client.raw_query("SELECT * FROM journey.incidents", fmt=fmt).startswith(magic), fmt
