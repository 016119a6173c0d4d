"""The alert lifecycle of every incident: triggered -> escalated/reminded ... -> acknowledged -> resolved.

Plain state machine, no Kafka: the notifier feeds it incident changes (`on_incident`), the clock
(`tick`), silences and pipeline health, and publishes the alerts it returns. One page per
incident however many changes repeat it; the state it needs after a restart is rebuilt from the
alerts already published (`restore`), so a restarted notifier pages nobody twice.

On-call people can live with it because (issue 21):
- incidents page in **groups** (store and rule by default): the first of a group pages at once,
  then at most one notification per group per `group_interval_s` — a summary with the count and
  the newest. Every incident keeps its own alerts on the topic (recorded, folded into the summary).
- an incident is **held** (recorded, not paged) while a silence mutes it, a store-wide failure of
  its store is open (inhibition) or its store is closed and its channel waits for opening; the
  clock re-checks held incidents, and one still open and unacknowledged when the hold ends pages
  then and escalates from then on.
- an acknowledged incident not resolved within `ack_timeout_s` re-notifies.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from consumers.alert_policy import AlertPolicy
from consumers.silences import SilenceBook
from streams.domain.business_time import is_open, local_clock, next_opening
from streams.domain.config import SEVERITIES, DetectionConfig
from streams.history_import import is_imported

Alert = dict[str, Any]  # a record of schemas/alert.avsc
PIPELINE_RULE = "pipeline_stalled"
CLOSING = ("resolved", "withdrawn")  # alert kinds that close an incident's page
CLOSED_MEMORY = 100_000  # resolved incident ids remembered, so later changes (feedback...) page nobody
DAY_MS = 86_400_000
FOLDED = "summarised in the group's next page"


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
    held: bool = False  # not paged for now (silence, inhibition, store closed): re-checked by the clock
    ack_timeout_at: int | None = None  # acknowledged: re-notify at this wall-clock ms unless resolved


@dataclass
class Group:
    """Incidents that page together: one notification per group per interval."""

    key: str
    members: dict[str, None] = field(default_factory=dict)  # open incident ids, oldest first
    next_page_at: int = 0  # wall-clock ms before which a new alert is folded into the summary
    pending: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (kind, incident) since the last page


class AlertBook:
    """Alert state of open incidents; every method returns the alerts to publish, in order."""

    def __init__(self, policy: AlertPolicy, detection: DetectionConfig, webhooks: list[str]) -> None:
        self.policy = policy
        self.detection = detection
        self.webhooks = list(webhooks)
        self.silences = SilenceBook()
        self.open: dict[str, Tracked] = {}
        self.stalls: dict[str, Tracked] = {}  # pipeline component -> its open self-monitoring incident
        self.groups: dict[str, Group] = {}
        self._closed: OrderedDict[str, None] = OrderedDict()
        self._customers: dict[str, list[tuple[int, str]]] = {}

    # ---- restart --------------------------------------------------------------------------------

    def restore(self, alert: Alert) -> None:
        """Re-apply an alert published before a restart (the alerts topic, in order)."""
        iid, kind = alert["incident_id"], alert["kind"]
        if kind == "delivery_failed":
            return
        if kind == "grouped":
            group = self._group_named(alert.get("group_key") or "")
            group.next_page_at = alert["at"] + self._interval_ms()
            group.pending.clear()
            return
        if alert["rule"] == PIPELINE_RULE:
            component = iid.split(":")[1]
            if kind == "resolved":
                self.stalls.pop(component, None)
            else:
                self.stalls[component] = Tracked(_incident_of(alert), paged=True, reason=alert["reason"])
            return
        if kind in CLOSING:
            self._close(iid)
            return
        if iid in self._closed:
            return
        tracked = self.open.get(iid)
        if tracked is None:
            tracked = self.open[iid] = Tracked(_incident_of(alert))
            self._remember_customer(tracked.incident)
        if alert.get("group_key") and alert["paged"]:
            self._group_named(alert["group_key"]).next_page_at = alert["at"] + self._interval_ms()
        if kind == "triggered":
            tracked.paged, tracked.held, tracked.reason = True, False, None
            self._group(tracked).members[iid] = None
        elif kind == "suppressed":  # a hold (silence, inhibition, closed store) ends; a replay's reason does not
            reason = alert["reason"] or ""
            tracked.reason, tracked.held = reason, not ("replay or backfill" in reason or reason.startswith("already"))
        elif kind in ("escalated", "reminded"):
            tracked.level = max(tracked.level, alert["level"])
            tracked.next_due = alert["at"] + int(self.policy.repeat_interval_s * 1000)
            tracked.reminders += kind == "reminded"
        elif kind == "acknowledged":
            tracked.acknowledged, tracked.next_due = True, None
            tracked.ack_timeout_at = self._ack_timeout_at(alert["at"])

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
            reason, holdable = self._why_not_paged(record, now)
            tracked.reason, tracked.held = reason, reason is not None and holdable
            if tracked.reason is None:
                out += self._page(tracked, now)
            else:
                out.append(self._alert(tracked, "suppressed", now, reason=tracked.reason))
        elif record["version"] <= tracked.incident.get("version", 0):
            return []  # a repeat or an older version: nothing new
        else:
            tracked.incident = dict(record)
        if record["acknowledged_at"] is not None and not tracked.acknowledged:
            tracked.acknowledged, tracked.next_due = True, None
            tracked.ack_timeout_at = self._ack_timeout_at(now)
            by = record["acknowledged_by"] or "someone"
            out += self._notify(tracked, "acknowledged", now, reason=f"acknowledged by {by} after "
                                f"{_duration(record['time_to_acknowledge_s'])}")
        if record["status"] == "resolved":
            out += self._notify(tracked, "resolved", now,
                                reason=f"resolved after {_duration(record['time_to_resolve_s'])}")
            self._close(iid)
        elif record["status"] == "withdrawn":  # the page clears: fulfilled on time, only reported late
            out += self._notify(tracked, "withdrawn", now, reason=(
                f"fulfilled on time ({_clock(record['late_fulfilment_at'])}), reported within the allowed "
                "lateness: no breach"))
            self._close(iid)
        elif record["sla_acknowledge_breached"] and tracked.paged and not tracked.acknowledged and tracked.level == 0:
            out += self._escalate(tracked, now)
        return out

    def tick(self, now: int) -> list[Alert]:
        """What the clock brings: held incidents released, escalations and reminders, ack timeouts,
        and group summaries that are due."""
        out: list[Alert] = []
        inhibitors = self._inhibitors()  # once per tick, not once per held incident
        for tracked in list(self.open.values()):
            if tracked.held:
                out += self._recheck_hold(tracked, now, inhibitors)
            elif (tracked.next_due is not None and tracked.next_due <= now and tracked.paged
                  and not tracked.acknowledged):
                opening = self._waits_until_opening(tracked.incident, now)
                if opening is not None:  # no escalation or reminder at night for what waits for the store
                    tracked.next_due = opening
                else:
                    out += self._escalate(tracked, now)
            elif tracked.ack_timeout_at is not None and tracked.ack_timeout_at <= now:
                out += self._ack_timed_out(tracked, now)
        for group in list(self.groups.values()):
            if group.pending and group.next_page_at <= now:
                out.append(self._summary(group, now))
            elif not group.members and not group.pending and group.next_page_at <= now:
                del self.groups[group.key]  # kept until its interval ends: a flapping group pages no faster
        return out

    def _escalate(self, tracked: Tracked, now: int) -> list[Alert]:
        tracked.next_due = now + int(self.policy.repeat_interval_s * 1000)
        ack_s = self.ack_target_s(tracked.incident)
        if tracked.level < self.policy.max_level:
            tracked.level += 1
            return self._notify(tracked, "escalated", now,
                                reason=f"not acknowledged within {_duration(ack_s)} (level {tracked.level})")
        tracked.reminders += 1
        return self._notify(tracked, "reminded", now, suffix=str(tracked.reminders),
                            reason=f"still not acknowledged (reminder {tracked.reminders})")

    def _ack_timed_out(self, tracked: Tracked, now: int) -> list[Alert]:
        """Acknowledged long ago, still not resolved: an ack must not park an incident forever."""
        tracked.ack_timeout_at = self._ack_timeout_at(now)
        if tracked.incident.get("waiting_since") is not None:
            return []  # waiting on the customer: the team has nothing to do yet
        tracked.reminders += 1
        by = tracked.incident.get("acknowledged_by") or "someone"
        return self._notify(tracked, "reminded", now, suffix=f"ack{tracked.reminders}",
                            reason=f"acknowledged by {by} but not resolved within "
                                   f"{_duration(self.policy.ack_timeout_s)} of it")

    def _ack_timeout_at(self, now: int) -> int | None:
        return now + int(self.policy.ack_timeout_s * 1000) if self.policy.ack_timeout_s > 0 else None

    # ---- holds: silences, inhibition, store hours -------------------------------------------------

    def _why_not_paged(self, record: dict[str, Any], now: int) -> tuple[str | None, bool]:
        """(why it is not paged, whether that can end: a hold) — (None, False) when it pages."""
        horizon_ms = int(self.policy.paging_horizon_s * 1000)
        if record["failed_at"] < now - horizon_ms:
            horizon = _duration(self.policy.paging_horizon_s)
            return f"failed more than {horizon} ago (replay or backfill): not paged", False
        if is_imported(record.get("trigger_event_id")):  # a recent failure in history loaded by `journey import`
            return "history loaded by `journey import`: recorded, not paged", False
        if record.get("status", "open") != "open":
            return f"already {record['status']} when first seen: not paged", False
        return self._hold(record, now, self._inhibitors()), True

    def _inhibitors(self) -> dict[str, dict[str, Any]]:
        """Store -> an open incident of an inhibiting rule there (`[alerting.inhibit] sources`)."""
        found: dict[str, dict[str, Any]] = {}
        for other in self.open.values():
            inc = other.incident
            if inc["rule"] in self.policy.inhibit_sources and inc.get("store_id") and inc.get("status") != "resolved":
                found.setdefault(inc["store_id"], inc)
        return found

    def _hold(self, record: dict[str, Any], now: int, inhibitors: dict[str, dict[str, Any]]) -> str | None:
        """Why the incident must not page now (a silence, an open store-wide failure, a closed store)."""
        store, rule = record.get("store_id"), record["rule"]
        calendar = self.detection.calendars.get(store or "")
        zone = calendar.timezone if calendar else "UTC"
        silence = self.silences.matching(store, rule, now, zone)
        if silence is not None:
            return f"silenced by {silence.describe()} until {_clock(silence.window_end(now, zone) or now)}"
        inhibitor = inhibitors.get(store or "")
        if (inhibitor is not None and rule in self.policy.inhibit_targets
                and inhibitor["incident_id"] != record["incident_id"]):
            return f"inhibited while {inhibitor['rule']} {inhibitor['incident_id']} at {store} is open"
        if self._waits_until_opening(record, now) is not None:
            opening = next_opening(calendar, now)  # type: ignore[arg-type]
            when = local_clock(calendar, opening) if calendar and opening else "a day not in the calendar"
            return f"store {store} is closed: {record.get('channel')} waits for opening ({when})"
        return None

    def _waits_until_opening(self, record: dict[str, Any], now: int) -> int | None:
        """When the store opens, if it is closed now and this incident's out-of-hours route waits."""
        calendar = self.detection.calendars.get(record.get("store_id") or "")
        if calendar is None or is_open(calendar, now) or not self.policy.waits_for_opening(
                record.get("channel"), record["severity"]):
            return None
        opening = next_opening(calendar, now)
        return opening if opening is not None else now + DAY_MS

    def _recheck_hold(self, tracked: Tracked, now: int, inhibitors: dict[str, dict[str, Any]]) -> list[Alert]:
        """A held incident whose hold has ended pages now, if it is still open and unacknowledged."""
        inc = tracked.incident
        if "version" not in inc:
            return []  # restored from an alert: wait for its incident change
        reason = self._hold(inc, now, inhibitors)
        if reason is not None:
            tracked.reason = reason  # the page shows the hold in force now, never an expired one
            return []
        ended, tracked.held, tracked.reason = tracked.reason, False, None
        if tracked.acknowledged or inc.get("status") != "open":
            return []
        out = self._page(tracked, now, reason=f"no longer held ({_held_by(ended)} ended)")
        if inc.get("sla_acknowledge_breached"):  # escalate from now on, not for the time it was held
            tracked.next_due = now + int(self.policy.repeat_interval_s * 1000)
        return out

    # ---- groups ---------------------------------------------------------------------------------

    def group_key(self, incident: dict[str, Any]) -> str:
        """'busan-01/promise_breach' (the policy's grouping fields, '-' for a missing one)."""
        return "/".join(str(incident.get(name) or "-") for name in self.policy.group_by)

    def _interval_ms(self) -> int:
        return int(self.policy.group_interval_s * 1000)

    def _group_named(self, key: str) -> Group:
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = Group(key)
        return group

    def _group(self, tracked: Tracked) -> Group:
        return self._group_named(self.group_key(tracked.incident))

    def _page(self, tracked: Tracked, now: int, reason: str | None = None) -> list[Alert]:
        """The incident pages (through its group); a new group waits `group_wait_s` first."""
        tracked.paged = True
        group = self._group(tracked)
        if not group.members and not group.pending and group.next_page_at <= now:
            group.next_page_at = now + int(self.policy.group_wait_s * 1000)
        group.members[tracked.incident["incident_id"]] = None
        return self._notify(tracked, "triggered", now, reason=reason)

    def _notify(self, tracked: Tracked, kind: str, now: int, reason: str | None = None,
                suffix: str = "") -> list[Alert]:
        """Page now when the group may page; else record it, folded into the group's next summary."""
        if not tracked.paged or tracked.incident.get("rule") == PIPELINE_RULE:
            return [self._alert(tracked, kind, now, reason=reason, suffix=suffix)]
        group = self._group(tracked)
        if kind in CLOSING:
            group.members.pop(tracked.incident["incident_id"], None)
        if group.next_page_at <= now and not group.pending:
            group.next_page_at = now + self._interval_ms()
            return [self._alert(tracked, kind, now, reason=reason, suffix=suffix, group=group)]
        group.pending.append((kind, tracked.incident))
        folded = f"{reason}; {FOLDED}" if reason else FOLDED
        return [self._alert(tracked, kind, now, reason=folded, suffix=suffix, group=group, folded=True)]

    def _summary(self, group: Group, now: int) -> Alert:
        """One page for everything folded into a group since its last page: the count and the newest."""
        counts: dict[str, int] = {}
        for kind, _ in group.pending:
            counts[kind] = counts.get(kind, 0) + 1
        base = group.pending[-1][1]  # the newest change's incident (it may be resolved by now)
        group.pending.clear()
        group.next_page_at = now + self._interval_ms()
        members = [self.open[i] for i in group.members if i in self.open]
        level = max((t.level for t in members), default=0)
        severity = max((t.incident["severity"] for t in members), key=SEVERITIES.index, default=base["severity"])
        changes = ", ".join(f"{n} {_KIND_WORD.get(k, k)}" for k, n in counts.items())
        unacked = sum(1 for t in members if not t.acknowledged)
        newest_text = f"newest: journey {base['journey_id']}, failed {_clock(base['failed_at'])}"
        if base.get("about"):
            newest_text += f" ({base['about']})"
        where = f" at {base['store_id']}" if base.get("store_id") else ""
        message = (f"[GROUP{f' L{level}' if level else ''}] {severity.upper()} {base['rule']}{where}: "
                   f"{len(members)} open ({unacked} unacknowledged); since the last page: {changes}; {newest_text}"
                   f" — group {group.key} (journey ack --group {group.key})")
        hooks = self.policy.webhooks_for(severity, level, self.webhooks)
        return {
            "alert_id": f"group:{group.key}:{now}", "incident_id": base["incident_id"], "kind": "grouped",
            "level": level, "severity": severity, "rule": base["rule"], "store_id": base.get("store_id"),
            "journey_id": base["journey_id"], "customer_id": base.get("customer_id"), "at": now,
            "failed_at": base["failed_at"], "paged": True, "reason": f"group {group.key}: {changes}",
            "message": message, "channels": ["topic", "terminal", "page", *(f"webhook:{h}" for h in hooks)],
            "group_key": group.key, "group_size": len(members),
        }

    def group_members(self, key: str, action: str) -> list[str]:
        """Open incidents of a group an action applies to (ack: the unacknowledged ones)."""
        group = self.groups.get(key)
        if group is None:
            return []
        return [iid for iid in group.members if iid in self.open and "version" in self.open[iid].incident
                and (action != "ack" or not self.open[iid].acknowledged)]

    def is_closed(self, iid: str) -> bool:
        """True when the incident was resolved or withdrawn (as far as this book remembers)."""
        return iid in self._closed

    def _close(self, iid: str) -> None:
        tracked = self.open.pop(iid, None)
        if tracked is not None:
            group = self.groups.get(self.group_key(tracked.incident))
            if group is not None:
                group.members.pop(iid, None)
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
        """Open incidents, most urgent first (severity, then time left), with what they are about,
        their SLA countdowns, group and the customer's history."""
        rows = []
        for t in self.open.values():
            inc = t.incident
            if "version" not in inc:
                continue  # restored from an alert, its incident change not seen again yet
            ack_due = inc.get("sla_acknowledge_due_at") or inc["failed_at"] + int(self.ack_target_s(inc) * 1000)
            resolve_due = inc.get("sla_resolve_due_at")
            due = None if t.acknowledged else ack_due
            if due is None and inc.get("waiting_since") is None:
                due = resolve_due
            rows.append({
                "incident_id": inc["incident_id"], "rule": inc["rule"], "severity": inc["severity"],
                "status": inc["status"], "store_id": inc["store_id"], "journey_id": inc["journey_id"],
                "customer_id": inc["customer_id"], "repeat_customer": inc.get("repeat_customer", False),
                "channel": inc.get("channel"), "about": inc.get("about"), "note": inc.get("note"),
                "request_id": inc.get("request_id"), "waiting_since": inc.get("waiting_since"),
                "failed_at": inc["failed_at"], "age_s": round((now - inc["failed_at"]) / 1000, 1),
                "ack_due_at": ack_due, "ack_due_in_s": None if t.acknowledged else round((ack_due - now) / 1000, 1),
                "resolve_due_in_s": None if resolve_due is None else round((resolve_due - now) / 1000, 1),
                "time_left_s": None if due is None else round((due - now) / 1000, 1),
                "acknowledged_by": inc.get("acknowledged_by"), "level": t.level, "paged": t.paged,
                "not_paged_because": t.reason, "held": t.held,
                "group_key": self.group_key(inc) if t.paged else None,
                "customer_incidents_30d": self.customer_incidents(inc["customer_id"], now),
            })
        sizes = Counter(r["group_key"] for r in rows if r["group_key"])
        for row in rows:
            row["group_size"] = sizes[row["group_key"]] if row["group_key"] else 1
        severity_rank = {"critical": 0, "high": 1, "medium": 2, "low": 3}
        # within a severity, the one with the least time left first (no deadline pending: last)
        return sorted(rows, key=lambda r: (severity_rank.get(r["severity"], 9), r["time_left_s"] is None,
                                           r["time_left_s"] or 0.0, r["failed_at"]))

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

    def _alert(self, tracked: Tracked, kind: str, now: int, reason: str | None = None, suffix: str = "",
               group: Group | None = None, folded: bool = False) -> Alert:
        inc = tracked.incident
        paged = tracked.paged and not folded
        hooks = self.policy.webhooks_for(inc["severity"], tracked.level, self.webhooks) if paged else []
        channels = ["topic", "terminal", "page", *(f"webhook:{h}" for h in hooks)] if tracked.paged else ["topic"]
        alert_id = f"{inc['incident_id']}:{kind}:{tracked.level}" + (f":{suffix}" if suffix else "")
        return {
            "alert_id": alert_id, "incident_id": inc["incident_id"], "kind": kind, "level": tracked.level,
            "severity": inc["severity"], "rule": inc["rule"], "store_id": inc.get("store_id"),
            "journey_id": inc["journey_id"], "customer_id": inc.get("customer_id"), "at": now,
            "failed_at": inc["failed_at"], "paged": paged, "reason": reason,
            "message": alert_message(kind, inc, tracked.level, reason), "channels": channels,
            "group_key": group.key if group else None,
            "group_size": len(group.members) if group else 1,
        }


