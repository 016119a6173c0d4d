"""Incidents: deterministic ids, creation with severity, recovery events and their metrics."""

from __future__ import annotations

import hashlib
from typing import Any

from streams.domain.business_time import StoreCalendar, add_business_seconds, business_seconds
from streams.domain.config import SEVERITIES, RuleConfig

Incident = dict[str, Any]  # the record published on the incidents topic (schemas/incident.avsc)


def incident_id(journey_id: str, rule: str, ref: str) -> str:
    """Same journey, rule and request (or triggering event) -> same id, in live and in replay."""
    return "inc-" + hashlib.sha1(f"{journey_id}|{rule}|{ref}".encode(), usedforsecurity=False).hexdigest()[:16]


def bump(severity: str) -> str:
    """One severity level up, capped at critical."""
    return SEVERITIES[min(SEVERITIES.index(severity) + 1, len(SEVERITIES) - 1)]


def new_incident(
    rule: RuleConfig, journey_id: str, ref: str, trigger: dict[str, Any], failed_at: int,
    detected_at: int, repeat_customer: bool, request_id: str | None = None,
    calendar: StoreCalendar | None = None, about: str | None = None,
) -> Incident:
    """A freshly opened incident (version 1); its SLA deadlines count `calendar`'s open hours."""
    incident = {
        "incident_id": incident_id(journey_id, rule.name, ref),
        "version": 1,
        "journey_id": journey_id,
        "customer_id": trigger.get("customer_id"),
        "rule": rule.name,
        "severity": bump(rule.severity) if repeat_customer else rule.severity,
        "servqual": rule.servqual,
        "store_id": trigger.get("store_id"),
        "channel": trigger.get("channel"),
        "status": "open",
        "failed_at": failed_at,
        "detected_at": detected_at,
        "updated_at": failed_at,
        "trigger_event_id": trigger["event_id"],
        "request_id": request_id,
        "repeat_customer": repeat_customer,
        "acknowledged_at": None,
        "acknowledged_by": None,
        "first_response_at": None,
        "resolved_at": None,
        "detection_lag_s": round(max(0, detected_at - failed_at) / 1000, 3),
        "time_to_acknowledge_s": None,
        "time_to_first_response_s": None,
        "time_to_resolve_s": None,
        "sla_acknowledge_breached": False,
        "sla_first_response_breached": False,
        "sla_resolve_breached": False,
        "compensation_kind": None,
        "compensation_amount": None,
        "followed_up_at": None,
        "post_recovery_score": None,
        "recovered": None,
        "late_fulfilment_at": None,
        "note": None,
        "about": about,
        **PAUSE_DEFAULTS,
    }
    for target, due_field in DUE_FIELD.items():
        incident[due_field] = add_business_seconds(calendar, failed_at, getattr(rule.sla, target))
    return incident


# Fields added with schema v2 (store hours, pauses): an incident kept from before reads as these.
PAUSE_DEFAULTS: dict[str, Any] = {"waiting_since": None, "paused_s": 0.0, "paused_business_s": 0.0}
DUE_FIELD = {"acknowledge_s": "sla_acknowledge_due_at", "first_response_s": "sla_first_response_due_at",
             "resolve_s": "sla_resolve_due_at"}
BUSINESS_METRIC = {"time_to_acknowledge_s": "business_time_to_acknowledge_s",
                   "time_to_first_response_s": "business_time_to_first_response_s",
                   "time_to_resolve_s": "business_time_to_resolve_s"}
WAITING, REPLIED = "WAITING_ON_CUSTOMER", "CUSTOMER_REPLIED"
WAITING_STATUS = frozenset({"waiting on customer", "waiting on the customer", "pending"})  # CUSTOMER_CONTACTED attrs


WITHDRAWN = "withdrawn"  # paged at its deadline, then an on-time fulfilment arrived within the lateness


def withdrawable(incident: Incident, fulfilled_at: int, watermark: int, lateness_ms: int) -> bool:
    """Should a fulfilment that occurred at `fulfilled_at`, read while the watermark stands at
    `watermark`, withdraw this breach? Only when it was on time (before the deadline) and the
    deadline was not final yet: the watermark is at most `lateness_ms` past it. Later, the
    breach stands (and the fulfilment is a late event, counted)."""
    deadline = incident["failed_at"]
    return (incident["status"] != WITHDRAWN and fulfilled_at < deadline
            and watermark - deadline <= lateness_ms)


def withdraw(incident: Incident, fulfilled_at: int) -> None:
    """The breach never happened: status `withdrawn` (the page clears; SLA metrics leave it out).

    `late_fulfilment_at` holds the fulfilment's time (before `failed_at`: it was on time, only
    reported late)."""
    incident["status"] = WITHDRAWN
    incident["late_fulfilment_at"] = fulfilled_at
    incident["version"] += 1


def _seconds(incident: Incident, at: int) -> float:
    return round((at - incident["failed_at"]) / 1000, 3)


