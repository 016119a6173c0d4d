"""A generated shop history: an orders+reviews export (CSV rows grouped by order) and the same history
as touchpoints, for `journey import` tests and the import benchmark.

The CSV follows infra/examples/orders_reviews.toml; the touchpoints are built here independently
of that mapping (ids `h-N`), so importing the CSV and emitting the touchpoints in event-time
order must raise the same incidents.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import Any

from schemas.contract import iso_from_ms

HEADER = ["record", "order_id", "customer_email", "store", "checkout_started_at", "paid_at", "promise_s",
          "shipped_at", "refunded_at", "refund_amount", "total", "currency", "line_item", "reviewed_at", "rating"]
MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000
CLOSING_AFTER = 10 * DAY  # past every deadline of the last order (promise, late ship, review, SLAs)


def start_for(orders: int, now_ms: int) -> int:
    """A start time whose history (one order per 20 min, then the closing orders) ends before now."""
    return now_ms - orders * 20 * MIN - CLOSING_AFTER - 3 * DAY


def generate(orders: int, start_ms: int, seed: int = 7) -> tuple[list[list[str]], list[dict[str, Any]]]:
    """(CSV rows without the header, touchpoints in the design's JSON form in generation order)."""
    rnd = random.Random(seed)
    rows: list[list[str]] = []
    events: list[dict[str, Any]] = []
    customers = max(1, orders // 3)

    def touch(type_: str, order: str, email: str, store: str, at: int, **extra: Any) -> None:
        events.append({"event_id": f"h-{len(events)}", "journey_id": f"shop:{order}", "customer_id": f"shop:{email}",
                       "type": type_, "channel": "web", "occurred_at": iso_from_ms(at), "store_id": store, **extra})

    last = start_ms
    for i in range(orders + 32):
        closing = i >= orders  # later orders on every partition: their time passes every earlier deadline
        order, email = str(100_000 + i), f"c{rnd.randrange(customers)}@example.com"
        store = f"store-{rnd.randrange(3)}"
        t0 = (last + CLOSING_AFTER + i * 1000) if closing else start_ms + i * 20 * MIN + rnd.randrange(MIN)
        total = f"{rnd.randrange(500, 20000) / 100:.2f}"
        started, paid, promise, shipped, refunded, refund = str(t0), "", "", "", "", ""
        touch("CHECKOUT_STARTED", order, email, store, t0, request_id=order)
        if closing or rnd.random() > 0.1:  # 10% abandon their checkout
            paid_at = t0 + rnd.randrange(30_000, 10 * MIN)
            promise_s = rnd.choice((86_400, 172_800))
            paid, promise = str(paid_at), str(promise_s)
            touch("CHECKOUT_COMPLETED", order, email, store, paid_at, request_id=order)
            touch("ORDER_PLACED", order, email, store, paid_at, request_id=order, promised_within_s=promise_s,
                  attrs={"amount": total, "currency": "EUR"})
            luck = rnd.random()
            ship_at = None
            if closing or luck < 0.75:
                ship_at = paid_at + int(promise_s * 1000 * rnd.uniform(0.1, 0.9))
            elif luck < 0.9:
                ship_at = paid_at + promise_s * 1000 + rnd.randrange(HOUR, 2 * DAY)
            if ship_at is not None:
                shipped = str(ship_at)
                touch("ORDER_SERVED", order, email, store, ship_at, request_id=order)
            if not closing and rnd.random() < 0.1:
                refund_at = (ship_at or paid_at) + rnd.randrange(HOUR, 3 * DAY)
                refunded, refund = str(refund_at), f"{rnd.randrange(100, 1000) / 100:.2f}"
                touch("COMPENSATION_GIVEN", order, email, store, refund_at,
                      attrs={"kind": "refund", "amount": refund, "currency": "EUR"})
        for item in range(rnd.randint(1, 3)):  # the order's columns repeat on each line
            rows.append(["order", order, email, store, *(_iso(t) for t in (started, paid)), promise,
                         *(_iso(t) for t in (shipped, refunded)), refund, total, "EUR", f"item-{item}", "", ""])
        if not closing and rnd.random() < 0.4:
            review_at = t0 + rnd.randrange(HOUR, 5 * DAY)
            rating = str(rnd.randint(1, 5))
            rows.append(["review", order, email, store, *[""] * 9, _iso(str(review_at)), rating])
            touch("FEEDBACK_SUBMITTED", order, email, store, review_at, attrs={"score": rating})
        if not closing:
            last = max(last, t0)
    return rows, events


def _iso(ms: str) -> str:
    return iso_from_ms(int(ms)) if ms else ""


def write_export(path: Path, rows: list[list[str]], extra: list[list[str]] = ()) -> Path:  # type: ignore[assignment]
    """The CSV file: header, the rows, then `extra` rows (e.g. broken ones)."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)
        writer.writerows(extra)
    return path
