"""The journeys stage: the detector over the internal topic keyed by journey (Faust adapter).

Each internal partition carries the events of its journeys (from every source partition, in
arrival order) and the marks of every source partition (`streams.intake.marks`), packed as
envelopes (`streams.intake.envelope`) unpacked here in order. Events go to
the `Detector` (marks clock): each fires only its own journey's deadlines; the low watermark of
the marks fires the rest. Incident changes of a known customer and journey starts go to the
customers stage, keyed by customer with our partitioner; incidents without a customer are
published here (nobody else can change them). Journey state lives in a changelog-backed table
(RocksDB locally), each changed journey written once per batch, in one write per partition.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from schemas.codec import encode
from streams.batch_consumer import restored_offsets, send_keyed, send_records, write_table
from streams.customers.book import published_version
from streams.domain.processor import Detector, ProcessResult
from streams.intake.envelope import is_envelope, unpack
from streams.intake.marks import Mark, is_mark
from streams.journeys.low_watermark import LowWatermark
from streams.stage import Stage, process_cpu_ms
from streams.state_codec import decode_journey, encode_journey, encode_tombstone

log = logging.getLogger("journey.journeys")


class JourneysStage(Stage):
    name = "journeys"

    def __init__(self, app: Any, topic: str, table: Any, detector: Detector, customers_topic: str,
                 internal_partitions: int, incidents: str, stats: Any, late_topic: str = "") -> None:
        super().__init__(app, topic, internal_partitions, stats)
        self.table = table
        self.detector = detector
        self.customers_topic = customers_topic
        self.incidents = incidents
        self.late_topic = late_topic  # events later than the allowed lateness (-> ClickHouse), if set
        self.low: dict[int, LowWatermark] = {}
        self.withdrawn = 0  # breaches withdrawn since start (on-time fulfilments reported late)
        self.lateness_ms = int(detector.config.allowed_lateness_s * 1000)

    async def load(self, partitions: set[int]) -> None:
        states = ((k.decode(), decode_journey(v)) for k, v in self.table.items() if v is not None)
        items = [(journey_id, state) for journey_id, state in states if state.p in partitions]
        self.detector.load(items, now_ms=_now_ms())
        log.info("loaded %d journeys of partitions %s (changelog offsets in the store: %s)", len(items),
                 sorted(partitions), restored_offsets(self.table, partitions))

    def drop(self, partitions: set[int]) -> None:
        for partition in partitions:
            self.detector.forget_partition(partition)
            self.low.pop(partition, None)

    async def handle(self, generation: int, messages: list[Any]) -> None:
        now = _now_ms()
        result = ProcessResult()
        events: list[tuple[int, dict[str, Any]]] = []
        n_events = 0

        def apply(partition: int, mark: Mark) -> None:
            nonlocal events
            if events:  # the events before the mark first
                result.merge(self.detector.process(events, now))
                events = []
            low = self.low.setdefault(partition, LowWatermark(self.lateness_ms))
            low.update(mark)
            at = low.low()
            if at is not None:
                result.merge(self.detector.advance(partition, at, now))

        for message in messages:
            partition, value = message.partition, message.value
            if is_envelope(value):
                unpacked, marks = unpack(value)
                n_events += len(unpacked)
                events += [(partition, event) for event in unpacked]
                for mark in marks:
                    apply(partition, mark)
            elif is_mark(value):
                apply(partition, Mark.decode(value))
            else:  # one event per record (written before envelopes)
                n_events += 1
                events.append((partition, orjson.loads(value)))
        if events:
            result.merge(self.detector.process(events, now))
        snapshot = self.snapshot()
        if await self.checkpoint.commit(generation, messages, lambda: self.publish(result),
                                        lambda: self.persist(snapshot)):
            self.stats.events += n_events
            self.stats.duplicates += result.duplicates
            self.withdrawn += result.withdrawn
            self.stats.last_batch_at = _now_ms()
            self.stats.last_batch_cpu_ms = process_cpu_ms()
        else:
            self.detector.take_dirty()
            self.resync()

    async def tick(self, generation: int) -> None:
        """Nothing moves here on its own: the watermark comes with intake's marks."""

    async def publish(self, result: ProcessResult) -> list[Any]:
        """Incident changes and journey starts to the customers stage (or, without a customer,
        the incident row itself to the incidents topic); their delivery futures."""
        to_customers: list[tuple[int, bytes | None, bytes]] = []
        to_incidents: list[tuple[bytes, bytes]] = []
        for change in result.incident_changes:
            customer = change.get("customer_id")
            if customer:
                key = customer.encode()
                to_customers.append((self.partition_of(key), key, orjson.dumps({"k": "i", **change})))
            else:
                row = {**change, "version": published_version(change["version"], False, False)}
                to_incidents.append((change["incident_id"].encode(), encode("incident", row)))
        for journey_id, customer, first in result.journey_starts:
            key = customer.encode()
            to_customers.append((self.partition_of(key), key, orjson.dumps(
                {"k": "s", "journey_id": journey_id, "customer_id": customer, "at": first})))
        futures = await send_records(self.app, self.customers_topic, to_customers)
        if self.late_topic:  # the touchpoint rows' flag (ClickHouse `late_touchpoints`, read by `late_by_s`)
            futures += await send_keyed(self.app, self.late_topic, [
                (event_id.encode(),
                 orjson.dumps({"event_id": event_id, "journey_id": journey_id, "late_by_s": behind_ms / 1000}))
                for event_id, journey_id, behind_ms in result.late])
        futures += await send_keyed(self.app, self.incidents, to_incidents)
        self.stats.incident_changes += len(result.incident_changes)
        self.stats.unmatched_recovery += len(result.unmatched_recovery)
        for event in result.unmatched_recovery:
            log.warning("recovery event %s (%s) matches no incident of journey %s", event["event_id"],
                        event["type"], event["journey_id"])
        return futures

    def snapshot(self) -> list[tuple[bytes, int, bytes | None]]:
        """The journeys this batch changed, encoded now (an expired one: its tombstone; None: gone)."""
        out = []
        for journey_id, partition in self.detector.take_dirty().items():
            state = self.detector.journeys.get(journey_id)
            if state is not None:
                out.append((journey_id.encode(), partition, encode_journey(state)))
                continue
            tomb = self.detector.tombstone(journey_id, partition)
            out.append((journey_id.encode(), partition, None if tomb is None else encode_tombstone(tomb)))
        return out

    async def persist(self, snapshot: list[tuple[bytes, int, bytes | None]]) -> None:
        """The batch's changed journeys into the table, as one write per partition (None: gone, its
        tombstone ran out: a deletion in the changelog and RocksDB)."""
        await write_table(self.app, self.table, [(partition, key, value) for key, partition, value in snapshot])


def _now_ms() -> int:
    return int(time.time() * 1000)
