"""Acknowledge / resolve as touchpoint events: what `journey ack`, `journey resolve` and the page emit.

Event-sourced: the worker applies them like any recovery event, so the incident, its metrics
and the alert lifecycle all update from the same record.
"""

from __future__ import annotations

import uuid
from typing import Any

ACTIONS = {"ack": "FAILURE_ACKNOWLEDGED", "resolve": "RECOVERY_RESOLVED"}


class ActionRefused(ValueError):
    """The action does not apply to this incident (unknown, already acknowledged, resolved)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def check_action(action: str, incident_id: str, state: dict[str, Any] | None, closed: bool) -> None:
    """Raise `ActionRefused` with a clear reason when `action` cannot apply to the incident."""
    if action not in ACTIONS:
        raise ActionRefused(f"unknown action {action!r}: use ack or resolve", 400)
    if closed:
        raise ActionRefused(f"incident {incident_id} is already resolved (or withdrawn)", 409)
    if state is None:
        raise ActionRefused(f"unknown incident {incident_id}: no open incident has this id "
                            "(`journey alerts` or the on-call page list them)", 404)
    if action == "ack" and state.get("acknowledged_at") is not None:
        by = state.get("acknowledged_by") or "someone"
        raise ActionRefused(f"incident {incident_id} is already acknowledged (by {by})", 409)


def recovery_event(incident: dict[str, Any], action: str, by: str, note: str | None, now_ms: int) -> dict[str, Any]:
    """The recovery touchpoint for `action` on `incident`, done by `by` now."""
    attrs = {"by": by}
    if note:
        attrs["note"] = note[:500]
    return {
        "event_id": f"{action}-{uuid.uuid4().hex}", "journey_id": incident["journey_id"],
        "customer_id": incident.get("customer_id"), "type": ACTIONS[action], "stage": "recovery",
        "channel": "staff", "occurred_at": max(now_ms, incident["failed_at"]), "store_id": incident.get("store_id"),
        "staff_id": by, "request_id": None, "promised_within_s": None, "incident_id": incident["incident_id"],
        "attrs": attrs, "source": "oncall",
    }
