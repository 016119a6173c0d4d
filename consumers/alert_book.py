"""The alert lifecycle of every incident: triggered -> escalated/reminded ... -> acknowledged -> resolved.

Plain state machine, no Kafka: the notifier feeds it incident changes (`on_incident`), the clock
(`tick`), silences and pipeline health, and publishes the alerts it returns. One page per
incident however many changes repeat it; the state it needs after a restart is rebuilt from the
alerts already published (`restore`), so a restarted notifier pages nobody twice.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from consumers.alert_policy import AlertPolicy
from consumers.silences import SilenceBook
from streams.domain.config import DetectionConfig
from streams.history_import import is_imported

Alert = dict[str, Any]  # a record of schemas/alert.avsc
PIPELINE_RULE = "pipeline_stalled"
CLOSED_MEMORY = 100_000  # resolved incident ids remembered, so later changes (feedback...) page nobody
DAY_MS = 86_400_000


@dataclass
class Tracked:
    """What the book knows of one incident that is not resolved yet."""

    incident: dict[str, Any]
    paged: bool = False
    level: int = 0
    acknowledged: bool = False
    next_due: int | None = None  # wall-clock ms of the next escalation or reminder
    reminders: int = 0
    reason: str | None = None  # why it was not paged


class AlertBook:
    """Alert state of open incidents; every method returns the alerts to publish, in order."""

    def __init__(self, policy: AlertPolicy, detection: DetectionConfig, webhooks: list[str]) -> None:
        self.policy = policy
        self.detection = detection
        self.webhooks = list(webhooks)
        self.silences = SilenceBook()
        self.open: dict[str, Tracked] = {}
        self.stalls: dict[str, Tracked] = {}  # pipeline component -> its open self-monitoring incident
        self._closed: OrderedDict[str, None] = OrderedDict()
        self._customers: dict[str, list[tuple[int, str]]] = {}

    # ---- restart --------------------------------------------------------------------------------

    def restore(self, alert: Alert) -> None:
        """Re-apply an alert published before a restart (the alerts topic, in order)."""
        iid, kind = alert["incident_id"], alert["kind"]
        if kind == "delivery_failed":
            return
        if alert["rule"] == PIPELINE_RULE:
            component = iid.split(":")[1]
            if kind == "resolved":
                self.stalls.pop(component, None)
            else:
                self.stalls[component] = Tracked(_incident_of(alert), paged=True, reason=alert["reason"])
            return
        if kind == "resolved":
            self._close(iid)
            return
        if iid in self._closed:
            return
        tracked = self.open.get(iid)
        if tracked is None:
            tracked = self.open[iid] = Tracked(_incident_of(alert))
            self._remember_customer(tracked.incident)
        if kind == "triggered":
            tracked.paged = True
        elif kind == "suppressed":
            tracked.reason = alert["reason"]
        elif kind in ("escalated", "reminded"):
            tracked.level = max(tracked.level, alert["level"])
            tracked.next_due = alert["at"] + int(self.policy.repeat_interval_s * 1000)
            tracked.reminders += kind == "reminded"
        elif kind == "acknowledged":
            tracked.acknowledged, tracked.next_due = True, None

    # ---- incident changes -----------------------------------------------------------------------

    def on_incident(self, record: dict[str, Any], now: int) -> list[Alert]:
        """One change of an incident (any version, possibly repeated or old)."""
        iid = record["incident_id"]
        if iid in self._closed:
            return []
        out: list[Alert] = []
        tracked = self.open.get(iid)
        if tracked is None:
            tracked = self.open[iid] = Tracked(dict(record))
            self._remember_customer(record)
            tracked.reason = self._why_not_paged(record, now)
            tracked.paged = tracked.reason is None
            out.append(self._alert(tracked, "triggered" if tracked.paged else "suppressed", now,
                                   reason=tracked.reason))
        elif record["version"] <= tracked.incident.get("version", 0):
            return []  # a repeat or an older version: nothing new
        else:
            tracked.incident = dict(record)
        if record["acknowledged_at"] is not None and not tracked.acknowledged:
            tracked.acknowledged, tracked.next_due = True, None
            by = record["acknowledged_by"] or "someone"
            out.append(self._alert(tracked, "acknowledged", now, reason=f"acknowledged by {by} after "
                                   f"{_duration(record['time_to_acknowledge_s'])}"))
        if record["status"] == "resolved":
            out.append(self._alert(tracked, "resolved", now,
                                   reason=f"resolved after {_duration(record['time_to_resolve_s'])}"))
            self._close(iid)
        elif record["sla_acknowledge_breached"] and tracked.paged and not tracked.acknowledged and tracked.level == 0:
            out.append(self._escalate(tracked, now))
        return out

    def tick(self, now: int) -> list[Alert]:
        """Escalations and reminders that are due (an escalated incident still not acknowledged)."""
        return [self._escalate(t, now) for t in list(self.open.values())
                if t.next_due is not None and t.next_due <= now and t.paged and not t.acknowledged]

    def _escalate(self, tracked: Tracked, now: int) -> Alert:
        tracked.next_due = now + int(self.policy.repeat_interval_s * 1000)
        ack_s = self.ack_target_s(tracked.incident)
        if tracked.level < self.policy.max_level:
            tracked.level += 1
            return self._alert(tracked, "escalated", now,
                               reason=f"not acknowledged within {_duration(ack_s)} (level {tracked.level})")
        tracked.reminders += 1
        return self._alert(tracked, "reminded", now, suffix=str(tracked.reminders),
                           reason=f"still not acknowledged (reminder {tracked.reminders})")

    def _why_not_paged(self, record: dict[str, Any], now: int) -> str | None:
        horizon_ms = int(self.policy.paging_horizon_s * 1000)
        if record["failed_at"] < now - horizon_ms:
            return f"failed more than {_duration(self.policy.paging_horizon_s)} ago (replay or backfill): not paged"
        if is_imported(record.get("trigger_event_id")):  # a recent failure in history loaded by `journey import`
            return "history loaded by `journey import`: recorded, not paged"
        silence = self.silences.matching(record["store_id"], record["rule"], now)
        if silence is not None:
            return f"silenced by {silence.describe()} until {_clock(silence.ends_at)}"
        if record["status"] != "open":
            return f"already {record['status']} when first seen: not paged"
        return None

    def is_closed(self, iid: str) -> bool:
        """True when the incident was resolved (as far as this book remembers)."""
        return iid in self._closed

    def _close(self, iid: str) -> None:
        self.open.pop(iid, None)
        self._closed[iid] = None
        while len(self._closed) > CLOSED_MEMORY:
            self._closed.popitem(last=False)

    # ---- self-monitoring ------------------------------------------------------------------------

    def on_pipeline(self, component: str, problem: str | None, now: int) -> list[Alert]:
        """A pipeline component stalled (problem) or is healthy again (None): page once, resolve once."""
        current = self.stalls.get(component)
        if problem is not None and current is None:
            incident = {"incident_id": f"pipeline:{component}:{now}", "rule": PIPELINE_RULE, "severity": "critical",
                        "store_id": None, "journey_id": "pipeline", "customer_id": None, "failed_at": now}
            tracked = self.stalls[component] = Tracked(incident, paged=True, reason=problem)
            return [self._alert(tracked, "triggered", now, reason=problem)]
        if problem is None and current is not None:
            del self.stalls[component]
            return [self._alert(current, "resolved", now, reason=f"{component} is healthy again")]
        return []

    # ---- what the page shows --------------------------------------------------------------------

    def ack_target_s(self, incident: dict[str, Any]) -> float:
        rule = incident["rule"]
        if rule not in self.detection.rules:
            return 0.0
        return self.detection.rule(rule, incident.get("store_id"), incident.get("channel")).sla.acknowledge_s

    def open_incidents(self, now: int) -> list[dict[str, Any]]:
        """Open incidents, most urgent first, with age, SLA countdown and the customer's history."""
        rows = []
        for t in self.open.values():
            inc = t.incident
            if "version" not in inc:
                continue  # restored from an alert, its incident change not seen again yet
            ack_due = inc["failed_at"] + int(self.ack_target_s(inc) * 1000)
            rows.append({
                "incident_id": inc["incident_id"], "rule": inc["rule"], "severity": inc["severity"],
                "status": inc["status"], "store_id": inc["store_id"], "journey_id": inc["journey_id"],
                "customer_id": inc["customer_id"], "repeat_customer": inc.get("repeat_customer", False),
                "failed_at": inc["failed_at"], "age_s": round((now - inc["failed_at"]) / 1000, 1),
                "ack_due_at": ack_due, "ack_due_in_s": None if t.acknowledged else round((ack_due - now) / 1000, 1),
                "acknowledged_by": inc.get("acknowledged_by"), "level": t.level, "paged": t.paged,
                "not_paged_because": t.reason, "customer_incidents_30d": self.customer_incidents(
                    inc["customer_id"], now),
            })
        severity_rank = {"critical": 0, "high": 1, "medium": 2, "low": 3}
        return sorted(rows, key=lambda r: (r["status"] != "open", severity_rank.get(r["severity"], 9), r["failed_at"]))

    def customer_incidents(self, customer: str | None, now: int) -> int:
        window = self.detection.repeat_window_days * DAY_MS
        return sum(1 for at, _ in self._customers.get(customer or "", []) if now - window <= at <= now)

    def _remember_customer(self, incident: dict[str, Any]) -> None:
        customer = incident.get("customer_id")
        if customer:
            seen = self._customers.setdefault(customer, [])
            if all(iid != incident["incident_id"] for _, iid in seen):
                seen.append((incident["failed_at"], incident["incident_id"]))
                del seen[:-20]

    # ---- alert records --------------------------------------------------------------------------

    def _alert(self, tracked: Tracked, kind: str, now: int, reason: str | None = None, suffix: str = "") -> Alert:
        inc = tracked.incident
        hooks = self.policy.webhooks_for(inc["severity"], tracked.level, self.webhooks) if tracked.paged else []
        channels = ["topic", "terminal", "page", *(f"webhook:{h}" for h in hooks)] if tracked.paged else ["topic"]
        alert_id = f"{inc['incident_id']}:{kind}:{tracked.level}" + (f":{suffix}" if suffix else "")
        return {
            "alert_id": alert_id, "incident_id": inc["incident_id"], "kind": kind, "level": tracked.level,
            "severity": inc["severity"], "rule": inc["rule"], "store_id": inc.get("store_id"),
            "journey_id": inc["journey_id"], "customer_id": inc.get("customer_id"), "at": now,
            "failed_at": inc["failed_at"], "paged": tracked.paged, "reason": reason,
            "message": alert_message(kind, inc, tracked.level, reason), "channels": channels,
        }


