"""Run the real collector process (`python -m streams.collector`) for tests and benchmarks."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from infra.base.config import Settings
from infra.base.heartbeat import service_ready
from infra.local.processes import wait_until


@contextmanager
def collector_process(settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    """The collector with `settings` (its heartbeat and log under settings.home), stopped afterwards."""
    settings.home.mkdir(parents=True, exist_ok=True)
    log_path = settings.home / "collector.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "streams.collector"], env={**os.environ, **settings.to_env()},
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            assert wait_until(lambda: service_ready(settings, "collector") or proc.poll() is not None, 60)
            assert proc.poll() is None, log_path.read_text()[-3000:]
            yield proc
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def request(settings: Settings, method: str, path: str, body: bytes | str | Any = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    """One HTTP request to the collector: status, headers, body (parsed when JSON)."""
    if body is not None and not isinstance(body, bytes | str):
        body = json.dumps(body)
    conn = http.client.HTTPConnection(settings.host, settings.collector_port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        raw = response.read()
        parsed: Any = raw
        if response.getheader("Content-Type", "").startswith("application/json"):
            parsed = json.loads(raw)
        return response.status, dict(response.getheaders()), parsed
    finally:
        conn.close()
