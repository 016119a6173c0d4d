"""Child processes of the local stack: spawn detached, track by pid file, stop for sure.

A pid file alone can point at a recycled pid after a reboot or a power cut, so each one also
records the process start time and command line (from /proc): a pid counts as ours, alive, only
while both still match. Anything else is a stale pid file, forgotten rather than obeyed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


def _start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (field 22 of /proc/PID/stat), or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; fields after the last ')' are fixed.
    fields = stat.rsplit(")", 1)[1].split()
    if fields and fields[0] == "Z":  # a zombie has exited; it only waits to be reaped
        return None
    return fields[19] if len(fields) > 19 else None


def _cmdline(pid: int) -> list[str] | None:
    """The command line of `pid` (/proc/PID/cmdline), or None if gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.decode(errors="replace").split("\0")[:-1] if raw else []


@dataclass(frozen=True)
class TrackedProcess:
    """A process started by the stack, as recorded in its pid file."""

    name: str
    pid: int
    start_time: str | None
    cmdline: tuple[str, ...] | None = None  # None: a pid file from before command lines were kept

    def alive(self) -> bool:
        """Our process still runs: same pid, start time and (if recorded) command line.

        After a reboot both pids and start times (clock ticks since boot) are small again, so a
        start time alone can match someone else's process; the command line tells them apart.
        """
        if self.start_time is None or _start_time(self.pid) != self.start_time:
            return False
        return self.cmdline is None or tuple(_cmdline(self.pid) or ()) == self.cmdline


def spawn(
    name: str,
    argv: Sequence[str],
    log_path: Path,
    pid_dir: Path,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` in its own session (so Ctrl-C of a caller does not reach it) and record it."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    pid_dir.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
    record = {"name": name, "pid": proc.pid, "start_time": _start_time(proc.pid), "argv": argv[0],
              "cmdline": list(argv)}
    (pid_dir / f"{name}.pid").write_text(json.dumps(record))
    return proc


def tracked(pid_dir: Path) -> list[TrackedProcess]:
    """Every process recorded under `pid_dir`, alive or not."""
    result = []
    for path in sorted(pid_dir.glob("*.pid")) if pid_dir.exists() else []:
        try:
            data = json.loads(path.read_text())
            cmdline = data.get("cmdline")
            result.append(TrackedProcess(data["name"], int(data["pid"]), data.get("start_time"),
                                         tuple(cmdline) if isinstance(cmdline, list) else None))
        except (ValueError, KeyError, OSError):
            path.unlink(missing_ok=True)
    return result


def stop(proc: TrackedProcess, pid_dir: Path, grace_s: float = 10.0) -> None:
    """SIGTERM the process group, wait up to `grace_s`, then SIGKILL; forget its pid file."""
    if proc.alive():
        _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while proc.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.alive():
            _signal_group(proc.pid, signal.SIGKILL)
            while proc.alive() and time.monotonic() < deadline + 5:
                time.sleep(0.05)
    (pid_dir / f"{proc.name}.pid").unlink(missing_ok=True)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)  # the child leads its own session: reach its children too
    except ProcessLookupError:
        return
    except PermissionError:
        os.kill(pid, sig)


def port_free(host: str, port: int) -> bool:
    """True when nothing listens on host:port (we can bind it ourselves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS considers free right now (for tests and benchmarks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_until(check: object, timeout_s: float, interval_s: float = 0.1) -> bool:
    """Poll `check()` until it returns true or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        if check():  # type: ignore[operator]
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)
