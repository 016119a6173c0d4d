"""A day of service at several stores and a web shop, with injected failures and ground truth.

Pure generation (seeded, no Kafka): `simulate()` returns the touchpoints in event-time order
and the failures it injected, with the recovery delays staff took. At most one failure per
journey, so every recovery step belongs to exactly one incident. `streams.demo` sends it.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from typing import Any

from schemas.event_types import STAGE_OF_TYPE

STORES = ("seoul-01", "seoul-02", "busan-01")
WEB_STORE = "web-shop"
STAFF = tuple(f"s-{i}" for i in range(1, 9))
FAILURE_KINDS = ("promise_broken", "slow_service", "payment_failed", "abandoned_checkout", "complaint", "bad_feedback")
RULE_OF_KIND = {
    "promise_broken": "promise_breach", "slow_service": "promise_breach", "payment_failed": "payment_failed",
    "abandoned_checkout": "abandonment", "complaint": "complaint", "bad_feedback": "negative_feedback",
}


@dataclass
class Injected:
    """One failure the simulator caused, and how staff recovered from it."""

    journey_id: str
    kind: str
    rule: str
    failed_at: int
    acknowledge_s: float | None = None
    first_response_s: float | None = None
    resolve_s: float | None = None
    compensation_kind: str | None = None
    compensation_amount: float | None = None
    feedback_score: int | None = None  # the customer's feedback after the failure (post-recovery score)


@dataclass(frozen=True)
class ReturnModel:
    """A planted effect for the manager's insights: whether a customer comes back, by how their
    first journey went (customers who got a fast recovery come back more often).

    With a model, every customer is new (no regulars), and each comes back at most once, for one
    journey without a failure, 1 to 29 days after their reference time (the failure, or the
    journey's start): so "came back within 30 days" happens with exactly `probability()`.
    """

    no_failure: float = 0.5
    not_recovered: float = 0.15  # never resolved
    fast: float = 0.8  # resolved, first response within `fast_s`
    slow: float = 0.35  # resolved, slower first response
    fast_s: float = 300
    compensation_bonus: float = 0.1  # added when compensation was recorded

    def probability(self, failure: Injected | None) -> float:
        """Chance that this customer comes back within 30 days."""
        if failure is None:
            return self.no_failure
        if failure.resolve_s is None:
            return self.not_recovered
        fast = failure.first_response_s is not None and failure.first_response_s <= self.fast_s
        bonus = self.compensation_bonus if failure.compensation_amount else 0.0
        return min(1.0, (self.fast if fast else self.slow) + bonus)


@dataclass
class Simulation:
    events: list[dict[str, Any]] = field(default_factory=list)
    truth: list[Injected] = field(default_factory=list)
    start_ms: int = 0
    end_ms: int = 0


class _Builder:
    def __init__(self, rng: random.Random, run: str) -> None:
        self.rng = rng
        self.run = run
        self.sim = Simulation()
        self._n = 0

    def add(self, type_: str, at: float, journey: str, customer: str, store: str, channel: str,
            **extra: Any) -> None:
        self._n += 1
        event = {
            "event_id": f"{self.run}-{self._n}", "journey_id": journey, "customer_id": customer, "type": type_,
            "stage": STAGE_OF_TYPE[type_], "channel": channel, "occurred_at": int(at), "store_id": store,
            "staff_id": extra.pop("staff_id", None), "request_id": extra.pop("request_id", None),
            "promised_within_s": extra.pop("promised_within_s", None), "incident_id": None,
            "attrs": extra.pop("attrs", {}), "source": "simulator",
        }
        self.sim.events.append(event)

    def delay(self, median_s: float, spread: float = 0.6) -> float:
        """Service and recovery times are log-normal: mostly near the median, some very slow."""
        return max(1.0, self.rng.lognormvariate(0, spread) * median_s)


def simulate(seed: int, journeys: int, start_ms: int, span_s: float, failure_rate: float = 0.12,
             returns: ReturnModel | None = None) -> Simulation:
    """Generate `journeys` journeys starting over `span_s` seconds of event time from `start_ms`.

    `returns` plants customers coming back (see ReturnModel); without it the output is unchanged.
    """
    rng = random.Random(seed)
    # The day's start is in the run id: event ids stay unique when the same seed runs again
    # another day (into the same ClickHouse), yet a given (seed, start) is reproducible.
    builder = _Builder(rng, f"sim{seed}-{uuid.UUID(int=rng.getrandbits(128)).hex[:6]}-{start_ms:x}")
    regulars = [f"c-{seed}-{i}" for i in range(max(3, journeys // 10))]
    firsts: list[tuple[str, float, Injected | None]] = []  # customer, journey start, its failure
    for j in range(journeys):
        start = start_ms + rng.uniform(0, span_s) * 1000
        customer = rng.choice(regulars) if rng.random() < 0.3 else f"c-{seed}-walkin-{j}"
        if returns is not None:
            customer = f"c-{builder.run}-{j}"  # every customer new: returns are only the planted ones
        failure = rng.choice(FAILURE_KINDS) if rng.random() < failure_rate else None
        journey = f"{builder.run}-j{j}"
        truths = len(builder.sim.truth)
        if failure == "abandoned_checkout" or (failure is None and rng.random() < 0.3):
            _web_journey(builder, journey, customer, start, failure)
        else:
            _store_journey(builder, journey, customer, start, failure)
        firsts.append((customer, start, builder.sim.truth[-1] if len(builder.sim.truth) > truths else None))
    if returns is not None:
        _plant_returns(builder, returns, firsts)
    builder.sim.events.sort(key=lambda e: (e["occurred_at"], e["event_id"]))
    builder.sim.start_ms = start_ms
    builder.sim.end_ms = max(e["occurred_at"] for e in builder.sim.events)
    return builder.sim


def _plant_returns(b: _Builder, model: ReturnModel, firsts: list[tuple[str, float, Injected | None]]) -> None:
    """Each customer comes back once with the model's probability, 1-29 days after the reference."""
    for n, (customer, start, failure) in enumerate(firsts):
        if b.rng.random() >= model.probability(failure):
            continue
        ref = failure.failed_at if failure is not None else start
        at = ref + b.rng.uniform(1, 29) * 86_400_000
        _store_journey(b, f"{b.run}-back{n}", customer, at, None)


def _store_journey(b: _Builder, journey: str, customer: str, t: float, failure: str | None) -> None:
    store = b.rng.choice(STORES)
    add = lambda type_, at, **kw: b.add(type_, at, journey, customer, store, "pos", **kw)  # noqa: E731
    add("VISIT", t)
    t += b.delay(60) * 1000
    add("ORDER_PLACED", t, request_id="order", promised_within_s=900)
    order_due = t + 900_000
    served = t + min(b.delay(420, 0.3), 800) * 1000
    injected: Injected | None = None
    if failure == "slow_service":
        served = order_due + b.delay(300) * 1000
        injected = Injected(journey, failure, "promise_breach", int(order_due))
    add("ORDER_SERVED", served, request_id="order")
    t = served + b.delay(300) * 1000
    add("ITEM_REQUESTED", t, request_id="spoon", promised_within_s=300, attrs={"item": "spoon"})
    if failure == "promise_broken":
        injected = Injected(journey, failure, "promise_breach", int(t + 300_000))
    else:
        add("ITEM_DELIVERED", t + min(b.delay(90), 280) * 1000, request_id="spoon")
    t += 1_200_000
    if failure == "payment_failed":
        add("PAYMENT_FAILED", t, attrs={"reason": "card declined"})
        injected = Injected(journey, failure, "payment_failed", int(t + 120_000))
        t += 600_000  # paid in cash well after the grace period
    add("PAYMENT_SUCCEEDED", t, attrs={"amount": "42.0"})
    add("RECEIPT_ISSUED", t + 1000)
    t += 120_000
    if failure == "complaint":
        add("COMPLAINT_FILED", t, attrs={"about": "cold food"})
        injected = Injected(journey, failure, "complaint", int(t))
    _after(b, journey, customer, store, "pos", t, failure, injected)


def _web_journey(b: _Builder, journey: str, customer: str, t: float, failure: str | None) -> None:
    add = lambda type_, at, **kw: b.add(type_, at, journey, customer, WEB_STORE, "web", **kw)  # noqa: E731
    add("BROWSE", t)
    t += b.delay(120) * 1000
    add("CART_UPDATED", t, attrs={"items": "2"})
    t += b.delay(60) * 1000
    add("CHECKOUT_STARTED", t, request_id="checkout")
    injected: Injected | None = None
    if failure == "abandoned_checkout":
        injected = Injected(journey, failure, "abandonment", int(t + 1_800_000))
        t += 1_800_000
    else:
        t += min(b.delay(90), 1700) * 1000
        add("CHECKOUT_COMPLETED", t, request_id="checkout")
        add("PAYMENT_SUCCEEDED", t + 2000, attrs={"amount": "19.9"})
    _after(b, journey, customer, WEB_STORE, "web", t, failure, injected)


def _after(b: _Builder, journey: str, customer: str, store: str, channel: str, t: float,
           failure: str | None, injected: Injected | None) -> None:
    """Recovery by staff (for an injected failure), then feedback and the journey's end."""
    add = lambda type_, at, **kw: b.add(type_, at, journey, customer, store, channel, **kw)  # noqa: E731
    if injected is not None:
        _recover(b, injected, add)
        b.sim.truth.append(injected)
        t = max(t, injected.failed_at + (injected.resolve_s or 0) * 1000) + 60_000
        injected.feedback_score = b.rng.choice([2, 3, 4, 5, 5])
        add("FEEDBACK_SUBMITTED", t, attrs={"score": str(injected.feedback_score)})
    elif failure == "bad_feedback":
        t += 60_000
        add("FEEDBACK_SUBMITTED", t, attrs={"score": str(b.rng.choice([1, 2]))})
        b.sim.truth.append(Injected(journey, failure, "negative_feedback", int(t)))
    else:
        t += 60_000
        add("FEEDBACK_SUBMITTED", t, attrs={"score": str(b.rng.choice([3, 4, 5]))})
    add("JOURNEY_ENDED", t + 1000)


def _recover(b: _Builder, inc: Injected, add: Any) -> None:
    """Staff acknowledge, contact, sometimes compensate, resolve; a few never react."""
    if b.rng.random() < 0.1:
        return  # nobody reacted: stays open, breaches every SLA
    staff = b.rng.choice(STAFF)
    ack = b.delay(90, 0.9)  # some acknowledgements are far too slow
    contact = ack + b.delay(120)
    resolve = contact + b.delay(600)
    at = inc.failed_at
    add("FAILURE_ACKNOWLEDGED", at + ack * 1000, staff_id=staff)
    add("CUSTOMER_CONTACTED", at + contact * 1000, staff_id=staff)
    if b.rng.random() < 0.5:
        kind = b.rng.choice(["voucher", "refund", "free dessert"])
        add("COMPENSATION_GIVEN", at + (contact + 30) * 1000, staff_id=staff, attrs={"kind": kind, "amount": "5.0"})
        if contact + 30 < resolve:  # given after the resolution it matches no open incident
            inc.compensation_kind, inc.compensation_amount = kind, 5.0
    add("RECOVERY_RESOLVED", at + resolve * 1000, staff_id=staff)
    inc.acknowledge_s, inc.first_response_s, inc.resolve_s = (
        _ms_seconds(at, ack), _ms_seconds(at, contact), _ms_seconds(at, resolve))


def _ms_seconds(at: int, seconds: float) -> float:
    """The metric as the tracker computes it: from the integer-millisecond event times."""
    return round((int(at + seconds * 1000) - at) / 1000, 3)
