"""Detected incidents against the simulator's ground truth: detected, missed, false alarms,
incidents counted twice, and every recovery figure the simulator knows.

Used by `journey demo` (incidents read from the topic) and the reliability tests (incidents
read from ClickHouse with FINAL): one comparison, so both judge the tracker the same way.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from streams.domain.config import DetectionConfig, load_detection_config
from streams.domain.incidents import bump
from streams.simulator import Injected, Simulation

DAY_MS = 86_400_000

TIMES = ("time_to_acknowledge_s", "time_to_first_response_s", "time_to_resolve_s")


def customer_fields(sim: Simulation, config: DetectionConfig) -> dict[tuple[str, str], dict[str, Any]]:
    """(journey, rule) -> repeat_customer, severity and recovered, from the whole simulated day.

    Repeat: another failure of the same customer in the 30 days before (by failed_at; the simulator
    draws times in ms at random, so it makes no ties). Recovered: the feedback after the failure
    (score >= 4), else whether one of the customer's other journeys started after the failure
    and within 30 days, else unknown.
    """
    customer: dict[str, str | None] = {}
    first: dict[str, int] = {}
    store: dict[str, tuple[str | None, str | None]] = {}
    for event in sim.events:
        journey = event["journey_id"]
        customer.setdefault(journey, event.get("customer_id"))
        store.setdefault(journey, (event.get("store_id"), event.get("channel")))
        first[journey] = min(first.get(journey, event["occurred_at"]), event["occurred_at"])
    repeat_ms, back_ms = config.repeat_window_days * DAY_MS, config.recovered_window_days * DAY_MS
    out = {}
    for t in sim.truth:
        mine = customer[t.journey_id]
        others = [o for o in sim.truth if o is not t and mine and customer[o.journey_id] == mine]
        repeat = any(t.failed_at - repeat_ms <= o.failed_at < t.failed_at for o in others)
        came_back = any(customer[j] == mine and j != t.journey_id and t.failed_at < at <= t.failed_at + back_ms
                        for j, at in first.items()) if mine else False
        base = config.rule(t.rule, *store[t.journey_id]).severity
        recovered = t.feedback_score >= 4 if t.feedback_score is not None else (True if came_back else None)
        out[(t.journey_id, t.rule)] = {"repeat_customer": repeat, "severity": bump(base) if repeat else base,
                                       "recovered": recovered}
    return out


def expected_fields(truth: Injected) -> dict[str, Any]:
    """The incident fields the simulator determines (what staff did, when, and the feedback);
    `customer_fields` adds what the customer's history decides."""
    fields: dict[str, Any] = {
        "failed_at": truth.failed_at,
        "time_to_acknowledge_s": truth.acknowledge_s,
        "time_to_first_response_s": truth.first_response_s,
        "time_to_resolve_s": truth.resolve_s,
        "status": "resolved" if truth.resolve_s is not None else "open",
        "compensation_kind": truth.compensation_kind,
        "compensation_amount": truth.compensation_amount,
        "post_recovery_score": truth.feedback_score,
    }
    return fields


def compare(sim: Simulation, incidents: list[dict[str, Any]], config: DetectionConfig | None = None) -> dict[str, Any]:
    """Detected vs injected (by journey and rule), and every known field vs the truth.

    `incidents` holds one record per incident id (its latest version). Two incident ids for
    the same (journey, rule) are one failure counted twice (the simulator injects at most one
    failure per journey).
    """
    truth = {(t.journey_id, t.rule): t for t in sim.truth}
    per_key = Counter((i["journey_id"], i["rule"]) for i in incidents)
    found = {(i["journey_id"], i["rule"]): i for i in incidents}
    matched = truth.keys() & found.keys()
    by_customer = customer_fields(sim, config or load_detection_config())
    mismatched = []
    for key in sorted(matched):
        got = found[key]
        want_fields = {**expected_fields(truth[key]), **by_customer[key]}
        diff = {name: (want, got.get(name)) for name, want in want_fields.items() if got.get(name) != want}
        if diff:
            mismatched.append({"journey_id": key[0], "rule": key[1], "expected_got": diff})
    doubled = sorted(k for k, n in per_key.items() if n > 1)
    result = {
        "injected_failures": len(truth), "detected": len(matched), "missed": len(truth.keys() - found.keys()),
        "false_alarms": len(found.keys() - truth.keys()), "metric_mismatches": len(mismatched),
        "duplicate_incidents": sum(per_key[k] - 1 for k in doubled),
        "missed_list": sorted(truth.keys() - found.keys())[:10],
        "false_alarm_list": sorted(found.keys() - truth.keys())[:10], "mismatch_list": mismatched[:10],
        "duplicate_list": doubled[:10],
    }
    result["ok"] = not (result["missed"] or result["false_alarms"] or result["metric_mismatches"]
                        or result["duplicate_incidents"])
    return result
