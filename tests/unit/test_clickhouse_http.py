"""Request shaping of the chDB HTTP endpoint (pure functions)."""

from __future__ import annotations

import base64

import lz4.frame
import pytest

from infra.local.clickhouse_http import (
    RequestError,
    decompress_body,
    error_body,
    http_status,
    insert_statement,
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


def test_error_texts_and_statuses() -> None:
    assert split_engine_error("Code: 60. DB::Exception: Unknown table x. (UNKNOWN_TABLE)") == (
        60, "Unknown table x. (UNKNOWN_TABLE)")
    assert error_body(60, "m").startswith("Code: 60. DB::Exception: m (version ")
    assert [http_status(c) for c in (62, 60, 516, 164, 999)] == [400, 404, 403, 403, 500]
    assert result_format("SELECT 1 FORMAT JSONEachRow", "Native") == "JSONEachRow"


def test_a_small_body_that_inflates_past_the_limit_is_refused_before_it_inflates() -> None:
    import zlib

    from backports import zstd

    bomb = b"\0" * (8 * 1024 * 1024)
    for encoding, body in (("lz4", lz4.frame.compress(bomb)), ("zstd", zstd.compress(bomb)),
                           ("gzip", zlib.compress(bomb, wbits=16 + zlib.MAX_WBITS))):
        assert len(body) < 64 * 1024
        with pytest.raises(RequestError) as refused:
            decompress_body(body, encoding, limit=1024 * 1024)
        assert refused.value.code == 307 and http_status(307) == 413, encoding
        assert decompress_body(body, encoding, limit=len(bomb)) == bomb  # at the limit: fine