def alert_message(kind: str, incident: dict[str, Any], level: int, reason: str | None) -> str:
    """One readable line for people (terminal, Slack)."""
    where = f" at {incident['store_id']}" if incident.get("store_id") else ""
    who = f", customer {incident['customer_id']}" if incident.get("customer_id") else ""
    if incident.get("repeat_customer"):
        who += " (repeat failure)"
    head = {"triggered": "NEW", "escalated": f"ESCALATED L{level}", "reminded": f"REMINDER L{level}",
            "acknowledged": "ACK", "resolved": "RESOLVED", "suppressed": "RECORDED"}.get(kind, kind.upper())
    about = f" ({incident['about']})" if incident.get("about") else ""
    text = (f"[{head}] {incident['severity'].upper()} {incident['rule']}{where}: journey {incident['journey_id']}"
            f"{about}{who}, failed {_clock(incident['failed_at'])}")
    return f"{text} — {reason}" if reason else text


def delivery_failed_alert(alert: Alert, webhook: str, error: str, attempts: int, now: int) -> Alert:
    """The record of a webhook that never took `alert` (the alert itself is on the topic already)."""
    reason = f"webhook {webhook}: {error} after {attempts} attempts; gave up"
    return {**alert, "alert_id": f"{alert['alert_id']}:failed:{webhook}", "kind": "delivery_failed", "at": now,
            "paged": False, "reason": reason, "message": f"{alert['message']} — DELIVERY FAILED: {reason}",
            "channels": [f"webhook:{webhook}"]}


