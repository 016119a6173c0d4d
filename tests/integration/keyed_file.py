"""A generated touchpoint file for the keyed-topology tests, and its reference incidents.

Customers with several journeys over 60 days (their journeys spread over all partitions): repeat
failures within and beyond 30 days, two failures at the same instant (a tie), returns within and
after 30 days, feedback that settles `recovered` either way, breaches, late deliveries, and acks.
The file is in event-time order with every event displaced by up to DISPLACE_S (well within the
allowed lateness). No event lies within 2 x DISPLACE_S of a deadline of its own journey: an
event that arrives after its journey's deadline fired is late by definition (the page went out at
the deadline), and would differ from the reference by design, not by arrival order.
"""

from __future__ import annotations

import random
import time
from typing import Any

from schemas.event_types import STAGE_OF_TYPE
from streams.domain.config import load_detection_config
from streams.reference import reference_incidents

DAY = 86_400_000
S = 1000
DISPLACE_S = 20
CLOSING_AFTER = 5 * DAY  # closing traffic this long after the last journey fires every deadline


def _event(prefix: str, n: int, type_: str, at: int, journey: str, customer: str | None, **extra: Any) -> dict:
    return {"event_id": f"{prefix}-e{n}", "journey_id": journey, "customer_id": customer, "type": type_,
            "stage": STAGE_OF_TYPE[type_], "channel": "pos", "occurred_at": at, "store_id": "seoul-01",
            "staff_id": extra.pop("staff_id", None), "request_id": extra.pop("request_id", None),
            "promised_within_s": extra.pop("promised_within_s", None), "incident_id": None,
            "attrs": extra.pop("attrs", {}), "source": "keyed-test"}


def keyed_file(prefix: str, customers: int = 24, seed: int = 16) -> tuple[list[dict], int]:
    """(events in file order, closing time): ~10 events per journey, 2-4 journeys per customer."""
    rng = random.Random(seed)
    base = int(time.time() * 1000) - 200 * DAY  # all of it, closing included, in the past
    events: list[dict] = []

    def add(type_: str, at: int, journey: str, customer: str | None, **extra: Any) -> None:
        events.append(_event(prefix, len(events), type_, at, journey, customer, **extra))

    for c in range(customers):
        customer = f"{prefix}-c{c}"
        day = rng.randrange(0, 20)
        t = 0
        for j in range(rng.randint(2, 4)):
            tie = c % 6 == 0 and j < 2  # two journeys failing at the very same instant
            journey = f"{prefix}-c{c}-j{j}"
            t = t if tie and j == 1 else base + day * DAY + rng.randrange(0, 8 * 3600) * S
            kind = "tie" if tie else rng.choice(["fine", "fine", "breach", "late", "complaint", "error"])
            add("VISIT", t, journey, customer)
            add("ITEM_REQUESTED", t + 10 * S, journey, customer, request_id="r", promised_within_s=600)  # due t+610
            if kind in ("fine", "complaint", "error", "tie"):
                add("ITEM_DELIVERED", t + 100 * S, journey, customer, request_id="r")
            if kind in ("breach", "late"):
                if rng.random() < 0.7:
                    add("FAILURE_ACKNOWLEDGED", t + 680 * S, journey, customer, staff_id="s-1")  # SLA t+730
                if kind == "late":
                    add("ITEM_DELIVERED", t + 800 * S, journey, customer, request_id="r")
            if kind == "complaint":
                add("COMPLAINT_FILED", t + 200 * S, journey, customer)
                add("FAILURE_ACKNOWLEDGED", t + 260 * S, journey, customer, staff_id="s-2")  # SLA t+500
            if kind in ("error", "tie"):
                add("SERVICE_ERROR", t + 50 * S, journey, customer)  # SLA t+170, t+350, t+1850
            if kind != "fine" and rng.random() < 0.5:
                add("FEEDBACK_SUBMITTED", t + 1000 * S, journey, customer, attrs={"score": rng.choice(["2", "5"])})
            add("JOURNEY_ENDED", t + 1005 * S, journey, customer)
            day += rng.choice([1, 3, 12, 29, 31, 45])  # next visit: returns within and after 30 days
    closing = max(e["occurred_at"] for e in events) + CLOSING_AFTER
    for k in range(32):  # every partition's watermark past every deadline
        add("VISIT", closing, f"{prefix}-closing-{k}", None)
    keyed = sorted(events, key=lambda e: (e["occurred_at"] + rng.uniform(-DISPLACE_S, DISPLACE_S) * S, e["event_id"]))
    return keyed, closing


def reference(events: list[dict], closing: int) -> dict[str, dict]:
    """incident id -> final row, by the pure domain functions over the file in event-time order."""
    return reference_incidents(events, load_detection_config(), closing, int(time.time() * 1000))
