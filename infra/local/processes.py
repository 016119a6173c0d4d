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

from infra.base.config import SECRET_VARIABLES

# What a child process of the stack inherits from the caller's environment: the system's basics,
# and (for our own services) the tracker's configuration. Everything else (the caller's cloud
# keys, tokens, whatever the shell holds) stays behind, and so do the secrets the process does
# not use.
_BASIC_VARIABLES = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM",
                              "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHASHSEED", "PYTHONUNBUFFERED",
                              "SSL_CERT_FILE", "SSL_CERT_DIR", "RUST_LOG", "RUST_BACKTRACE"})
_CONFIG_PREFIXES = ("JOURNEY_", "KAFKA_", "CLICKHOUSE_", "SCHEMA_REGISTRY_", "LC_", "COVERAGE_")
PRIVATE_FILE = 0o600


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


def child_environment(environ: Mapping[str, str], secrets: Sequence[str], with_config: bool = True) -> dict[str, str]:
    """The environment for a child: basics, the tracker's configuration (unless `with_config` is
    false, e.g. the broker) and, of the secret variables, only `secrets`."""
    unknown = set(secrets) - set(SECRET_VARIABLES)
    if unknown:
        raise ValueError(f"not secret variables: {sorted(unknown)}")
    allowed_secrets = set(secrets)
    env = {}
    for name, value in environ.items():
        if name in SECRET_VARIABLES:
            keep = name in allowed_secrets
        else:
            keep = name in _BASIC_VARIABLES or (with_config and name.startswith(_CONFIG_PREFIXES))
        if keep:
            env[name] = value
    return env


def private_dir(path: Path) -> Path:
    """`path` as a directory only its owner can enter (0700), made if missing."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)  # an older state dir made 0755 is closed too
    return path


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by the owner only (0600), all at once.

    Written beside it and renamed over it: a reader (`journey status`, `tracked`) sees the old
    file or the new one, never an empty or half-written one (which `tracked` would take for a
    broken pid file and delete).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def spawn(
    name: str,
    argv: Sequence[str],
    log_path: Path,
    pid_dir: Path,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` in its own session (so Ctrl-C of a caller does not reach it) and record it.

    Its log and pid file are 0600 and it runs with umask 077: what it writes (chDB data, RocksDB,
    logs with customer ids) is its owner's only.
    """
    log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    pid_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE)
    os.fchmod(fd, PRIVATE_FILE)
    with os.fdopen(fd, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=True,
            umask=0o077,
        )
    _wait_for_exec(proc)
    record = {"name": name, "pid": proc.pid, "start_time": _start_time(proc.pid), "argv": argv[0],
              "cmdline": list(argv)}
    write_private(pid_dir / f"{name}.pid", json.dumps(record))
    return proc


def _wait_for_exec(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """Return once the kernel has set up the new program's command line (or the child ended).

    `Popen` returns when the exec passed its point of no return (the close-on-exec pipe it
    waits on is closed there), but the kernel sets up the new image's argument area a moment
    later: in between, /proc/PID/cmdline is empty and `TrackedProcess.alive()` would call our
    own fresh child dead (seen under load: `journey down` right after a start left it running).
    """
    deadline = time.monotonic() + timeout_s
    while not _cmdline(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)


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
