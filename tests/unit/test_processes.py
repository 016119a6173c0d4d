"""Pid-file tracking and stopping of stack processes (real child processes, no broker)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from infra.local import processes


def test_spawn_track_and_stop(tmp_path: Path) -> None:
    pid_dir = tmp_path / "pids"
    proc = processes.spawn("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"],
                           tmp_path / "logs" / "sleeper.log", pid_dir)
    [tracked] = processes.tracked(pid_dir)
    assert tracked.name == "sleeper" and tracked.pid == proc.pid and tracked.alive()
    processes.stop(tracked, pid_dir, grace_s=5)
    proc.wait(timeout=5)
    assert not tracked.alive()
    assert processes.tracked(pid_dir) == []


def test_stop_kills_a_process_that_ignores_sigterm(tmp_path: Path) -> None:
    pid_dir = tmp_path / "pids"
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    log = tmp_path / "stubborn.log"
    proc = processes.spawn("stubborn", [sys.executable, "-c", code], log, pid_dir)
    assert processes.wait_until(lambda: "ready" in log.read_text(), 10)
    [tracked] = processes.tracked(pid_dir)
    processes.stop(tracked, pid_dir, grace_s=0.5)
    proc.wait(timeout=10)
    assert not tracked.alive()


def test_recycled_pid_is_not_taken_for_our_process(tmp_path: Path) -> None:
    stale = processes.TrackedProcess("old", pid=1, start_time="not-the-real-start-time")
    assert not stale.alive()


def test_port_free_sees_a_listener() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert not processes.port_free("127.0.0.1", port)
    assert processes.port_free("127.0.0.1", processes.free_port())


def test_a_live_pid_running_another_command_is_not_ours(tmp_path: Path) -> None:
    """After a reboot a recorded pid (and even its start time) can belong to someone else."""
    pid_dir = tmp_path / "pids"
    proc = processes.spawn("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"],
                           tmp_path / "sleeper.log", pid_dir)
    try:
        [tracked] = processes.tracked(pid_dir)
        assert tracked.alive()
        impostor = processes.TrackedProcess("sleeper", tracked.pid, tracked.start_time, ("/usr/sbin/sshd", "-D"))
        assert not impostor.alive()
    finally:
        proc.kill()
        proc.wait(timeout=5)


def test_a_child_is_alive_as_soon_as_spawn_returns(tmp_path: Path) -> None:
    """Regression: between `Popen` returning and the kernel setting up the new program's
    arguments, /proc/PID/cmdline is empty; a pid file recorded then was called dead (under load
    `stop` skipped a fresh child and left it running). `spawn` returns after that window."""
    pid_dir = tmp_path / "pids"
    for attempt in range(20):  # the window is short: several tries (it failed ~1 in 40 under load)
        proc = processes.spawn(f"sleeper-{attempt}", [sys.executable, "-c", "import time; time.sleep(60)"],
                               tmp_path / "sleeper.log", pid_dir)
        try:
            [tracked] = processes.tracked(pid_dir)
            assert tracked.alive()
            processes.stop(tracked, pid_dir, grace_s=5)
            assert proc.wait(timeout=10) is not None
        finally:
            proc.kill()
            proc.wait(timeout=5)


def test_a_pid_file_is_never_read_half_written(tmp_path: Path) -> None:
    """Regression: written in place (truncate, then write), a pid file read meanwhile was empty,
    and `tracked` deletes a pid file it cannot parse: `journey status` during a start lost one."""
    import json
    import threading

    path = tmp_path / "sleeper.pid"
    record = json.dumps({"name": "sleeper", "pid": 1, "start_time": "1", "cmdline": ["x" * 2000]})
    processes.write_private(path, record)
    done = threading.Event()

    def rewrite() -> None:
        for _ in range(3000):
            processes.write_private(path, record)
        done.set()

    writer = threading.Thread(target=rewrite)
    writer.start()
    reads = set()
    while not done.is_set():
        reads.add(path.read_text())
    writer.join()
    assert reads == {record}
    assert [p.name for p in tmp_path.iterdir()] == ["sleeper.pid"]  # no temporary file left
    assert path.stat().st_mode & 0o777 == 0o600
