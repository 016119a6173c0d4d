"""Alerting policy: paging horizon, escalation, routing by severity (the `[alerting]` part of the rules file)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.domain.config import SEVERITIES, RuleConfigError, read_rules_file

ALL_WEBHOOKS = "*"


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
    defaults = AlertPolicy()
    routes = {**defaults.routes, **{k: tuple(v) for k, v in raw.get("routes", {}).items()}}
    unknown = sorted(set(routes) - set(SEVERITIES))
    if unknown:
        raise RuleConfigError(f"[alerting.routes]: {', '.join(unknown)} is not a severity ({', '.join(SEVERITIES)})")
    try:
        policy = AlertPolicy(
            paging_horizon_s=float(raw.get("paging_horizon_s", defaults.paging_horizon_s)),
            repeat_interval_s=float(raw.get("repeat_interval_s", defaults.repeat_interval_s)),
            max_level=int(raw.get("max_level", defaults.max_level)),
            stall_after_s=float(raw.get("stall_after_s", defaults.stall_after_s)),
            sink_lag_alert=int(raw.get("sink_lag_alert", defaults.sink_lag_alert)),
            routes=routes,
            escalation_adds=tuple(raw.get("escalation", {}).get("add", defaults.escalation_adds)),
        )
    except (TypeError, ValueError) as exc:
        raise RuleConfigError(f"[alerting]: {exc}") from None
    if policy.repeat_interval_s <= 0 or policy.max_level < 1:
        raise RuleConfigError("[alerting]: repeat_interval_s must be > 0 and max_level >= 1")
    return policy
