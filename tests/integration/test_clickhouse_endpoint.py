"""The chDB ClickHouse HTTP endpoint as clients see it: auth, read-only user, concurrency, restart."""

from __future__ import annotations

import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from infra import processes
from infra.clickhouse import get_client, wait_ready

pytestmark = pytest.mark.integration


def _start(data_dir: Path, port: int, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    import os

    proc = subprocess.Popen(
        [sys.executable, "-m", "infra.clickhouse_server", "--port", str(port), "--data-dir", str(data_dir), *extra],
        env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}", 30)
    except TimeoutError:
        proc.kill()
        raise
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An endpoint with a password for `default` and a read-only `bi` user."""
    port = processes.free_port()
    proc = _start(
        tmp_path_factory.mktemp("ch-secured"), port, "--readonly-user", "bi",
        env={"CLICKHOUSE_PASSWORD": "s3cret", "CLICKHOUSE_READONLY_PASSWORD": "view"},
    )
    yield f"http://127.0.0.1:{port}"
    _stop(proc)


def _http(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_plain_get_like_curl(stack_settings) -> None:
    assert _http(f"{stack_settings.clickhouse_url}/?query=SELECT+1") == (200, "1\n")
    assert _http(f"{stack_settings.clickhouse_url}/ping") == (200, "Ok.\n")


def test_errors_carry_clickhouse_code_and_status(stack_settings) -> None:
    status, body = _http(f"{stack_settings.clickhouse_url}/?query=SELEC+1")
    assert status == 400 and body.startswith("Code: 62. DB::Exception: Syntax error")
    status, body = _http(f"{stack_settings.clickhouse_url}/?query=SELECT+*+FROM+nowhere_table")
    assert status == 404 and body.startswith("Code: 60.")
    status, body = _http(f"{stack_settings.clickhouse_url}/?query=DROP+TABLE+IF+EXISTS+x")
    assert status == 403 and "GET implies readonly" in body


def test_query_parameters_are_bound_server_side(stack_settings) -> None:
    client = get_client(stack_settings.clickhouse_url)
    rows = client.query("SELECT {s:String} AS s, {n:UInt32} + 1", parameters={"s": "it's ok", "n": 41}).result_rows
    assert rows == [("it's ok", 42)]


def test_password_required_when_configured(secured: str) -> None:
    with pytest.raises(DatabaseError, match="516"):
        get_client(secured, "default", "wrong").query("SELECT 1")
    status, body = _http(f"{secured}/?query=SELECT+1")  # no credentials at all
    assert status == 403 and body.startswith("Code: 516.")
    assert get_client(secured, "default", "s3cret").query("SELECT 2").result_rows == [(2,)]


def test_read_only_user_reads_but_cannot_write(secured: str) -> None:
    admin = get_client(secured, "default", "s3cret")
    admin.command("CREATE TABLE IF NOT EXISTS ro_t (a UInt8) ENGINE = MergeTree ORDER BY a")
    admin.insert("ro_t", [[1], [2]], column_names=["a"])
    bi = get_client(secured, "bi", "view")
    assert bi.query("SELECT count() FROM ro_t").result_rows == [(2,)]
    with pytest.raises(DatabaseError, match="164"):
        bi.command("DROP TABLE ro_t")
    with pytest.raises(DatabaseError, match="164"):
        bi.insert("ro_t", [[3]], column_names=["a"])
    assert admin.query("SELECT count() FROM ro_t").result_rows == [(2,)]


def test_read_only_user_cannot_get_around_it(secured: str, tmp_path: Path) -> None:
    """chDB would run every statement of a request, read any file and write INTO OUTFILE even
    with readonly=1; the endpoint refuses each with ClickHouse's error and changes nothing."""
    admin = get_client(secured, "default", "s3cret")
    admin.command("CREATE TABLE IF NOT EXISTS ro_keep (a UInt8) ENGINE = MergeTree ORDER BY a")
    admin.insert("ro_keep", [[1]], column_names=["a"])
    secret = tmp_path / "secret.txt"
    secret.write_text("do-not-read")
    outfile = tmp_path / "out.tsv"
    bi = get_client(secured, "bi", "view")
    attempts = {
        "SELECT 1; DROP TABLE ro_keep": "62",
        "SELECT 1 /* a /* nested */ */; TRUNCATE TABLE ro_keep": "62",
        f"SELECT * FROM file('{secret}', 'LineAsString')": "164",
        f"SELECT `file`('{secret}')": "164",
        "SELECT * FROM url('http://127.0.0.1:1/', 'LineAsString')": "164",
        f"SELECT 1 INTO OUTFILE '{outfile}'": "164",
        "ALTER TABLE ro_keep DELETE WHERE 1": "164",
        "DELETE FROM ro_keep WHERE 1": "164",
    }
    for sql, code in attempts.items():
        with pytest.raises(DatabaseError) as refused:
            bi.query(sql)
        assert f"Code: {code}." in str(refused.value), sql
        assert "do-not-read" not in str(refused.value)
    assert admin.query("SELECT count() FROM ro_keep").result_rows == [(1,)]
    assert not outfile.exists()
    # and a GET from anybody never runs a second statement
    status, body = _http(f"{secured}/?user=default&password=s3cret&query=SELECT+1%3B+DROP+TABLE+ro_keep")
    assert status == 400 and "Multi-statements are not allowed" in body
    assert admin.query("SELECT count() FROM ro_keep").result_rows == [(1,)]


def test_concurrent_inserts_and_selects_lose_nothing(stack_settings) -> None:
    client = get_client(stack_settings.clickhouse_url)
    client.command("CREATE TABLE IF NOT EXISTS conc (w UInt8, i UInt32) ENGINE = MergeTree ORDER BY (w, i)")
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            own = get_client(stack_settings.clickhouse_url)
            for batch in range(5):
                own.insert("conc", [[worker, batch * 1000 + i] for i in range(1000)], column_names=["w", "i"])
                own.query("SELECT count() FROM conc WHERE w = {w:UInt8}", parameters={"w": worker})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = client.query("SELECT w, count(), uniqExact(i) FROM conc GROUP BY w ORDER BY w").result_rows
    assert rows == [(w, 5000, 5000) for w in range(8)]


def test_data_survives_a_restart(tmp_path: Path) -> None:
    port = processes.free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _start(tmp_path, port)
    try:
        client = get_client(url)
        client.command("CREATE TABLE keep (a UInt32) ENGINE = MergeTree ORDER BY a")
        client.insert("keep", [[i] for i in range(100)], column_names=["a"])
    finally:
        _stop(proc)
    proc = _start(tmp_path, port)
    try:
        assert get_client(url).query("SELECT count(), sum(a) FROM keep").result_rows == [(100, 4950)]
    finally:
        _stop(proc)
