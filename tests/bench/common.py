"""What every benchmark shares: the broker and ClickHouse endpoint on free ports, then gone."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from infra import processes, stack
from infra.config import Settings


@contextmanager
def bench_servers(app_id: str) -> Iterator[Settings]:
    """A fresh local stack (servers only) in a temporary JOURNEY_HOME, stopped afterwards."""
    with tempfile.TemporaryDirectory() as home:
        settings = Settings.from_env().with_(home=Path(home), kafka_port=processes.free_port(),
                                             clickhouse_port=processes.free_port(), app_id=app_id)
        stack.start(settings, stack.plan(settings, with_services=False), echo=lambda _: None)
        try:
            yield settings
        finally:
            stack.stop(settings)
