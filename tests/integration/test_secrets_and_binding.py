"""A whole stack with every secret configured: none of them in logs, outputs or `ps`; loopback only."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.local import processes
from infra.local.processes import wait_until
from schemas.contract import iso_from_ms
from tests.integration.own_stack import own_stack_env

pytestmark = pytest.mark.integration

SECRETS = {
    "CLICKHOUSE_PASSWORD": f"pw-{uuid.uuid4().hex}",
    "CLICKHOUSE_READONLY_PASSWORD": f"ro-{uuid.uuid4().hex}",
    "JOURNEY_ONCALL_TOKEN": f"tok-{uuid.uuid4().hex}",
}
HOOK_SECRET = f"T000/B000/{uuid.uuid4().hex}"  # what a Slack webhook URL's path holds


def journey(args: list[str], env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from infra.cli import main; main()", *args], env=env,
                          input=stdin, capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def secured_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("secured-home")
    closed = processes.free_port()  # the webhook receiver is down: its failures get logged
    env = own_stack_env(home, **SECRETS, CLICKHOUSE_READONLY_USER="bi",
                        JOURNEY_WEBHOOKS=f"ops=http://127.0.0.1:{closed}/services/{HOOK_SECRET}")
    outputs: list[str] = []
    up = journey(["up", "-d"], env)
    outputs += [up.stdout, up.stderr]
    assert up.returncode == 0, up.stderr
    try:
        yield {"env": env, "home": home, "outputs": outputs}
    finally:
        down = journey(["down"], env)
        assert down.returncode == 0, down.stderr


def stack_pids(home: Path) -> set[int]:
    """Pids of the stack's processes and their children."""
    pids = {p.pid for p in processes.tracked(home / "pids") if p.alive()}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid in pids:
            pids.add(int(stat.parent.name))
    return pids


def listening_addresses(pids: set[int]) -> list[tuple[str, int, int]]:
    """(address, port, pid) of every TCP socket in LISTEN state owned by `pids` (from /proc)."""
    inode_pid: dict[str, int] = {}
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = fd.readlink().name
            except OSError:
                continue
            if target.startswith("socket:["):
                inode_pid[target[8:-1]] = pid
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inode_pid:
                continue
            address_hex, port_hex = local.split(":")
            found.append((_address(address_hex), int(port_hex, 16), inode_pid[inode]))
    return found


def _address(hex_text: str) -> str:
    raw = bytes.fromhex(hex_text)
    if len(raw) == 4:
        return ".".join(str(b) for b in raw[::-1])
    words = [raw[i:i + 4][::-1].hex() for i in range(0, 16, 4)]  # /proc stores each 32-bit word little-endian
    return ":".join(w[j:j + 4] for w in words for j in (0, 4))


def test_everything_listens_on_loopback_only(secured_stack: dict[str, Any]) -> None:
    env = secured_stack["env"]
    found = listening_addresses(stack_pids(secured_stack["home"]))
    print("listening:", sorted(found))
    ports = {port for _, port, _ in found}
    for name in ("JOURNEY_KAFKA_PORT", "JOURNEY_CLICKHOUSE_PORT", "JOURNEY_WEB_PORT"):
        assert int(env[name]) in ports, (name, found)  # the check saw the real listeners
    loopback = ("127.0.0.1", "0000:0000:0000:0000:0000:0000:0000:0001")
    assert [f for f in found if f[0] not in loopback] == []


def test_clickhouse_of_the_stack_needs_credentials_and_offers_a_read_only_user(secured_stack: dict[str, Any]) -> None:
    from clickhouse_connect.driver.exceptions import DatabaseError

    from infra.base.clickhouse import get_client

    url = f"http://127.0.0.1:{secured_stack['env']['JOURNEY_CLICKHOUSE_PORT']}"
    for user, password in (("default", ""), ("default", "guess"), ("bi", ""), ("nobody", "x")):
        with pytest.raises(DatabaseError, match="Code: 516"):
            get_client(url, user, password).query("SELECT 1")
    bi = get_client(url, "bi", SECRETS["CLICKHOUSE_READONLY_PASSWORD"])
    assert bi.query("SELECT count() >= 0 FROM journey.touchpoints").result_rows == [(True,)]
    for write in ("INSERT INTO journey.alerts (alert_id) VALUES ('x')", "DROP TABLE journey.alerts",
                  "ALTER TABLE journey.touchpoints DELETE WHERE 1", "CREATE TABLE journey.x (a UInt8) ENGINE = Memory"):
        with pytest.raises(DatabaseError, match=r"Code: 164\. DB::Exception: bi: Cannot execute query in readonly"):
            bi.command(write)
    admin = get_client(url, "default", SECRETS["CLICKHOUSE_PASSWORD"])
    assert admin.query("EXISTS TABLE journey.alerts").result_rows == [(1,)]