def alert_message(kind: str, incident: dict[str, Any], level: int, reason: str | None) -> str:
    """One readable line for people (terminal, Slack)."""
    where = f" at {incident['store_id']}" if incident.get("store_id") else ""
    who = f", customer {incident['customer_id']}" if incident.get("customer_id") else ""
    if incident.get("repeat_customer"):
        who += " (repeat failure)"
    head = {"triggered": "NEW", "escalated": f"ESCALATED L{level}", "reminded": f"REMINDER L{level}",
            "acknowledged": "ACK", "resolved": "RESOLVED", "suppressed": "RECORDED"}.get(kind, kind.upper())
    text = (f"[{head}] {incident['severity'].upper()} {incident['rule']}{where}: journey {incident['journey_id']}"
            f"{who}, failed {_clock(incident['failed_at'])}")
    return f"{text} — {reason}" if reason else text


def delivery_failed_alert(alert: Alert, webhook: str, error: str, attempts: int, now: int) -> Alert:
    """The record of a webhook that never took `alert` (the alert itself is on the topic already)."""
    reason = f"webhook {webhook}: {error} after {attempts} attempts; gave up"
    return {**alert, "alert_id": f"{alert['alert_id']}:failed:{webhook}", "kind": "delivery_failed", "at": now,
            "paged": False, "reason": reason, "message": f"{alert['message']} — DELIVERY FAILED: {reason}",
            "channels": [f"webhook:{webhook}"]}


def _incident_of(alert: Alert) -> dict[str, Any]:
    keys = ("incident_id", "severity", "rule", "store_id", "journey_id", "customer_id", "failed_at")
    return {k: alert[k] for k in keys}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
