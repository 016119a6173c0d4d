"""`journey forget CUSTOMER_ID`: remove one customer's rows from ClickHouse, and say what stays.

The customer id is a query parameter ({customer:String}), never spliced into SQL. Deletes are
ClickHouse's lightweight `DELETE FROM` (rows are masked at once and dropped at the next merge);
FINAL reads and the replacing keys are unaffected.

What this cannot reach: Kafka topics are append-only logs keyed by journey, not customer, so the
customer's events stay in them until the topics' retention expires, and a replay of them into
ClickHouse would bring the rows back. The workers' journey state keeps open journeys until they
expire (2 days; 30 with an incident).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clickhouse_connect.driver import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from infra.config import Settings
from infra.errors import JourneyError

TABLES = ("touchpoints", "incidents", "alerts")  # every table with a customer_id column
_COUNT = "SELECT count() FROM journey.{table} WHERE customer_id = {{customer:String}}"
_DELETE = "DELETE FROM journey.{table} WHERE customer_id = {{customer:String}}"


@dataclass(frozen=True)
class Forgotten:
    customer_id: str
    removed: dict[str, int]  # rows per table (every stored version of an incident counts)
    left: dict[str, int]  # rows still matching afterwards: 0 unless something wrote them meanwhile
    still_in_kafka: list[str]

    def as_json(self) -> dict[str, Any]:
        return {"customer_id": self.customer_id, "removed": self.removed, "left": self.left,
                "still_in_kafka": self.still_in_kafka, "until": "the topics' retention expires"}


def kafka_topics_holding_customers(settings: Settings) -> list[str]:
    """Topics whose records can carry a customer id (the journey table's changelog too)."""
    topics = settings.topics
    return [topics.touchpoints, topics.incidents, topics.alerts, topics.dlq, f"{settings.app_id}-journeys-changelog"]


def forget_customer(client: Client, settings: Settings, customer_id: str) -> Forgotten:
    """Delete the customer's rows from every table that has them; count before and after."""
    params = {"customer": customer_id}

    def counts() -> dict[str, int]:
        return {t: int(client.query(_COUNT.format(table=t), parameters=params).result_rows[0][0]) for t in TABLES}

    before = counts()
    for table in TABLES:
        if before[table]:
            try:
                client.command(_DELETE.format(table=table), parameters=params)
            except DatabaseError as exc:  # e.g. UNFINISHED: the delete goes on in the background, bounded wait
                raise JourneyError(f"forget: deleting from journey.{table} did not finish: {exc}") from None
    return Forgotten(customer_id, before, counts(), kafka_topics_holding_customers(settings))
