"""Failure-rule configuration: loaded from TOML (defaults in infra/rules.toml)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

DEFAULT_RULES_FILE = Path(__file__).resolve().parents[2] / "infra" / "rules.toml"
SEVERITIES = ("low", "medium", "high", "critical")
RULES = ("promise_breach", "abandonment", "payment_failed", "complaint", "negative_feedback", "service_error")


@dataclass(frozen=True)
class SlaTargets:
    acknowledge_s: float
    first_response_s: float
    resolve_s: float


@dataclass(frozen=True)
class RuleConfig:
    name: str
    severity: str
    servqual: str
    sla: SlaTargets
    window_s: float | None = None
    max_score: int | None = None


@dataclass(frozen=True)
class DetectionConfig:
    rules: dict[str, RuleConfig]
    default_promise_s: dict[str, float]
    allowed_lateness_s: float = 300
    repeat_window_days: float = 30
    recovered_window_days: float = 30
    seen_event_ids: int = 64
    journey_ttl_days: float = 2
    incident_journey_ttl_days: float = 30
    overrides: dict[str, dict[str, RuleConfig]] = field(default_factory=dict)

    def rule(self, name: str, store_id: str | None = None, channel: str | None = None) -> RuleConfig:
        """The rule's settings for a store/channel (store overrides win over channel ones)."""
        if self.overrides:
            for scope in (f"store:{store_id}", f"channel:{channel}"):
                found = self.overrides.get(scope, {}).get(name)
                if found is not None:
                    return found
        return self.rules[name]


class RuleConfigError(ValueError):
    """The rules file is invalid; the message names the key."""


def _rule(name: str, raw: dict[str, Any], base: RuleConfig | None = None) -> RuleConfig:
    try:
        if base is not None:
            sla = replace(base.sla, **raw.get("sla", {}))
            merged = {k: v for k, v in raw.items() if k != "sla"}
            rule = replace(base, sla=sla, **merged)
        else:
            rule = RuleConfig(
                name=name, severity=raw["severity"], servqual=raw["servqual"],
                sla=SlaTargets(**raw["sla"]), window_s=raw.get("window_s"), max_score=raw.get("max_score"),
            )
    except (KeyError, TypeError) as exc:
        raise RuleConfigError(f"rule {name!r}: missing or unknown key ({exc})") from None
    if rule.severity not in SEVERITIES:
        raise RuleConfigError(f"rule {name!r}: severity {rule.severity!r} is not one of {SEVERITIES}")
    return rule


def read_rules_file(path: Path | None = None) -> dict[str, Any]:
    """The rules file as a dict (None: the built-in defaults); a clear error when unreadable."""
    path = path or DEFAULT_RULES_FILE
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise RuleConfigError(f"rules file {path} not found (JOURNEY_RULES_FILE)") from None
    except tomllib.TOMLDecodeError as exc:
        raise RuleConfigError(f"rules file {path}: {exc}") from None


def load_detection_config(path: Path | None = None) -> DetectionConfig:
    """Read the rules file (None: the built-in defaults)."""
    path = path or DEFAULT_RULES_FILE
    raw = read_rules_file(path)
    rules = {name: _rule(name, body) for name, body in raw.get("rules", {}).items()}
    missing = [r for r in RULES if r not in rules]
    if missing:
        raise RuleConfigError(f"rules file {path}: no settings for {', '.join(missing)}")
    overrides = {
        scope: {name: _rule(name, body, rules[name]) for name, body in per_rule.items()}
        for scope, per_rule in raw.get("overrides", {}).items()
    }
    det = raw.get("detection", {})
    return DetectionConfig(
        rules=rules,
        default_promise_s=dict(det.get("default_promise_s", {"ITEM_REQUESTED": 600, "ORDER_PLACED": 1800})),
        allowed_lateness_s=det.get("allowed_lateness_s", 300),
        repeat_window_days=det.get("repeat_window_days", 30),
        recovered_window_days=det.get("recovered_window_days", 30),
        seen_event_ids=det.get("seen_event_ids", 64),
        journey_ttl_days=det.get("journey_ttl_days", 2),
        incident_journey_ttl_days=det.get("incident_journey_ttl_days", 30),
        overrides=overrides,
    )
