"""What every benchmark shares: the broker and ClickHouse endpoint on free ports, then gone."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from infra.base.config import Settings
from infra.base.heartbeat import service_ready
from infra.local import processes, stack


@contextmanager
def bench_servers(app_id: str, **changes: object) -> Iterator[Settings]:
    """A fresh local stack (servers only) in a temporary JOURNEY_HOME, stopped afterwards."""
    with tempfile.TemporaryDirectory() as home:
        settings = Settings.from_env().with_(home=Path(home), kafka_port=processes.free_port(),
                                             clickhouse_port=processes.free_port(),
                                             schema_registry_port=processes.free_port(), app_id=app_id, **changes)
        stack.start(settings, stack.plan(settings, with_services=False), echo=lambda _: None)
        # the endpoint's generated password, pinned: processes a benchmark starts get it through to_env
        settings = settings.with_(clickhouse_password_set=settings.clickhouse_password,
                                  clickhouse_readonly_password_set=settings.clickhouse_readonly_password)
        try:
            yield settings
        finally:
            stack.stop(settings)


def start_service(settings: Settings, module: str, name: str, worker: int | None = None,
                  stderr: int | IO[str] = subprocess.DEVNULL, timeout_s: float = 120) -> subprocess.Popen[bytes]:
    """`python -m module` with `settings` (worker id `worker` if given), once its heartbeat `name`
    says it is ready; the benchmark ends (SystemExit) if it exits or is not ready in time."""
    env = {**os.environ, **settings.to_env()}
    if worker is not None:
        env["JOURNEY_WORKER_ID"] = str(worker)
    proc = subprocess.Popen([sys.executable, "-m", module], env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    ready = processes.wait_until(lambda: service_ready(settings, name) or proc.poll() is not None, timeout_s)
    if not ready or proc.poll() is not None:
        proc.kill()
        code = proc.wait(timeout=30)
        raise SystemExit(f"{name} exited at start (code {code})" if ready else f"{name} not ready within {timeout_s} s")
    return proc


def stop_services(procs: Iterable[subprocess.Popen[bytes]], timeout_s: float = 60) -> None:
    """SIGTERM every process first (they shut down side by side), then wait for each."""
    procs = list(procs)
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=timeout_s)


def own_cpu_seconds() -> float:
    """CPU time of this process (all its threads), not of the servers it started."""
    t = os.times()
    return t.user + t.system


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of `pid` and its live descendants, from /proc (Linux).

    Benchmarks report CPU per event next to events/s: on a shared machine the wall-clock rate
    moves with other load, the CPU cost of the work much less.
    """
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += times.get(current, 0.0)
        todo.extend(children.get(current, []))
    return total