def test_each_process_gets_only_the_secrets_it_uses(secured_stack: dict[str, Any]) -> None:
    """`filesystem('/proc/self/environ')` once showed every secret of the stack from the ClickHouse
    endpoint; now no process holds a secret it does not use (nor the caller's other variables)."""
    home = secured_stack["home"]
    secrets = {**SECRETS, "JOURNEY_WEBHOOKS": "webhook URL"}
    uses = {"broker": set(), "clickhouse": {"CLICKHOUSE_PASSWORD", "CLICKHOUSE_READONLY_PASSWORD"},
            "sink": {"CLICKHOUSE_PASSWORD"},
            # the managers' dashboard it serves reads ClickHouse (the read-only user when there is one)
            "notifier": {"JOURNEY_ONCALL_TOKEN", "JOURNEY_WEBHOOKS", "CLICKHOUSE_PASSWORD",
                         "CLICKHOUSE_READONLY_PASSWORD"},
            "collector": set()}
    seen = {}
    for proc in processes.tracked(home / "pids"):
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes().decode(errors="replace").split("\0")
        names = {line.split("=", 1)[0] for line in environ if "=" in line}
        seen[proc.name] = names & set(secrets)
        assert "PYTEST_CURRENT_TEST" not in names, proc.name  # the caller's environment stays behind
    assert set(seen) >= {"broker", "clickhouse", "sink", "notifier", "worker-0"}
    assert {name: found for name, found in seen.items()} == {name: uses.get(name, set()) for name in seen}


def test_the_state_directory_is_its_owner_s_only(secured_stack: dict[str, Any]) -> None:
    import stat

    home = secured_stack["home"]
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    shared = [str(p) for p in home.rglob("*") if p.is_file() and not p.is_symlink() and p.stat().st_mode & 0o077]
    assert shared == []
    assert any(p.name == "clickhouse.log" for p in home.rglob("*"))  # it looked at the real files


def test_on_call_actions_need_the_token(secured_stack: dict[str, Any]) -> None:
    env = secured_stack["env"]
    base = f"http://127.0.0.1:{env['JOURNEY_WEB_PORT']}"
    body = json.dumps({"by": "intruder"}).encode()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-Journey-Token": "wrong"},
                    {"Authorization": f"Bearer {env['JOURNEY_ONCALL_TOKEN']}x"}):
        for path in ("/api/incidents/inc-x/ack", "/api/incidents/inc-x/resolve"):
            request = urllib.request.Request(base + path, data=body, method="POST",
                                             headers={"Content-Type": "application/json", **headers})
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=10)
            assert refused.value.code == 401, (path, headers)
    with urllib.request.urlopen(base + "/", timeout=10) as page:  # the page itself holds no data
        assert page.status == 200 and page.headers["Referrer-Policy"] == "no-referrer"
    good = urllib.request.Request(base + "/api/incidents/inc-x/ack", data=body, method="POST",
                                  headers={"Content-Type": "application/json",
                                           "Authorization": f"Bearer {env['JOURNEY_ONCALL_TOKEN']}"})
    with pytest.raises(urllib.error.HTTPError) as unknown:
        urllib.request.urlopen(good, timeout=10)
    assert unknown.value.code == 404  # past the token: refused only because no such incident is open


