"""Service heartbeats: each long-running service writes `$JOURNEY_HOME/run/<name>.json` every
second; `journey up` waits for it and `journey status` shows it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from infra.base.config import Settings
from infra.base.quarantine import QUARANTINE

FRESH_MS = 5000


def heartbeat_path(settings: Settings, name: str) -> Path:
    return settings.home.resolve() / "run" / f"{name}.json"


def worker_names(settings: Settings) -> list[str]:
    """The workers that wrote a heartbeat under this JOURNEY_HOME (`worker-0`, ...)."""
    run = settings.home.resolve() / "run"
    return sorted(p.stem for p in run.glob("worker-*.json")) if run.is_dir() else []


def write_heartbeat(settings: Settings, name: str, data: dict[str, Any]) -> None:
    """Atomically replace the heartbeat (a reader never sees half a file)."""
    path = heartbeat_path(settings, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    quarantined = QUARANTINE.summary()  # batches this process could not read (infra/base/quarantine.py)
    extra = {"quarantine": quarantined} if quarantined else {}
    tmp.write_text(json.dumps({"pid": os.getpid(), "at": int(time.time() * 1000), "ready": True, **data, **extra}))
    tmp.replace(path)


def read_heartbeat(settings: Settings, name: str) -> dict[str, Any] | None:
    try:
        return json.loads(heartbeat_path(settings, name).read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def service_ready(settings: Settings, name: str) -> bool:
    """True when `name` wrote a fresh heartbeat and its process is alive."""
    beat = read_heartbeat(settings, name)
    if not beat or not beat.get("ready"):
        return False
    return int(time.time() * 1000) - beat.get("at", 0) < FRESH_MS and _alive(beat.get("pid"))


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
