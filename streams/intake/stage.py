"""The intake stage: source touchpoints -> dead letters, or events keyed by journey (Faust adapter).

Reads the source topic however it was partitioned (any producer's partitioner, any partition
count), sorts each batch into events and dead letters (`sort_batch`), and sends the events, in
event-time order within the batch, to the internal topic at the partition OUR partitioner gives
their journey (murmur2, as Java and kafka-python): one journey's events meet in one partition of
a topic whose partition count we own. A batch's events go as one envelope per internal partition
(`streams.intake.envelope`), with a mark of every source partition of the batch folded in; on
every tick each internal partition gets a mark of every source partition this worker reads
(`streams.intake.marks`).
Stateless: nothing to restore; a re-read batch sends the same events again (the journeys stage
drops repeated event ids).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from infra.base.config import Settings
from infra.base.kafka import values_before
from schemas.dead_letter import dead_letter_headers
from streams.batch_consumer import partition_count, resume_offset, send_records
from streams.domain.event_time import trusted
from streams.intake.batch import sort_batch
from streams.intake.envelope import Event, pack
from streams.intake.marks import Mark, SourceClocks, newest_is_end, take_controls
from streams.stage import Stage, process_cpu_ms

log = logging.getLogger("journey.intake")


class IntakeStage(Stage):
    name = "intake"

    def __init__(self, app: Any, topic: str, internal_topic: str, internal_partitions: int,
                 dead_letters: Any, stats: Any, settings: Settings) -> None:
        super().__init__(app, topic, internal_partitions, stats)
        self.settings = settings
        self.internal_topic = internal_topic
        self.internal_partitions = internal_partitions
        self.dead_letters = dead_letters
        self.clocks = SourceClocks()

    def drop(self, partitions: set[int]) -> None:
        for partition in partitions:
            self.clocks.forget(partition)

    async def load(self, partitions: set[int]) -> None:
        """A source partition taken over (a restart, a rebalance) resumes its clock from the newest
        event time before its committed offset, where this worker's reading resumes: without it, a
        caught-up source with nothing new to read would report no progress, and a deadline pending
        in the restored journeys would never fire. (From any later offset, its marks would run
        ahead of the events it has still to send.)"""
        starts = {p: resume_offset(self.app, self.topic, p) for p in partitions}
        before = await asyncio.get_running_loop().run_in_executor(None, values_before, self.settings, self.topic,
                                                                  starts)
        now = _now_ms()
        for partition, records in before.items():
            valid = sort_batch([value for value, _ in records], now).valid
            if valid:
                self.clocks.saw(partition, max(self.event_time(event, records[index][1] / 1000, now)
                                               for index, event in valid), now)
            if (session := newest_is_end([value for value, _ in records])) is not None:
                self.clocks.ended(partition, session, now)  # it had ended: it resumes ended
        log.info("source partitions resume at offsets %s, clocks at %s", starts,
                 {p: self.clocks.mark(p, 0, False, now).watermark for p in sorted(partitions)})

    def event_time(self, event: dict[str, Any], record_ts_s: float | None, now: int) -> int:
        """The trusted event time of a source record (`streams.domain.event_time`), written into the
        event as its `occurred_at` for the stages after intake: the device's skew corrected, never
        later than its receive time (the collector's stamp, else the record timestamp) plus the
        tolerance, so one fast device clock cannot fire other journeys' deadlines."""
        record_ts = int(record_ts_s * 1000) if record_ts_s else None
        at = trusted(event, record_ts, now, self.settings.clock_tolerance_ms).at
        event["occurred_at"] = at
        return at

    def _marks(self, partitions: set[int] | list[int], now: int) -> list[Mark]:
        sources = max(partition_count(self.app, self.topic) or 0, max(self.loaded | set(partitions), default=-1) + 1)
        idle_ms = int(self.settings.source_idle_s * 1000)
        return [self.clocks.mark(source, sources, self.caught_up(source), now, idle_ms)
                for source in sorted(partitions)]

    async def handle(self, generation: int, messages: list[Any]) -> None:
        now = _now_ms()
        self.stats.first_batch_at = self.stats.first_batch_at or now
        self.stats.first_batch_cpu_ms = self.stats.first_batch_cpu_ms or process_cpu_ms()
        data = take_controls(self.clocks, messages, now)  # producers' end-of-data records: no touchpoints
        sorted_ = sort_batch([m.value for m in data], now)
        for index, event in sorted_.valid:
            self.event_time(event, data[index].timestamp, now)
        valid = sorted(sorted_.valid, key=lambda item: item[1]["occurred_at"])  # stable: ties keep offset order
        shares: dict[int, list[Event]] = {p: [] for p in range(self.internal_partitions)}
        partition_of, saw = self.partition_of, self.clocks.saw
        for index, event in valid:
            saw(data[index].partition, event["occurred_at"], now)  # the trusted time (event_time)
            shares[partition_of(event["journey_id"].encode())].append(event)
        # one envelope per internal partition (split when large), the batch's marks folded in
        marks = self._marks({m.partition for m in messages}, now)
        records = [(partition, None, value) for partition, entries in shares.items()
                   for value in pack(entries, marks)]

        async def publish() -> list[Any]:
            # Intake holds no state that could get ahead of what it sent: its dead letters need not
            # wait for the delivery; the ack waits for the flush all the same.
            await send_records(self.app, self.internal_topic, records)
            return []

        async def persist() -> None:
            for index in sorted(sorted_.rejected):  # in batch order
                message = data[index]
                reason, kind = sorted_.rejected[index]
                self.stats.dead_letters += 1
                await self.dead_letters.send(key=message.key, value=message.value, headers=dead_letter_headers(
                    reason, message.topic, message.partition, message.offset, kind))

        if await self.checkpoint.commit(generation, messages, publish, persist):
            self.stats.intake_events += len(valid)
        else:
            self.resync()
        self.stats.last_batch_at = _now_ms()
        self.stats.last_batch_cpu_ms = process_cpu_ms()

    async def tick(self, generation: int) -> None:
        """Every source partition's progress, so idle ones advance with the wall clock downstream."""
        if self.loaded:  # delivered with the next flush (marks are only progress reports)
            marks = [mark.encode() for mark in self._marks(self.loaded, _now_ms())]
            await send_records(self.app, self.internal_topic,
                               [(internal, None, m) for m in marks for internal in range(self.internal_partitions)])


def _now_ms() -> int:
    return int(time.time() * 1000)
