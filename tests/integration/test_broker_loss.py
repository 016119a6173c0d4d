"""No broker: every command says so in one line; a worker that loses the broker carries on by itself."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.base.config import Settings
from infra.base.kafka import broker_reachable, ensure_topics
from infra.local import processes
from infra.local.stack import broker_component
from tests.integration.own_stack import own_stack_env
from tests.integration.test_detection import event, incidents_until, produce, start_worker, stop_worker

pytestmark = pytest.mark.integration

KAFKA_COMMANDS = [
    ["emit"], ["tail", "touchpoints"], ["dlq", "list"], ["dlq", "replay"], ["alerts"],
    ["silence", "add", "--store", "seoul-01"], ["silence", "list"], ["silence", "expire", "sil-1"],
]
NOTIFIER_COMMANDS = [["ack", "inc-1"], ["resolve", "inc-1"]]  # through the notifier's API
CLICKHOUSE_COMMANDS = [["report"], ["customer", "c-77"], ["forget", "c-77"]]
STACK_COMMANDS = [["up", "-d"], ["demo"], ["smoke"]]  # with KAFKA_BOOTSTRAP_SERVERS set they use that broker


@pytest.fixture(scope="module")
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers: what a hung or paused broker looks like."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)  # the kernel completes handshakes; nobody ever reads
    yield listener.getsockname()[1]
    listener.close()


def run_journey(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(  # the timeout only guards against a hang; speed is reported, not asserted
        [sys.executable, "-c", "from infra.cli import main; main()", *args], env=env, input="{}\n",
        capture_output=True, text=True, timeout=120,
    )
    return done, time.monotonic() - started


def nothing_there_env(tmp_path: Path, port: int) -> dict[str, str]:
    return own_stack_env(tmp_path, KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{port}",
                         CLICKHOUSE_URL=f"http://127.0.0.1:{port}", JOURNEY_WEB_PORT=str(port))


def assert_one_clear_line(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0, done
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    assert len(lines) == 1 and lines[0].startswith("journey: error:"), done.stderr
    assert any(word in lines[0] for word in expected), lines[0]


@pytest.mark.parametrize("args", KAFKA_COMMANDS + NOTIFIER_COMMANDS + CLICKHOUSE_COMMANDS + STACK_COMMANDS,
                         ids=" ".join)
def test_every_command_fails_fast_with_one_line_when_nothing_listens(args: list[str], tmp_path: Path) -> None:
    closed = processes.free_port()  # nothing listens here
    done, took = run_journey(args, nothing_there_env(tmp_path, closed))
    print(f"journey {' '.join(args)}: exit {done.returncode} after {took:.1f} s: {done.stderr.strip()}")
    assert_one_clear_line(done, "not reachable", "unreachable", "not answering")


@pytest.mark.parametrize("args", [*KAFKA_COMMANDS[:5], ["report"]], ids=" ".join)
def test_a_broker_that_accepts_but_never_answers_fails_fast_too(
    args: list[str], silent_port: int, tmp_path: Path
) -> None:
    done, took = run_journey(args, nothing_there_env(tmp_path, silent_port))
    print(f"journey {' '.join(args)} (silent broker): exit {done.returncode} after {took:.1f} s")
    assert_one_clear_line(done, "not reachable", "unreachable")


def test_status_names_the_broker_down_and_exits_1(tmp_path: Path) -> None:
    done, _ = run_journey(["status", "--json"], nothing_there_env(tmp_path, processes.free_port()))
    report = json.loads(done.stdout)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert {c["name"]: c["ok"] for c in report["components"]}["broker"] is False


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[tuple[Settings, subprocess.Popen[bytes]]]:
    """A Tansu broker of this test alone (pausing the session's broker would stall other tests)."""
    settings = Settings.from_env().with_(
        home=tmp_path / "home", kafka_port=processes.free_port(), app_id=f"jt-{uuid.uuid4().hex[:8]}",
        external_kafka=None,
    )
    settings.home.mkdir(parents=True)
    argv = broker_component(settings).argv
    assert argv is not None
    with open(tmp_path / "broker.log", "ab") as log:
        broker = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    assert processes.wait_until(lambda: broker_reachable(settings.bootstrap_servers, 1.0), 30)
    ensure_topics(settings, settings.topics.all())
    yield settings, broker
    broker.send_signal(signal.SIGCONT)
    broker.terminate()
    broker.wait(timeout=15)


def test_worker_carries_on_after_losing_the_broker_for_a_while(
    own_broker: tuple[Settings, subprocess.Popen[bytes]],
) -> None:
    """The broker is paused (SIGSTOP) for 20 s — longer than the 6 s session timeout, so the
    worker's group membership, fetches and heartbeats all fail — then resumed. The same worker
    process (never restarted) detects what is produced afterwards, and nothing twice."""
    settings, broker = own_broker
    worker = start_worker(settings)
    try:
        now = int(time.time() * 1000)
        tag = uuid.uuid4().hex[:6]
        produce(settings, [event("COMPLAINT_FILED", now, f"{tag}-before-{i}") for i in range(4)])
        before = incidents_until(settings, lambda got: len(got) >= 4, timeout_s=60)
        assert len(before) == 4
        broker.send_signal(signal.SIGSTOP)
        time.sleep(18)
        assert not broker_reachable(settings.bootstrap_servers, 1.0)  # really away, not just slow
        assert worker.poll() is None, "the worker died while the broker was away"
        broker.send_signal(signal.SIGCONT)
        produce(settings, [event("COMPLAINT_FILED", int(time.time() * 1000), f"{tag}-after-{i}") for i in range(4)])
        latest = incidents_until(settings, lambda got: len(got) >= 8, timeout_s=120)
        assert worker.poll() is None, "the worker exited after the broker came back"
        assert sorted(i["journey_id"] for i in latest.values()) == sorted(
            [f"{tag}-before-{i}" for i in range(4)] + [f"{tag}-after-{i}" for i in range(4)])
        assert all(i["version"] == 1 for i in latest.values())  # nothing applied twice
    finally:
        stop_worker(worker)

