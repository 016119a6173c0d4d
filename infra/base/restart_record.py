"""What the last re-seed of the embedded broker restored, as the sink reads it (`infra.local.restore` writes it).

The sink needs it at every start, and the sink is not part of the local stack: it may run
against any cluster, so this lives in the shared base, not beside the re-seed itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from infra.base.config import Settings


def versions_path(settings: Settings) -> Path:
    return settings.home.resolve() / "run-restore" / "incident_versions.json"


def restored_incident_versions(settings: Settings) -> dict[str, tuple[int, int]]:
    """Incidents ClickHouse held when the stack last re-seeded: id -> (newest version, first
    detected_at). The sink skips those versions and keeps that detected_at on newer ones."""
    try:
        data = json.loads(versions_path(settings).read_text())
        return {str(k): (int(v[0]), int(v[1])) for k, v in data.items()}
    except (OSError, ValueError, TypeError, IndexError, AttributeError):
        return {}


def keep_first_detection(records: list[dict[str, Any]], restored: dict[str, tuple[int, int]]) -> list[dict[str, Any]]:
    """Incident changes the sink writes after a re-seed: versions ClickHouse has already are
    dropped (the replay emits them again), and newer ones keep the incident's first `detected_at`
    (the replay detected it anew at the restart: its detection lag would be the downtime)."""
    kept = []
    for record in records:
        known = restored.get(record["incident_id"])
        if known is None:
            kept.append(record)
        elif record["version"] > known[0]:
            detected = min(known[1], record["detected_at"])
            kept.append({**record, "detected_at": detected,
                         "detection_lag_s": round(max(0, detected - record["failed_at"]) / 1000, 3)})
    return kept
