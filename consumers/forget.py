"""`journey forget CUSTOMER_ID`: remove one customer's rows from ClickHouse, and say what stays.

The customer id is a query parameter ({customer:String}), never spliced into SQL. Deletes are
ClickHouse's lightweight `DELETE FROM` (rows are masked at once and dropped at the next merge);
FINAL reads and the replacing keys are unaffected.

The workers' state: the journey and customer tables are compacted changelog topics
(`<app>-journeys-changelog` keyed by journey id, `<app>-customers-changelog` keyed by customer id),
so each of the customer's keys gets a tombstone there, in the partition the worker writes it to
(our partitioner over the internal partition count): compaction then drops every earlier state,
and a worker restoring its tables (a restart, a rebalance) no longer loads them. The customer's
journeys are the journey ids ClickHouse holds for them, read before the rows go. A worker that is
running keeps what it holds in memory until the journey expires (2 days; 30 with an incident) or
the customer returns (then it writes the state again: a new visit is new data).

What this cannot reach: the other topics are append-only logs without compaction (`touchpoints`,
its dead letters, `incidents`, `alerts`, `customers`, and the internal by-journey and by-customer
topics): a tombstone there removes nothing, so the customer's records stay in them until the
topics' retention expires (Kafka deletes whole segments by age or size: `retention.ms`, 7 days by
default), and a replay of them into ClickHouse would bring the rows back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clickhouse_connect.driver import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from infra.base.config import Settings
from infra.base.errors import JourneyError
from infra.base.kafka import admin_client
from streams.emitter import KeyPartitioner, make_producer

TABLES = ("touchpoints", "incidents", "alerts", "customers")  # every table with a customer_id column
_JOURNEYS = ("SELECT DISTINCT journey_id FROM journey.{table} WHERE customer_id = {{customer:String}}"
             " AND journey_id != ''")
_COUNT = "SELECT count() FROM journey.{table} WHERE customer_id = {{customer:String}}"
_DELETE = "DELETE FROM journey.{table} WHERE customer_id = {{customer:String}}"


@dataclass(frozen=True)
class Forgotten:
    customer_id: str
    removed: dict[str, int]  # rows per table (every stored version of an incident counts)
    left: dict[str, int]  # rows still matching afterwards: 0 unless something wrote them meanwhile
    still_in_kafka: list[str]
    tombstoned: dict[str, int]  # compacted topic -> keys given a tombstone

    def as_json(self) -> dict[str, Any]:
        return {"customer_id": self.customer_id, "removed": self.removed, "left": self.left,
                "tombstoned": self.tombstoned, "still_in_kafka": self.still_in_kafka,
                "until": "the topics' retention expires"}


def kafka_topics_holding_customers(settings: Settings) -> list[str]:
    """Topics without compaction whose records can carry a customer id: only retention removes them."""
    topics = settings.topics
    return [topics.touchpoints, topics.incidents, topics.alerts, topics.dlq, topics.customers,
            settings.topic_by_journey, settings.topic_by_customer]


def changelogs(settings: Settings) -> tuple[str, str]:
    """The workers' compacted table changelogs: (journeys, keyed by journey id; customers, by customer id)."""
    return f"{settings.app_id}-journeys-changelog", f"{settings.app_id}-customers-changelog"


def tombstones(settings: Settings, customer_id: str, journey_ids: list[str]) -> list[tuple[str, int, bytes]]:
    """(topic, partition, key) of every tombstone that forgets the customer's table states: each
    key in the partition the worker writes it to (our partitioner over the internal partitions)."""
    partition_of = KeyPartitioner(list(range(settings.internal_partitions)))
    journeys, customers = changelogs(settings)
    keys = [(journeys, j.encode()) for j in sorted(set(journey_ids))] + [(customers, customer_id.encode())]
    return [(topic, partition_of(key), key) for topic, key in keys]


def send_tombstones(settings: Settings, records: list[tuple[str, int, bytes]]) -> dict[str, int]:
    """Send the tombstones and wait for the broker to have them all; count per topic. A changelog
    that does not exist yet (no worker ever ran) holds nothing: none is sent there (a send would
    create the topic with the broker's default partition count)."""
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics())
    finally:
        admin.close()
    records = [record for record in records if record[0] in existing]
    producer = make_producer(settings)
    try:
        for topic, partition, key in records:
            producer.send(topic, key=key, value=None, partition=partition)
        producer.flush()
    finally:
        producer.close()
    counts: dict[str, int] = {}
    for topic, _, _ in records:
        counts[topic] = counts.get(topic, 0) + 1
    return counts


def forget_customer(client: Client, settings: Settings, customer_id: str) -> Forgotten:
    """Delete the customer's rows from every table that has them (count before and after), and
    give their journeys' and their own table states a tombstone in the workers' changelogs."""
    params = {"customer": customer_id}

    def counts() -> dict[str, int]:
        return {t: int(client.query(_COUNT.format(table=t), parameters=params).result_rows[0][0]) for t in TABLES}

    journey_ids = [row[0] for table in ("touchpoints", "incidents")
                   for row in client.query(_JOURNEYS.format(table=table), parameters=params).result_rows]
    tombstoned = send_tombstones(settings, tombstones(settings, customer_id, journey_ids))
    before = counts()
    for table in TABLES:
        if before[table]:
            try:
                client.command(_DELETE.format(table=table), parameters=params)
            except DatabaseError as exc:  # e.g. UNFINISHED: the delete goes on in the background, bounded wait
                raise JourneyError(f"forget: deleting from journey.{table} did not finish: {exc}") from None
    return Forgotten(customer_id, before, counts(), kafka_topics_holding_customers(settings), tombstoned)