def test_no_secret_in_logs_outputs_state_or_argv(secured_stack: dict[str, Any]) -> None:
    env, home, outputs = secured_stack["env"], secured_stack["home"], secured_stack["outputs"]
    for pid in stack_pids(home):  # argv is world-readable (`ps`): secrets travel in the environment
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        assert not [s for s in (*SECRETS.values(), HOOK_SECRET) if s in argv], argv
    now = int(time.time() * 1000)
    complaint = {"event_id": f"sec-{uuid.uuid4().hex[:6]}", "journey_id": "sec-1", "customer_id": "c-sec",
                 "type": "COMPLAINT_FILED", "channel": "pos", "occurred_at": iso_from_ms(now), "store_id": "seoul-01"}
    runs = [journey(["emit"], env, json.dumps(complaint) + "\n")]
    logs = home / "logs"
    # the high-severity complaint pages the webhook, which is down: retries and the give-up get logged
    assert wait_until(lambda: "gave up" in (logs / "notifier.log").read_text(), 90, interval_s=1), \
        (logs / "notifier.log").read_text()[-2000:]
    api = f"http://127.0.0.1:{env['JOURNEY_WEB_PORT']}/api/incidents"
    for token in ("wrong-token", env["JOURNEY_ONCALL_TOKEN"]):
        request = urllib.request.Request(api, headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                outputs.append(response.read().decode())
        except urllib.error.HTTPError as refused:
            assert refused.code == 401
            outputs.append(refused.read().decode())
    runs += [journey(["status"], env), journey(["report", "--since", "1h"], env),
             journey(["alerts", "--from-beginning", "--idle-timeout", "3"], env),
             journey(["tail", "touchpoints", "--from-beginning", "--idle-timeout", "2"], env)]
    assert all(run.returncode in (0, 1) and "Traceback" not in run.stderr for run in runs)
    assert runs[0].returncode == 0 and runs[2].returncode == 0, (runs[0].stderr, runs[2].stderr)  # emit, report
    assert any("delivery_failed" in run.stdout or "ops" in run.stdout for run in runs)  # the failure is told
    outputs += [run.stdout + run.stderr for run in runs]
    files = [p for p in (*logs.rglob("*"), *(home / "run").rglob("*"), home / "stack.json") if p.is_file()]
    assert any(p.name == "notifier.log" for p in files) and any(p.name == "clickhouse.log" for p in files)
    texts = {str(p): p.read_text(errors="replace") for p in files} | {f"output {i}": o for i, o in enumerate(outputs)}
    leaks = [(where, name) for where, text in texts.items()
             for name, secret in (*SECRETS.items(), ("webhook URL", HOOK_SECRET)) if secret in text]
    assert leaks == []


def test_ack_while_the_broker_is_away_says_why_in_one_line(secured_stack: dict[str, Any]) -> None:
    """Last in this module: it pauses the stack's broker, then lets it carry on."""
    from streams.domain.incidents import incident_id

    env, home = secured_stack["env"], secured_stack["home"]
    event_id = f"away-{uuid.uuid4().hex[:6]}"
    complaint = {"event_id": event_id, "journey_id": "away-1", "customer_id": "c-away", "type": "COMPLAINT_FILED",
                 "channel": "pos", "occurred_at": iso_from_ms(int(time.time() * 1000)), "store_id": "seoul-01"}
    assert journey(["emit"], env, json.dumps(complaint) + "\n").returncode == 0
    iid = incident_id("away-1", "complaint", event_id)
    url = f"http://127.0.0.1:{env['JOURNEY_WEB_PORT']}/api/incidents/{iid}"

    def known() -> bool:
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {env['JOURNEY_ONCALL_TOKEN']}"})
        try:
            with urllib.request.urlopen(request, timeout=10):
                return True
        except urllib.error.HTTPError:
            return False

    assert wait_until(known, 60, interval_s=0.5)
    [broker] = [p for p in processes.tracked(home / "pids") if p.name == "broker"]
    os.kill(broker.pid, signal.SIGSTOP)
    try:
        away = journey(["ack", iid, "--by", "s-7"], env)
    finally:
        os.kill(broker.pid, signal.SIGCONT)
    lines = away.stderr.strip().splitlines()
    assert away.returncode == 1 and "Traceback" not in away.stderr
    assert len(lines) == 1 and "broker did not take" in lines[0], away.stderr

    def acked() -> bool:  # once the broker is back, acking works (or the first one arrived after all)
        again = journey(["ack", iid, "--by", "s-7"], env)
        return again.returncode == 0 or "already acknowledged" in again.stderr

    assert wait_until(acked, 90, interval_s=2)
