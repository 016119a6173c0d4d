"""What a store manager asks of the recovery data: does handling a failure well keep the customer?

Pure aggregation (no ClickHouse) over one *reference* row per customer (and per store for the
per-store figures), fetched by `consumers.insight_queries`:

- a customer with an incident in the window is judged on their first one: **recovered** when it
  was resolved (RECOVERY_RESOLVED received), **not recovered** otherwise;
- a customer without one is judged on their first journey in the window (**no failure**).

**Came back within N days**: the customer started another journey (any store or channel) in the
N days after the reference time (the failure's `failed_at`, or the first journey's start). A
reference younger than N days before the newest touchpoint cannot be judged yet and is left out
of that rate (`eligible_*`), so a recent window does not read as customers lost.

**Order value** of a journey: the sum of `attrs.amount` of its PAYMENT_SUCCEEDED events; when none
carries an amount, the largest `attrs.total` of any of its events; otherwise unknown.
Compensation share = `compensation_amount` / order value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

GROUPS = ("recovered", "not_recovered", "no_failure")
# Buckets: (label, upper bound in seconds, exclusive); the last bucket has no bound.
FIRST_RESPONSE_BUCKETS: tuple[tuple[str, float], ...] = (
    ("under 2 min", 120), ("2-5 min", 300), ("5-15 min", 900), ("15-60 min", 3600), ("over 1 h", float("inf")))
RESOLVE_BUCKETS: tuple[tuple[str, float], ...] = (
    ("under 10 min", 600), ("10-30 min", 1800), ("30 min-2 h", 7200), ("over 2 h", float("inf")))
COMPENSATION_BUCKETS: tuple[tuple[str, float], ...] = (
    ("under 10%", 0.10), ("10-25%", 0.25), ("25-50%", 0.50), ("50% or more", float("inf")))


@dataclass(frozen=True)
class Reference:
    """One customer's reference point (their first failure in the window, or first journey)."""

    customer: str
    store: str
    failed: bool
    resolved: bool
    first_response_s: float | None
    resolve_s: float | None
    compensation: float | None
    order_value: float | None
    score: int | None  # post-recovery score (failure) or the journey's feedback score (no failure)
    returned_30d: bool | None  # None: too recent to tell
    returned_90d: bool | None

    @property
    def group(self) -> str:
        if not self.failed:
            return "no_failure"
        return "recovered" if self.resolved else "not_recovered"


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def return_figures(refs: list[Reference]) -> dict[str, Any]:
    """Customers, return rates within 30/90 days (of those old enough to tell) and mean score."""
    e30 = [r.returned_30d for r in refs if r.returned_30d is not None]
    e90 = [r.returned_90d for r in refs if r.returned_90d is not None]
    scores = [r.score for r in refs if r.score is not None]
    return {
        "customers": len(refs),
        "eligible_30d": len(e30), "returned_30d": sum(e30), "return_rate_30d": _ratio(sum(e30), len(e30)),
        "eligible_90d": len(e90), "returned_90d": sum(e90), "return_rate_90d": _ratio(sum(e90), len(e90)),
        "scored": len(scores), "mean_score": round(sum(scores) / len(scores), 2) if scores else None,
    }


def _bucketed(refs: Iterable[Reference], value: Callable[[Reference], float | None],
              buckets: tuple[tuple[str, float], ...], missing: str) -> list[dict[str, Any]]:
    """Return figures per bucket of `value`, in bucket order; refs without a value under `missing`."""
    by_label: dict[str, list[Reference]] = {label: [] for label, _ in buckets}
    by_label[missing] = []
    for ref in refs:
        v = value(ref)
        label = missing if v is None else next(lbl for lbl, top in buckets if v < top)
        by_label[label].append(ref)
    return [{"bucket": label, **return_figures(rs)} for label, rs in by_label.items()]


def _compensation_share(ref: Reference) -> float | None:
    if not ref.compensation:
        return 0.0  # none given: the lowest bucket's own row below
    if not ref.order_value:
        return None
    return ref.compensation / ref.order_value


def insight(refs: list[Reference]) -> dict[str, Any]:
    """The recovery paradox, speed and compensation figures of one scope (a store, or overall)."""
    failed = [r for r in refs if r.failed]
    compensated = [r for r in failed if r.compensation]
    return {
        "groups": {g: return_figures([r for r in refs if r.group == g]) for g in GROUPS},
        "by_first_response": _bucketed(failed, lambda r: r.first_response_s, FIRST_RESPONSE_BUCKETS, "no response"),
        "by_resolve": _bucketed(failed, lambda r: r.resolve_s, RESOLVE_BUCKETS, "not resolved"),
        "by_compensation": [{"bucket": "none", **return_figures([r for r in failed if not r.compensation])}]
        + _bucketed(compensated, _compensation_share, COMPENSATION_BUCKETS, "order value unknown"),
    }


def recovery_paradox(overall: list[Reference], per_store: list[Reference]) -> dict[str, Any]:
    """`overall` holds one reference per customer, `per_store` one per customer and store."""
    stores: dict[str, list[Reference]] = {}
    for ref in per_store:
        stores.setdefault(ref.store, []).append(ref)
    return {"overall": insight(overall), "by_store": {s: insight(rs) for s, rs in sorted(stores.items())}}


def per_hundred(incidents: int, journeys: int) -> float | None:
    """Incidents per 100 journeys (None without journeys)."""
    return round(100 * incidents / journeys, 2) if journeys else None
