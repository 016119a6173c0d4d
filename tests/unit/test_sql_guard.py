"""The endpoint's guard on the real engine's parse (chDB in-process, no server): each attack kind.

The engine parses (`parseQueryToJSON` / `EXPLAIN AST`), `infra.local.sql_guard` judges. Nothing here
executes a client statement: `Engine.parse` and `Engine.judge` only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local.clickhouse_engine import Engine, Job
from infra.local.clickhouse_http import RequestError, parse_request
from infra.local.sql_guard import (
    ADMIN_SETTINGS,
    ADMIN_TABLE_ENGINES,
    ADMIN_TABLE_SETTINGS,
    READONLY_SETTINGS,
    READONLY_SYSTEM_TABLES,
    READONLY_TABLE_FUNCTIONS,
)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    eng = Engine(Path(tmp_path_factory.mktemp("guard")))
    yield eng
    eng.close()


def judge(engine: Engine, sql: str, readonly: bool, url: dict[str, str] | None = None, get: bool = False) -> None:
    """Parse `sql` with the engine and judge it as the endpoint does (raises RequestError)."""
    conn = engine.connect()
    try:
        job = Job(parse_request({"query": sql, **(url or {})}, {}, b""), "bi" if readonly else "default",
                  readonly, "q-1", over_get=get)
        engine.judge(job, engine.parse(conn, sql))
    finally:
        conn.close()


def refusal(engine: Engine, sql: str, readonly: bool = True, **kw: object) -> RequestError:
    with pytest.raises(RequestError) as refused:
        judge(engine, sql, readonly, **kw)  # type: ignore[arg-type]
    return refused.value


@pytest.mark.parametrize("sql", [
    "SELECT 1; DROP TABLE t",
    "SELECT 1;\nINSERT INTO t VALUES (1)",
    "SELECT 1 /* a /* nested */ still comment */; DROP TABLE t",
    "SELECT 'it''s' ; DROP TABLE t",
    "SELECT $tag$ ; $tag$ ; DROP TABLE t",
    "DESCRIBE TABLE t; DROP TABLE t",
])
def test_multi_statements_are_refused_for_everyone(engine: Engine, sql: str) -> None:
    refused = refusal(engine, sql, readonly=False)
    assert refused.code == 62 and "Multi-statements" in str(refused)


@pytest.mark.parametrize("sql", [
    "SELECT 1;", "SELECT ';' AS semi", "SELECT 1 -- ; DROP TABLE t",
    "SELECT 1 /* ; DROP TABLE t */", "SELECT `a;b` FROM t", "SELECT $$;$$", "SELECT 'a\\' ; DROP TABLE t'",
    "SELECT file_name, urls FROM t", "WITH 1 AS x SELECT x", "(SELECT 1) UNION ALL (SELECT 2)",
    "SELECT * FROM numbers(3) SETTINGS max_threads = 1", "SHOW TABLES FROM journey", "SHOW DATABASES",
    "DESCRIBE TABLE journey.touchpoints", "EXISTS TABLE journey.alerts", "EXPLAIN SELECT 1",
    "EXPLAIN PLAN header = 1 SELECT * FROM numbers(2)", "SELECT {p:String} FORMAT JSONEachRow",
    "SELECT format('{} {}', 'a', 'b')", "SELECT * FROM generateSeries(1, 3)",
])
def test_reads_pass_for_a_read_only_user(engine: Engine, sql: str) -> None:
    judge(engine, sql, readonly=True)


@pytest.mark.parametrize(("sql", "why"), [
    ("SELECT content FROM filesystem('/proc/self/environ')", "filesystem()"),
    ("SELECT * FROM file('/etc/passwd', 'LineAsString')", "file()"),
    ("SELECT file('/etc/hostname')", "file()"),
    ("SELECT `file` /* hide */ ('/etc/hostname')", "file()"),
    ("SELECT * FROM url('http://169.254.169.254/', 'LineAsString')", "url()"),
    ("SELECT * FROM deltaLakeS3('http://127.0.0.1:1/x')", "deltaLakeS3()"),
    ("SELECT * FROM eval('SELECT * FROM file(\\'/etc/passwd\\')')", "eval()"),
    ("SELECT * FROM numbers(1) JOIN (SELECT * FROM executable('sh', 'TSV', 'x String')) USING number",
     "executable()"),
    ("WITH (SELECT count() FROM s3('http://x/y')) AS n SELECT n", "s3()"),
    ("SELECT 1 WHERE 1 IN (SELECT * FROM remote('127.0.0.1', system.one))", "remote()"),
    ("DESCRIBE TABLE file('/etc/passwd')", "not a read"),
    ("WITH 1 AS a INSERT INTO journey.incidents SELECT *", "INSERT"),
    ("INSERT INTO t SELECT 1", "INSERT"),
    ("ALTER TABLE t DELETE WHERE 1", "not a read"),
    ("EXPLAIN AST ALTER TABLE t DELETE WHERE 1", "EXPLAIN of"),
    ("SELECT 1 FORMAT Protobuf SETTINGS output_format_schema = '/tmp/x.proto'", "setting output_format_schema"),
    ("SELECT 1 FORMAT TSV SETTINGS output_format_schema = '/tmp/x.proto'", "setting output_format_schema"),
    ("SELECT 1 SETTINGS format_template_row = '/etc/passwd'", "setting format_template_row"),
    ("SELECT * FROM (SELECT 1 SETTINGS allow_experimental_eval_table_function = 1)",
     "setting allow_experimental_eval_table_function"),
    ("SELECT 1 SETTINGS format_avro_schema_registry_url = 'http://127.0.0.1:1'",
     "setting format_avro_schema_registry_url"),
    ("SET dialect = 'prql'", "setting dialect"),
    ("SELECT 1 SETTINGS max_query_size = 12", "setting max_query_size"),
    ("KILL QUERY WHERE user = 'default'", "own queries"),
    ("SELECT naiveBayesClassifier('m', 'x')", "reaches outside"),
])
def test_read_only_user_is_refused(engine: Engine, sql: str, why: str) -> None:
    refused = refusal(engine, sql)
    assert refused.code == 164 and why in str(refused), str(refused)


@pytest.mark.parametrize("params", [
    {"format_template_row": "/etc/passwd"}, {"output_format_schema": "/tmp/x"}, {"dialect": "prql"},
    {"max_query_size": "12"}, {"allow_experimental_eval_table_function": "1"},
    {"format_avro_schema_registry_url": "http://127.0.0.1:1"}, {"add_http_cors_header": "1"},
])
def test_url_settings_of_a_read_only_user_come_from_the_allow_list(engine: Engine, params: dict[str, str]) -> None:
    refused = refusal(engine, "SELECT 1", url=params)
    assert refused.code == 164 and f"setting {next(iter(params))}" in str(refused)


@pytest.mark.parametrize(("sql", "url"), [
    ("SELECT 1 SETTINGS max_execution_time = 100000", {}),
    ("SELECT 1 SETTINGS max_execution_time = 0", {}),
    ("SELECT * FROM (SELECT 1 SETTINGS max_memory_usage = 0)", {}),
    ("SELECT 1", {"max_result_rows": "0"}),
    ("SELECT 1", {"max_threads": "64"}),
])
def test_caps_cannot_be_raised_or_lifted(engine: Engine, sql: str, url: dict[str, str]) -> None:
    refused = refusal(engine, sql, url=url)
    assert refused.code == 452 and "SETTING_CONSTRAINT_VIOLATION" in str(refused)
    judge(engine, "SELECT 1 SETTINGS max_execution_time = 5, max_result_rows = 10", readonly=True)


@pytest.mark.parametrize("sql", [
    "SELECT 1 INTO OUTFILE '/tmp/x'", "SELECT * FROM numbers(2) INTO OUTFILE '/tmp/x' AND STDOUT FORMAT CSV",
    "SHOW TABLES INTO OUTFILE '/tmp/x'", "DESCRIBE TABLE system.one INTO OUTFILE '/tmp/x'",
    "EXISTS TABLE system.one INTO OUTFILE '/tmp/x'", "EXPLAIN SELECT 1 INTO OUTFILE '/tmp/x'",
])
def test_into_outfile_is_refused_for_everyone(engine: Engine, sql: str) -> None:
    for readonly in (False, True):
        refused = refusal(engine, sql, readonly=readonly)
        assert refused.code == 358 and "INTO OUTFILE" in str(refused)


def test_the_admin_is_judged_by_the_parser_too(engine: Engine) -> None:
    judge(engine, "WITH 1 AS a INSERT INTO t SELECT a", readonly=False)
    judge(engine, "INSERT INTO t VALUES (1), (2)", readonly=False)  # no JSON form: EXPLAIN AST says what it is
    refused = refusal(engine, "WITH 1 AS a INSERT INTO t SELECT a", readonly=False, get=True)
    assert refused.code == 164 and "GET implies readonly" in str(refused)


@pytest.mark.parametrize("sql", [
    "INSERT INTO journey.touchpoints (a) SELECT * FROM input('a UInt8') FORMAT Avro",  # the sink's fast path
    "INSERT INTO journey.touchpoints (a, b) FORMAT Native", "INSERT INTO t VALUES (1)",
    "CREATE TABLE IF NOT EXISTS journey.t (a UInt8) ENGINE = ReplacingMergeTree(a) ORDER BY a "
    "TTL toDate(now()) + INTERVAL 1 DAY SETTINGS index_granularity = 8192",
    "CREATE VIEW IF NOT EXISTS journey.v AS SELECT * FROM journey.t", "CREATE DATABASE IF NOT EXISTS journey",
    "ALTER TABLE journey.incidents ADD COLUMN IF NOT EXISTS x UInt8", "DELETE FROM journey.t WHERE a = {p:UInt8}",
    "OPTIMIZE TABLE journey.t FINAL", "DROP TABLE IF EXISTS journey.t", "SYSTEM STOP MERGES journey.t",
    "SELECT * FROM system.processes", "KILL QUERY WHERE query_id = 'x'", "SELECT 1 SETTINGS mutations_sync = 2",
])
def test_what_the_pipeline_runs_passes_for_the_admin(engine: Engine, sql: str) -> None:
    judge(engine, sql, readonly=False)


@pytest.mark.parametrize(("sql", "why"), [
    ("SELECT * FROM file('/tmp/x')", "table function file()"),
    ("SELECT * FROM url('http://169.254.169.254/', 'LineAsString')", "table function url()"),
    ("INSERT INTO FUNCTION file('/tmp/x', 'TSV', 'a UInt8') SELECT 1", "table function file()"),
    ("INSERT INTO FUNCTION file('/tmp/x', 'TSV', 'a UInt8') VALUES (1)", "function file()"),  # EXPLAIN AST form
    ("INSERT INTO t SETTINGS format_template_row = '/etc/passwd' VALUES (1)", "setting (settings of an INSERT"),
    ("SELECT file('/etc/hostname')", "function file()"),
    ("DESCRIBE TABLE file('/etc/passwd', 'CSVWithNames')", "function file()"),
    ("CREATE TABLE x (a UInt8) ENGINE = File(TSV, '/etc/passwd')", "engine File"),
    ("CREATE TABLE x (a UInt8) ENGINE = Kafka SETTINGS kafka_broker_list = 'h:1'", "engine Kafka"),
    ("CREATE TABLE x (a UInt8) ENGINE = MergeTree ORDER BY a SETTINGS disk = disk(type = local, path = '/etc/')",
     "table setting disk"),
    ("CREATE DATABASE x ENGINE = Filesystem('/etc')", "engine Filesystem"),
    ("CREATE TABLE x AS s3('http://x/y')", "function s3()"),
    ("CREATE DICTIONARY d (a UInt8) PRIMARY KEY a SOURCE(FILE(path '/etc/passwd' format 'TSV')) "
     "LAYOUT(FLAT()) LIFETIME(0)", "dictionaries"),
    ("BACKUP TABLE t TO File('/tmp/b')", "BackupQuery"),
    ("SYSTEM SHUTDOWN", "SYSTEM SHUTDOWN"),
    ("SELECT 1 SETTINGS format_schema = '/etc/passwd'", "setting format_schema"),
    ("SELECT * FROM eval('SELECT 1') SETTINGS allow_experimental_eval_table_function = 1", "eval()"),
])
def test_the_admin_runs_only_what_the_pipeline_needs(engine: Engine, sql: str, why: str) -> None:
    refused = refusal(engine, sql, readonly=False)
    assert refused.code == 497 and why in str(refused), str(refused)


@pytest.mark.parametrize("params", [{"output_format_schema": "/tmp/x"}, {"format_template_row": "/etc/passwd"}])
def test_url_settings_of_the_admin_come_from_its_allow_list(engine: Engine, params: dict[str, str]) -> None:
    refused = refusal(engine, "SELECT 1", readonly=False, url=params)
    assert refused.code == 497 and f"setting {next(iter(params))}" in str(refused)


@pytest.mark.parametrize("sql", [
    "SELECT query FROM system.processes", "SELECT * FROM `system`.`query_log`",
    "SELECT 1 WHERE 'x' IN system.processes",
    "SELECT (SELECT any(command) FROM system.mutations)", "SELECT * FROM system.one JOIN system.processes USING (x)",
    "USE system",
])
def test_a_read_only_user_reads_only_the_catalog_of_system(engine: Engine, sql: str) -> None:
    refused = refusal(engine, sql)
    assert refused.code == 164 and "system" in str(refused), str(refused)


def test_a_read_only_user_cannot_make_system_the_current_database(engine: Engine) -> None:
    refused = refusal(engine, "SELECT query FROM processes", url={"database": "system"})
    assert refused.code == 164 and "current database" in str(refused)
    judge(engine, "SELECT name FROM system.tables WHERE database = 'journey'", readonly=True)
    judge(engine, "SELECT name, type FROM system.columns JOIN system.databases ON 1", readonly=True)


def test_allow_lists_name_what_this_engine_has(engine: Engine) -> None:
    """A typo in an allow-list would silently allow nothing; a name the engine dropped is noticed."""
    assert READONLY_SETTINGS <= engine.catalog.settings, sorted(READONLY_SETTINGS - engine.catalog.settings)
    assert ADMIN_SETTINGS <= engine.catalog.settings, sorted(ADMIN_SETTINGS - engine.catalog.settings)
    conn = engine.connect()
    try:
        def names(sql: str) -> set[str]:
            return set(engine._query(conn, sql).decode().split())

        engines = names("SELECT name FROM system.table_engines")
        assert ADMIN_TABLE_ENGINES <= engines, sorted(ADMIN_TABLE_ENGINES - engines)
        table_settings = names("SELECT name FROM system.merge_tree_settings")
        assert ADMIN_TABLE_SETTINGS <= table_settings, sorted(ADMIN_TABLE_SETTINGS - table_settings)
        system_tables = names("SELECT name FROM system.tables WHERE database = 'system'")
        assert READONLY_SYSTEM_TABLES <= system_tables, sorted(READONLY_SYSTEM_TABLES - system_tables)
    finally:
        conn.close()
    functions = {name.lower() for name in READONLY_TABLE_FUNCTIONS}
    assert functions <= engine.catalog.table_functions, sorted(functions - engine.catalog.table_functions)
