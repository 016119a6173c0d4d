"""How `journey up` starts the Faust worker(s) and knows they are ready."""

from __future__ import annotations

import json
import os
import sys
import time

from infra.config import Settings
from infra.stack import SERVICE_FACTORIES, Component

HEARTBEAT_FRESH_MS = 5000


def worker_ready(settings: Settings, worker_id: int) -> bool:
    """True when worker `worker_id` wrote a fresh heartbeat (it has recovered its state and runs)."""
    path = settings.home.resolve() / "run" / f"worker-{worker_id}.json"
    try:
        beat = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    now = int(time.time() * 1000)
    return bool(beat.get("ready")) and now - beat.get("at", 0) < HEARTBEAT_FRESH_MS and _alive(beat.get("pid"))


def _alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def worker_components(settings: Settings) -> list[Component]:
    """One component per worker process (JOURNEY_WORKERS, default 1)."""
    components = []
    for worker_id in range(settings.workers):
        components.append(Component(
            name=f"worker-{worker_id}",
            address=f"faust worker {worker_id} (group journey-tracker)",
            ready=lambda w=worker_id: worker_ready(settings, w),
            argv=[sys.executable, "-m", "streams.worker", "worker", "--loglevel", "info"],
            env={"JOURNEY_WORKER_ID": str(worker_id)},
        ))
    return components


def register() -> None:
    """Add the workers to the stack `journey up` starts (idempotent)."""
    if _factory not in SERVICE_FACTORIES:
        SERVICE_FACTORIES.append(_factory)


def _factory(settings: Settings) -> list[Component]:
    return worker_components(settings)