_KIND_WORD = {"triggered": "new", "escalated": "escalated", "reminded": "reminders", "acknowledged": "acknowledged",
              "resolved": "resolved", "withdrawn": "withdrawn"}


def _held_by(reason: str | None) -> str:
    """The hold a reason names, in a word or two: 'silence', 'inhibition', 'closed hours'."""
    text = reason or ""
    return ("silence" if text.startswith("silenced") else "inhibition" if text.startswith("inhibited")
            else "closed hours" if " is closed" in text else "hold")


def _incident_of(alert: Alert) -> dict[str, Any]:
    keys = ("incident_id", "severity", "rule", "store_id", "journey_id", "customer_id", "failed_at")
    # (channel is not on an alert: a restored incident groups by it once its incident change is seen)
    return {k: alert[k] for k in keys}


def _duration(seconds: float | None) -> str:
    """Human units: '45 s', '12 min', '3 h 20 min', '2 d 4 h'."""
    if seconds is None:
        return "?"
    s = round(abs(seconds))
    if s < 120:
        text = f"{s} s"
    elif s < 3600:
        text = f"{s // 60} min"
    elif s < 86_400:
        text = f"{s // 3600} h" + (f" {s % 3600 // 60} min" if s % 3600 >= 60 else "")
    else:
        text = f"{s // 86_400} d" + (f" {s % 86_400 // 3600} h" if s % 86_400 >= 3600 else "")
    return f"-{text}" if seconds < 0 else text


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
