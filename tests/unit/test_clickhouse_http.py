"""Request shaping of the chDB HTTP endpoint (pure functions)."""

from __future__ import annotations

import base64

import lz4.frame
import pytest

from infra.clickhouse_http import (
    RequestError,
    check_access,
    decompress_body,
    error_body,
    http_status,
    insert_statement,
    is_read_only_query,
    is_write_query,
    parse_request,
    result_format,
    split_engine_error,
)


def test_insert_body_is_split_into_statement_and_data() -> None:
    body = b"INSERT INTO journey.t (a, b) FORMAT Native\n\x02\x01\x00binary"
    req = parse_request({}, {}, body)
    assert req.insert_target == "journey.t (a, b)"
    assert req.insert_format == "Native"
    assert req.insert_data == b"\x02\x01\x00binary"


def test_query_param_statement_with_data_in_body() -> None:
    req = parse_request({"query": "INSERT INTO t FORMAT JSONEachRow"}, {}, b'{"a":1}\n')
    assert req.insert_target == "t" and req.insert_data == b'{"a":1}\n'


def test_insert_data_is_read_from_a_file_by_name_or_through_input() -> None:
    plain = parse_request({"query": "INSERT INTO t (a, b) FORMAT Avro"}, {}, b"Obj\x01")
    assert insert_statement(plain.insert_target or "", "/tmp/x", "Avro") == (
        "INSERT INTO t (a, b) SELECT * FROM file('/tmp/x', 'Avro')")
    sql = ("INSERT INTO t (a) SELECT upper(s) FROM input('s String, n Map(String, String)') "
           "WHERE n['k'] != '' FORMAT Avro")
    req = parse_request({"query": sql}, {}, b"Obj\x01")
    assert req.insert_format == "Avro" and req.insert_data == b"Obj\x01"
    assert insert_statement(req.insert_target or "", "/tmp/it's", "Avro") == (
        "INSERT INTO t (a) SELECT upper(s) FROM file('/tmp/it\\'s', 'Avro', 's String, n Map(String, String)') "
        "WHERE n['k'] != ''")


def test_settings_params_and_transport_are_separated() -> None:
    req = parse_request(
        {"query": "SELECT {x:UInt8}", "param_x": "1", "max_threads": "2", "session_id": "s", "database": "db"},
        {"Authorization": "Basic " + base64.b64encode(b"bi:pw").decode()},
        b"",
    )
    assert req.params == {"x": "1"}
    assert req.settings == {"max_threads": "2"}
    assert (req.user, req.password, req.database) == ("bi", "pw", "db")


def test_setting_names_cannot_inject_sql() -> None:
    with pytest.raises(RequestError):
        parse_request({"query": "SELECT 1", "x = 1; DROP TABLE t": "1"}, {}, b"")


def test_lz4_body_of_several_frames() -> None:
    body = lz4.frame.compress(b"abc") + lz4.frame.compress(b"def")
    assert decompress_body(body, "lz4") == b"abcdef"


def test_read_only_classification() -> None:
    assert is_read_only_query("  -- comment\n(SELECT 1)")
    assert is_read_only_query("WITH 1 AS x SELECT x")
    assert not is_read_only_query("INSERT INTO t VALUES (1)")
    assert not is_read_only_query("SELECT 1 INTO   OUTFILE '/tmp/x'")
    assert is_write_query("drop table t") and not is_write_query("SELEC 1")


def test_error_texts_and_statuses() -> None:
    assert split_engine_error("Code: 60. DB::Exception: Unknown table x. (UNKNOWN_TABLE)") == (
        60, "Unknown table x. (UNKNOWN_TABLE)")
    assert error_body(60, "m").startswith("Code: 60. DB::Exception: m (version ")
    assert [http_status(c) for c in (62, 60, 516, 164, 999)] == [400, 404, 403, 403, 500]
    assert result_format("SELECT 1 FORMAT JSONEachRow", "Native") == "JSONEachRow"


@pytest.mark.parametrize("sql", [
    "SELECT 1; DROP TABLE t",
    "SELECT 1;\nINSERT INTO t VALUES (1)",
    "SELECT 1 /* a /* nested */ still comment */; DROP TABLE t",
    "SELECT 'it''s' ; DROP TABLE t",
    "SELECT $tag$ ; $tag$ ; DROP TABLE t",
])
def test_multi_statements_are_refused_for_everyone(sql: str) -> None:
    with pytest.raises(RequestError) as refused:
        check_access(sql, "default", readonly=False, method="POST")
    assert refused.value.code == 62 and "Multi-statements" in str(refused.value)


@pytest.mark.parametrize("sql", [
    "SELECT 1;", "SELECT 1;;", "SELECT ';' AS semi", "SELECT 1 -- ; DROP TABLE t",
    "SELECT 1 # ; DROP TABLE t", "SELECT 1 /* ; DROP TABLE t */", "SELECT `a;b` FROM t",
    "SELECT $$;$$", "SELECT 'a\\' ; DROP TABLE t'", "SELECT file_name, urls FROM t",
])
def test_one_statement_with_semicolons_in_quotes_or_comments_is_one(sql: str) -> None:
    check_access(sql, "bi", readonly=True, method="GET")


@pytest.mark.parametrize(("sql", "why"), [
    ("SELECT * FROM file('/etc/passwd', 'LineAsString')", "file()"),
    ("SELECT file('/etc/hostname')", "file()"),
    ("SELECT `file` /* hide */ ('/etc/hostname')", "file()"),
    ("SELECT * FROM url('http://169.254.169.254/', 'LineAsString')", "url()"),
    ("SELECT * FROM t, executable('sh', 'TSV', 'x String')", "executable()"),
    ("SELECT 1 INTO OUTFILE '/tmp/x'", "only reads"),
    ("INSERT INTO t VALUES (1)", "only reads"),
    ("ALTER TABLE t DELETE WHERE 1", "only reads"),
    ("SET max_threads = 1", "only reads"),
    ("'SELECT' 1", "only reads"),
])
def test_read_only_user_gets_reads_only(sql: str, why: str) -> None:
    with pytest.raises(RequestError) as refused:
        check_access(sql, "bi", readonly=True, method="POST")
    assert refused.value.code == 164 and why in str(refused.value)


def test_text_the_guard_cannot_read_is_refused() -> None:
    for sql in ("SELECT 'unterminated", "SELECT 1 /* open", "SELECT $x$ open"):
        with pytest.raises(RequestError) as refused:
            check_access(sql, "default", readonly=False, method="POST")
        assert refused.value.code == 62
