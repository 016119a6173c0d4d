"""A whole pipeline (worker, sink, notifier) on settings of a test's own, over the session stack."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from infra.base.config import Settings
from infra.base.heartbeat import service_ready
from infra.base.kafka import ensure_topics
from infra.local.processes import free_port, wait_until
from tests.integration.test_detection import start_worker, stop_worker
from tests.integration.test_sink import start_sink
from tests.topic_names import suffixed


def own_topics(stack_settings: Settings, **changes: Any) -> Settings:
    """`stack_settings` with topics, app id and notifier port of its own (topics created), plus `changes`."""
    suffix = uuid.uuid4().hex[:8]
    settings = stack_settings.with_(
        app_id=f"jt-{suffix}", web_port=free_port(), topics=suffixed(stack_settings.topics, suffix), **changes)
    settings.home.mkdir(parents=True, exist_ok=True)
    ensure_topics(settings, settings.topics.all())
    return settings


@contextmanager
def pipeline_processes(settings: Settings) -> Iterator[Settings]:
    """Worker, sink and notifier running with `settings`; stopped afterwards."""
    log = open(settings.home / "notifier.log", "ab")  # noqa: SIM115 - closed below
    worker, sink = start_worker(settings), start_sink(settings)
    notifier = subprocess.Popen([sys.executable, "-m", "consumers.notifier"], env={**os.environ, **settings.to_env()},
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: service_ready(settings, "notifier") or notifier.poll() is not None, 60)
        yield settings
    finally:
        for proc in (notifier, sink):
            proc.terminate()
            proc.wait(timeout=30)
        log.close()
        stop_worker(worker)
