"""The reference answer: the pure domain functions over a whole set of events in event-time order.

What the keyed topology must publish (every incident row, latest version) whatever the worker
count, the arrival order or the producer's partitioner: the detector (one partition, events
clock) over the events sorted by (event time, event id), every deadline fired at the end, and
the customer book over the incident changes and journey starts it reports.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from streams.customers.book import CustomerBook, CustomerRules, published_version
from streams.domain.config import DetectionConfig
from streams.domain.incidents import Incident
from streams.domain.processor import Detector, ProcessResult


def customer_rules(config: DetectionConfig) -> CustomerRules:
    return CustomerRules(repeat_window_days=config.repeat_window_days,
                         recovered_window_days=config.recovered_window_days)


def apply_customers(book: CustomerBook, result: ProcessResult) -> list[Incident]:
    """Feed a detector's output to the customer book as the journeys stage does; the rows to
    publish (incidents without a customer are published as they are)."""
    rows = []
    for change in result.incident_changes:
        if change.get("customer_id"):
            rows += book.take({"k": "i", **change})
        else:
            rows.append({**change, "version": published_version(change["version"], False, False)})
    for journey_id, customer, first in result.journey_starts:
        rows += book.take({"k": "s", "journey_id": journey_id, "customer_id": customer, "at": first})
    return rows


def reference_incidents(events: Iterable[dict[str, Any]], config: DetectionConfig, until_ms: int,
                        now_ms: int) -> dict[str, Incident]:
    """incident id -> its final row, firing every deadline up to `until_ms` (event time)."""
    detector = Detector(config)
    book = CustomerBook(customer_rules(config))
    ordered = sorted(events, key=lambda e: (e["occurred_at"], e["event_id"]))
    result = detector.process([(0, e) for e in ordered], now_ms)
    result.merge(detector.advance(0, until_ms, now_ms))
    latest: dict[str, Incident] = {}
    for row in apply_customers(book, result):
        if row["version"] > latest.get(row["incident_id"], {}).get("version", 0):
            latest[row["incident_id"]] = row
    return latest
