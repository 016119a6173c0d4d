"""Alerting policy: paging horizon, escalation, routing by severity, grouping, inhibition, out-of-hours routing,
the acknowledgement timeout (the `[alerting]` part of the rules file)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.event_types import CHANNELS
from streams.domain.config import RULES, SEVERITIES, RuleConfigError, check_known_keys, read_rules_file

ALL_WEBHOOKS = "*"
GROUP_FIELDS = ("store_id", "rule", "channel", "severity", "customer_id")
WAIT, PAGE = "wait", "page"  # out-of-hours routes besides a minimum severity


@dataclass(frozen=True)
class AlertPolicy:
    """How incidents become pages (defaults as in infra/rules.toml)."""

    paging_horizon_s: float = 3600
    repeat_interval_s: float = 300
    max_level: int = 3
    stall_after_s: float = 30
    sink_lag_alert: int = 100_000
    routes: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {"low": (), "medium": ("*",), "high": ("*",), "critical": ("*",)})
    escalation_adds: tuple[str, ...] = ("*",)
    ack_timeout_s: float = 1800  # an acknowledged incident not resolved within this re-notifies (0: never)
    group_by: tuple[str, ...] = ("store_id", "rule")
    group_wait_s: float = 0  # the first incident of a group pages after this (0: at once)
    group_interval_s: float = 60  # then at most one page per group per interval (a summary)
    inhibit_sources: tuple[str, ...] = ("service_error",)  # an open one of these at a store mutes ...
    inhibit_targets: tuple[str, ...] = ("promise_breach", "abandonment", "payment_failed")  # ... these there
    out_of_hours: dict[str, str] = field(
        default_factory=lambda: {"pos": WAIT, "web": "critical", "app": "critical", "phone": WAIT, "staff": WAIT})

    def waits_for_opening(self, channel: str | None, severity: str) -> bool:
        """Outside the store's hours: does an incident of this channel and severity wait for opening?"""
        route = self.out_of_hours.get(channel or "", WAIT)
        if route in (WAIT, PAGE):
            return route == WAIT
        return SEVERITIES.index(severity) < SEVERITIES.index(route)

    def webhooks_for(self, severity: str, level: int, configured: list[str]) -> list[str]:
        """The configured webhook names an alert of `severity` at escalation `level` goes to."""
        wanted = list(self.routes.get(severity, ()))
        if level >= 1:
            wanted += self.escalation_adds
        if ALL_WEBHOOKS in wanted:
            return list(configured)
        return [name for name in configured if name in wanted]


def load_alert_policy(path: Path | None = None) -> AlertPolicy:
    """The `[alerting]` section of the rules file (None: the built-in defaults)."""
    raw: dict[str, Any] = read_rules_file(path).get("alerting", {})
    _check_keys(raw, path)
    defaults = AlertPolicy()
    routes = {**defaults.routes, **{k: tuple(v) for k, v in raw.get("routes", {}).items()}}
    grouping, inhibit = raw.get("grouping", {}), raw.get("inhibit", {})
    out_of_hours = {**defaults.out_of_hours, **raw.get("out_of_hours", {})}
    for channel, route in out_of_hours.items():
        if route not in (WAIT, PAGE, *SEVERITIES):
            raise RuleConfigError(f"[alerting.out_of_hours] {channel} = {route!r}: use \"wait\", \"page\" or a "
                                  f"minimum severity ({', '.join(SEVERITIES)})")
    for key in ("sources", "targets"):
        unknown_rules = sorted(set(inhibit.get(key, ())) - set(RULES))
        if unknown_rules:
            raise RuleConfigError(f"[alerting.inhibit] {key}: {', '.join(unknown_rules)} is not a rule "
                                  f"({', '.join(RULES)})")
    try:
        policy = AlertPolicy(
            paging_horizon_s=float(raw.get("paging_horizon_s", defaults.paging_horizon_s)),
            repeat_interval_s=float(raw.get("repeat_interval_s", defaults.repeat_interval_s)),
            max_level=int(raw.get("max_level", defaults.max_level)),
            stall_after_s=float(raw.get("stall_after_s", defaults.stall_after_s)),
            sink_lag_alert=int(raw.get("sink_lag_alert", defaults.sink_lag_alert)),
            routes=routes,
            escalation_adds=tuple(raw.get("escalation", {}).get("add", defaults.escalation_adds)),
            ack_timeout_s=float(raw.get("ack_timeout_s", defaults.ack_timeout_s)),
            group_by=tuple(grouping.get("by", defaults.group_by)),
            group_wait_s=float(grouping.get("group_wait_s", defaults.group_wait_s)),
            group_interval_s=float(grouping.get("group_interval_s", defaults.group_interval_s)),
            inhibit_sources=tuple(inhibit.get("sources", defaults.inhibit_sources)),
            inhibit_targets=tuple(inhibit.get("targets", defaults.inhibit_targets)),
            out_of_hours=out_of_hours,
        )
    except (TypeError, ValueError) as exc:
        raise RuleConfigError(f"[alerting]: {exc}") from None
    if policy.repeat_interval_s <= 0 or policy.max_level < 1:
        raise RuleConfigError("[alerting]: repeat_interval_s must be > 0 and max_level >= 1")
    if policy.group_interval_s <= 0 or policy.group_wait_s < 0 or policy.ack_timeout_s < 0:
        raise RuleConfigError("[alerting]: group_interval_s must be > 0, group_wait_s and ack_timeout_s >= 0")
    bad_fields = sorted(set(policy.group_by) - set(GROUP_FIELDS))
    if bad_fields or not policy.group_by:
        raise RuleConfigError(f"[alerting.grouping] by: {', '.join(bad_fields) or '(empty)'}: group by one or more "
                              f"of {', '.join(GROUP_FIELDS)}")
    return policy


def _check_keys(raw: dict[str, Any], path: Path | None) -> None:
    check_known_keys(raw, ("paging_horizon_s", "repeat_interval_s", "max_level", "stall_after_s", "sink_lag_alert",
                           "ack_timeout_s", "routes", "escalation", "grouping", "inhibit", "out_of_hours"),
                     "alerting", path)
    check_known_keys(raw.get("routes", {}), SEVERITIES, "alerting.routes", path)
    check_known_keys(raw.get("escalation", {}), ("add",), "alerting.escalation", path)
    check_known_keys(raw.get("grouping", {}), ("by", "group_wait_s", "group_interval_s"), "alerting.grouping", path)
    check_known_keys(raw.get("inhibit", {}), ("sources", "targets"), "alerting.inhibit", path)
    check_known_keys(raw.get("out_of_hours", {}), CHANNELS, "alerting.out_of_hours", path)
