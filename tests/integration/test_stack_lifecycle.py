"""`journey up -d`, `status --json`, `down` as a user runs them: nothing left behind."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from infra.local import processes
from tests.integration.own_stack import own_stack_env

pytestmark = pytest.mark.integration


def _journey(args: list[str], env: dict[str, str], timeout: int = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from infra.cli import main; main()", *args],
        capture_output=True, text=True, env=env, timeout=timeout,
    )


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return own_stack_env(tmp_path / "home", **extra)


def test_up_detached_status_down_leaves_nothing_running(tmp_path: Path) -> None:
    env = _env(tmp_path)
    up = _journey(["up", "-d"], env)
    try:
        assert up.returncode == 0, up.stderr
        assert f"127.0.0.1:{env['JOURNEY_KAFKA_PORT']}" in up.stdout
        assert f"http://127.0.0.1:{env['JOURNEY_CLICKHOUSE_PORT']}" in up.stdout
        status = _journey(["status", "--json"], env)
        assert status.returncode == 0, status.stderr
        assert all(c["ok"] for c in json.loads(status.stdout)["components"])
        assert "collector" in [c["name"] for c in json.loads(status.stdout)["components"]]
        collector = f"http://127.0.0.1:{env['JOURNEY_COLLECTOR_PORT']}/healthz"
        with urllib.request.urlopen(collector, timeout=10) as health:  # noqa: S310 - our own loopback URL
            assert json.loads(health.read())["status"] == "ok"
        pids = [p.pid for p in processes.tracked(Path(env["JOURNEY_HOME"]) / "pids")]
        assert pids
    finally:
        down = _journey(["down"], env)
    assert down.returncode == 0, down.stderr
    assert "broker" in down.stdout
    assert not any(Path(f"/proc/{pid}").exists() and _not_zombie(pid) for pid in pids)
    status = _journey(["status", "--json"], env)
    assert status.returncode == 1
    assert not any(c["ok"] for c in json.loads(status.stdout)["components"])


def _not_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_missing_broker_binary_is_one_clear_line(tmp_path: Path) -> None:
    env = _env(tmp_path, JOURNEY_TANSU_BIN=str(tmp_path / "no-such-tansu"))
    result = _journey(["up", "-d"], env)
    assert result.returncode != 0
    assert "broker binary missing" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_external_clickhouse_is_one_clear_line(tmp_path: Path) -> None:
    port = processes.free_port()
    env = _env(tmp_path, CLICKHOUSE_URL=f"http://127.0.0.1:{port}")
    result = _journey(["up", "-d"], env)
    _journey(["down"], env)
    assert result.returncode != 0
    assert f"clickhouse unreachable at http://127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_external_broker_is_used_instead_of_a_local_one(tmp_path: Path) -> None:
    first = _env(tmp_path)
    up = _journey(["up", "-d"], first)
    assert up.returncode == 0, up.stderr
    try:
        second = _env(tmp_path, JOURNEY_HOME=str(tmp_path / "second"),
                      KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{first['JOURNEY_KAFKA_PORT']}")
        up2 = _journey(["up", "-d"], second)
        try:
            assert up2.returncode == 0, up2.stderr
            assert "(external)" in up2.stdout
            names = [p.name for p in processes.tracked(Path(second["JOURNEY_HOME"]) / "pids")]
            assert "broker" not in names
        finally:
            _journey(["down"], second)
    finally:
        _journey(["down"], first)
