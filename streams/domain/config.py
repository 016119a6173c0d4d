"""Failure-rule configuration: loaded from TOML (defaults in infra/rules.toml)."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streams.domain.business_time import StoreCalendar

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
    tombstone_days: float = 60  # an expired journey's tombstone lives this long (a late event is not new)
    overrides: dict[str, dict[str, RuleConfig]] = field(default_factory=dict)
    sla_clock: str = "business"  # SLA targets count the store's open hours ("calendar": every hour)
    calendars: dict[str, StoreCalendar] = field(default_factory=dict)  # store -> hours (the stores file)

    def calendar(self, store_id: str | None) -> StoreCalendar | None:
        """The calendar SLA clocks of a store count in (None: calendar time)."""
        if self.sla_clock != "business" or store_id is None:
            return None
        return self.calendars.get(store_id)

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


def check_known_keys(table: Any, known: Iterable[str], where: str, path: Path | None) -> None:
    """A config table with a key the product does not know is an error naming key and file.

    A misspelt or invented key (`business_hours` under a rule, say) would otherwise be accepted
    and silently do nothing.
    """
    if not isinstance(table, dict):
        raise RuleConfigError(f"{path or DEFAULT_RULES_FILE}: [{where}] must be a table")
    allowed = set(known)
    unknown = sorted(k for k in table if k not in allowed)
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise RuleConfigError(f"{path or DEFAULT_RULES_FILE}: unknown key {key!r} (known here: "
                              f"{', '.join(sorted(allowed))})")


RULE_KEYS = tuple(f.name for f in fields(RuleConfig) if f.name != "name")
# derived from the dataclass, so a setting added there is a known key at once
DETECTION_KEYS = tuple(f.name for f in fields(DetectionConfig) if f.name not in ("rules", "overrides", "calendars"))
TOP_KEYS = ("detection", "rules", "overrides", "alerting")


def _check_rules_keys(raw: dict[str, Any], path: Path) -> None:
    check_known_keys(raw, TOP_KEYS, "", path)
    check_known_keys(raw.get("detection", {}), DETECTION_KEYS, "detection", path)
    scoped = [(f"rules.{name}", body) for name, body in raw.get("rules", {}).items()]
    for scope, per_rule in raw.get("overrides", {}).items():
        check_known_keys(per_rule, RULES, f"overrides.{scope!r}", path)
        scoped += [(f"overrides.{scope!r}.{name}", body) for name, body in per_rule.items()]
    for where, body in scoped:
        check_known_keys(body, RULE_KEYS, where, path)
        check_known_keys(body.get("sla", {}), [f.name for f in fields(SlaTargets)], f"{where}.sla", path)


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


def load_detection_config(path: Path | None = None, stores_file: Path | None = None) -> DetectionConfig:
    """Read the rules file and the stores' hours (None: the built-in defaults)."""
    from streams.domain.stores import load_store_calendars

    path = path or DEFAULT_RULES_FILE
    raw = read_rules_file(path)
    _check_rules_keys(raw, path)
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
        tombstone_days=det.get("tombstone_days", 60),
        overrides=overrides,
        sla_clock=_sla_clock(det.get("sla_clock", "business"), path),
        calendars=load_store_calendars(stores_file),
    )


def _sla_clock(value: Any, path: Path) -> str:
    if value not in ("business", "calendar"):
        raise RuleConfigError(f"{path}: detection.sla_clock is {value!r}; use \"business\" or \"calendar\"")
    return str(value)
