"""A customer's profile as the customers stage keeps it (ClickHouse `customers`, latest version)."""

from __future__ import annotations

from typing import Any

from clickhouse_connect.driver import Client

PROFILE = """
SELECT first_seen, last_visit, journeys, incidents, recovered, regular
FROM journey.customers FINAL WHERE customer_id = {customer:String}
"""
FIELDS = ("first_seen", "last_visit", "journeys", "incidents", "recovered", "regular")


def customer_profile(client: Client, customer_id: str) -> dict[str, Any] | None:
    """First seen, last visit, journeys, incidents, recovered, regular; None when unknown."""
    rows = client.query(PROFILE, parameters={"customer": customer_id}).result_rows
    return dict(zip(FIELDS, rows[0], strict=True)) if rows else None
