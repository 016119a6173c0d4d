"""The customers stage: the customer book over the internal topic keyed by customer (Faust adapter).

Takes the journeys stage's incident changes and journey starts, publishes the incident rows
(the single publisher of every incident with a customer: `streams.customers.book`), keeps each
customer's facts in a changelog-backed table, and sends changed profiles to the customers topic
(-> ClickHouse `customers`). Expiry runs on the stage's event time: the newest fact seen.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import orjson

from schemas.codec import encode
from streams.batch_consumer import send_keyed, write_table
from streams.customers.book import Customer, CustomerBook
from streams.stage import Stage, process_cpu_ms

log = logging.getLogger("journey.customers")
EXPIRE_EVERY_S = 60.0


class CustomersStage(Stage):
    name = "customers"

    def __init__(self, app: Any, topic: str, table: Any, book: CustomerBook, internal_partitions: int,
                 incidents: str, profiles: str, stats: Any) -> None:
        super().__init__(app, topic, internal_partitions, stats)
        self.table = table
        self.book = book
        self.incidents = incidents
        self.profiles = profiles
        self.event_time = 0
        self._expired_at = time.monotonic()

    async def load(self, partitions: set[int]) -> None:
        items = [(k.decode(), Customer.from_state(json.loads(v))) for k, v in self.table.items() if v is not None]
        mine = [(cid, c) for cid, c in items if self.partition_of(cid.encode()) in partitions]
        self.book.load(mine)
        log.info("loaded %d customers of partitions %s", len(mine), sorted(partitions))

    def drop(self, partitions: set[int]) -> None:
        self.book.forget([cid for cid in self.book.customers if self.partition_of(cid.encode()) in partitions])

    async def handle(self, generation: int, messages: list[Any]) -> None:
        rows = []
        for message in messages:
            fact = orjson.loads(message.value)
            self.event_time = max(self.event_time, fact["at"] if fact["k"] == "s" else fact["failed_at"])
            rows += self.book.take(fact)
        await self._commit(generation, messages, rows)

    async def tick(self, generation: int) -> None:
        if time.monotonic() - self._expired_at < EXPIRE_EVERY_S or not self.event_time:
            return
        self._expired_at = time.monotonic()
        self.book.expire(self.event_time)
        await self._commit(generation, [], [])

    async def _commit(self, generation: int, messages: list[Any], rows: list[dict[str, Any]]) -> None:
        dirty = sorted(self.book.take_dirty())
        profiles = [(cid.encode(), orjson.dumps(self.book.profile(cid))) for cid in dirty if cid in self.book.customers]
        # the changed customers, encoded now (None: dropped)
        snapshot = [(cid.encode(), None if cid not in self.book.customers else
                     orjson.dumps(self.book.customers[cid].to_state())) for cid in dirty]

        async def publish() -> list[Any]:
            incidents = [(row["incident_id"].encode(), encode("incident", row)) for row in rows]
            self.stats.incident_rows += len(rows)
            self.stats.last_batch_at = int(time.time() * 1000)
            self.stats.last_batch_cpu_ms = process_cpu_ms()
            return await send_keyed(self.app, self.incidents, incidents) + await send_keyed(self.app, self.profiles,
                                                                                              profiles)

        async def persist() -> None:
            await write_table(self.app, self.table, [(self.partition_of(key), key, value) for key, value in snapshot])

        if not await self.checkpoint.commit(generation, messages, publish, persist):
            self.resync()
