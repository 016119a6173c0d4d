"""Detected incidents against the simulator's ground truth: detected, missed, false alarms,
incidents counted twice, and every recovery figure the simulator knows.

Used by `journey demo` (incidents read from the topic) and the reliability tests (incidents
read from ClickHouse with FINAL): one comparison, so both judge the tracker the same way.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from streams.simulator import Injected, Simulation

TIMES = ("time_to_acknowledge_s", "time_to_first_response_s", "time_to_resolve_s")


def expected_fields(truth: Injected) -> dict[str, Any]:
    """The incident fields the simulator determines (what staff did, when, and the feedback).

    `recovered` only where feedback settles it: without feedback it depends on whether the
    customer's next journey is seen by the same worker (see README, known limits).
    """
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
    if truth.feedback_score is not None:
        fields["recovered"] = truth.feedback_score >= 4
    return fields


def compare(sim: Simulation, incidents: list[dict[str, Any]]) -> dict[str, Any]:
    """Detected vs injected (by journey and rule), and every known field vs the truth.

    `incidents` holds one record per incident id (its latest version). Two incident ids for
    the same (journey, rule) are one failure counted twice (the simulator injects at most one
    failure per journey).
    """
    truth = {(t.journey_id, t.rule): t for t in sim.truth}
    per_key = Counter((i["journey_id"], i["rule"]) for i in incidents)
    found = {(i["journey_id"], i["rule"]): i for i in incidents}
    matched = truth.keys() & found.keys()
    mismatched = []
    for key in sorted(matched):
        got = found[key]
        diff = {name: (want, got.get(name)) for name, want in expected_fields(truth[key]).items()
                if got.get(name) != want}
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