# Recovery stage -> (timestamp field, metric field, SLA flag, SLA target attribute)
STAGES = {
    "FAILURE_ACKNOWLEDGED": ("acknowledged_at", "time_to_acknowledge_s", "sla_acknowledge_breached", "acknowledge_s"),
    "CUSTOMER_CONTACTED": ("first_response_at", "time_to_first_response_s", "sla_first_response_breached",
                           "first_response_s"),
    "RECOVERY_RESOLVED": ("resolved_at", "time_to_resolve_s", "sla_resolve_breached", "resolve_s"),
}


def apply_recovery(incident: Incident, event: dict[str, Any], rule: RuleConfig,
                   calendar: StoreCalendar | None = None) -> bool:
    """Apply one recovery or post-recovery event; True when the incident changed.

    `calendar`: the store hours its SLA clocks count (None: calendar time).
    """
    kind, at = event["type"], event["occurred_at"]
    attrs = event.get("attrs") or {}
    if incident["status"] == WITHDRAWN:
        return False  # nothing failed: there is nothing to recover
    if kind in (WAITING, REPLIED):
        if not set_waiting(incident, kind == WAITING, at, calendar, rule):
            return False
    elif kind in STAGES:
        at_field, metric, flag, target = STAGES[kind]
        if incident[at_field] is not None:
            return False  # the first acknowledgement / contact / resolution is what counts
        if kind == "RECOVERY_RESOLVED":
            set_waiting(incident, False, at, calendar, rule)  # resolving ends a wait
        elif kind == "CUSTOMER_CONTACTED" and str(attrs.get("status", "")).lower().replace("_", " ") in WAITING_STATUS:
            set_waiting(incident, True, at, calendar, rule)  # a helpdesk's "reply and set pending"
        incident[at_field] = at
        incident[metric] = _seconds(incident, at)
        # the SLA counts business time, less the time spent waiting on the customer (resolve only)
        business = business_seconds(calendar, incident["failed_at"], at)
        incident[BUSINESS_METRIC[metric]] = round(business, 3)
        paused = incident.get("paused_business_s", 0.0) if target == "resolve_s" else 0.0
        if business - paused > getattr(rule.sla, target):
            incident[flag] = True
        if kind == "FAILURE_ACKNOWLEDGED":
            incident["acknowledged_by"] = event.get("staff_id") or attrs.get("by")
            if incident["status"] == "open":
                incident["status"] = "acknowledged"
        elif kind == "RECOVERY_RESOLVED":
            incident["status"] = "resolved"
        if attrs.get("note"):
            incident["note"] = attrs["note"][:500]
    elif kind == "COMPENSATION_GIVEN":
        amount = _number(attrs.get("amount"))
        incident["compensation_kind"] = attrs.get("kind") or incident["compensation_kind"] or "unspecified"
        if amount is not None:
            incident["compensation_amount"] = round((incident["compensation_amount"] or 0.0) + amount, 2)
    elif kind == "FOLLOW_UP_DONE":
        if incident["followed_up_at"] is not None:
            return False
        incident["followed_up_at"] = at
    elif kind == "FEEDBACK_SUBMITTED":
        score = _number(attrs.get("score"))
        if score is None:
            return False
        incident["post_recovery_score"] = int(score)
        incident["recovered"] = score >= 4
    else:
        return False
    incident["updated_at"] = max(incident["updated_at"], at)
    incident["version"] += 1
    return True


def set_waiting(incident: Incident, waiting: bool, at: int, calendar: StoreCalendar | None,
                rule: RuleConfig) -> bool:
    """Start or end a wait on the customer: the resolve clock stops while it lasts.

    Ending a wait adds its length to `paused_s` (and its open hours to `paused_business_s`)
    and moves the resolve deadline on by as much. True when something changed.
    """
    since = incident.get("waiting_since")
    if incident["status"] == "resolved" or waiting == (since is not None):
        return False
    if waiting:
        incident["waiting_since"] = at
        incident["sla_resolve_due_at"] = None  # no resolve deadline while the customer has the ball
        return True
    at = max(at, since)
    incident["waiting_since"] = None
    incident["paused_s"] = round(incident.get("paused_s", 0.0) + (at - since) / 1000, 3)
    paused = round(incident.get("paused_business_s", 0.0) + business_seconds(calendar, since, at), 3)
    incident["paused_business_s"] = paused
    incident["sla_resolve_due_at"] = add_business_seconds(calendar, incident["failed_at"], rule.sla.resolve_s + paused)
    return True


def breach_sla(incident: Incident, target: str, at: int) -> bool:
    """The watermark passed an SLA target without the recovery event: flag it (once)."""
    for at_field, _metric, flag, name in STAGES.values():
        if name == target:
            waiting = name == "resolve_s" and incident.get("waiting_since") is not None
            if incident[at_field] is not None or incident[flag] or waiting or incident["status"] == WITHDRAWN:
                return False
            incident[flag] = True
            incident["updated_at"] = max(incident["updated_at"], at)
            incident["version"] += 1
            return True
    raise ValueError(f"unknown SLA target {target}")


def mark_recovered(incident: Incident, at: int) -> bool:
    """The customer came back: recovered, unless feedback already said otherwise."""
    if incident["recovered"] is not None:
        return False
    incident["recovered"] = True
    incident["updated_at"] = max(incident["updated_at"], at)
    incident["version"] += 1
    return True


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None
