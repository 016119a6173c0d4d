"""Environment for a test that runs its own `journey` stack: free ports for every listener."""

from __future__ import annotations

import os
from pathlib import Path

from infra.local import processes

PORT_VARIABLES = ("JOURNEY_KAFKA_PORT", "JOURNEY_CLICKHOUSE_PORT", "JOURNEY_WEB_PORT", "JOURNEY_COLLECTOR_PORT",
                  "JOURNEY_SCHEMA_REGISTRY_PORT")


def own_stack_env(home: Path, **extra: str) -> dict[str, str]:
    """os.environ without external servers, JOURNEY_HOME=home, every port free, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("KAFKA_BOOTSTRAP_SERVERS", "CLICKHOUSE_URL", "SCHEMA_REGISTRY_URL")}
    env["JOURNEY_HOME"] = str(home)
    env.update({name: str(processes.free_port()) for name in PORT_VARIABLES})
    env.update(extra)
    return env
