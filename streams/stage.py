"""What the three stages share: a batch handler over one topic of the Faust app.

Each stage (`streams.intake.stage`, `streams.journeys.stage`, `streams.customers.stage`) reads one
topic as fetched batches (`streams.batch_consumer`), applies each partition's records in offset
order from the committed offset, and commits each batch through its `Checkpoint`. A batch and a
tick of the same stage never overlap. After every rebalance each stage loads what it holds
for its assigned partitions again (from its restored table, if it has one); see `sync`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from streams.batch_consumer import (
    FaustPorts,
    assigned,
    current_messages,
    flow_open,
    generation,
    handing_over,
    highwater,
    mark_processing,
    rebalanced,
    recovered,
    resume_offset,
    seek_back,
)
from streams.checkpoint import Checkpoint
from streams.emitter import KeyPartitioner

log = logging.getLogger("journey.stage")


def process_cpu_ms() -> int:
    """CPU time of this process so far (user + system, all threads; ms)."""
    times = os.times()
    return int((times.user + times.system) * 1000)


class Stage:
    """A batch handler for `topic` (subclasses: `handle`, `load`, `drop`, `tick`)."""

    name = "stage"

    def __init__(self, app: Any, topic: str, internal_partitions: int, stats: Any) -> None:
        self.app = app
        self.topic = topic
        self.stats = stats
        # our partitioner (murmur2) over the internal topics' partitions: where a key goes next
        self.partition_of = KeyPartitioner(list(range(internal_partitions)))
        self.checkpoint = Checkpoint(FaustPorts(app), on_dropped=self.resync)
        self.lock = asyncio.Lock()
        self.loaded: set[int] = set()
        self.next_offset: dict[int, int] = {}
        self._synced = -1  # the rebalance count the loaded partitions match

    # ---- to implement -------------------------------------------------------------------------

    async def handle(self, generation: int, messages: list[Any]) -> None:
        raise NotImplementedError

    async def load(self, partitions: set[int]) -> None:
        """Partitions newly assigned: load what the stage holds for them."""

    def drop(self, partitions: set[int]) -> None:
        """Partitions gone (or to be loaded again): forget what the stage holds for them."""

    async def tick(self, generation: int) -> None:
        """Periodic work (idle progress, expiry); runs under the stage's lock."""

    # ---- shared ---------------------------------------------------------------------------------

    async def on_batch(self, fetched: list[Any]) -> None:
        await flow_open(self.app)  # held while a rebalance is under way
        if not current_messages(self.app, fetched):
            return
        await rebalanced(self.app)  # events can flow a moment before Faust calls the rebalance done
        async with self.lock:
            await self.sync()
            gen = generation(self.app)
            # only now: the rebalance just waited out ends with a seek to the committed offsets
            messages, ahead = self.app.consumer.sequence.take(current_messages(self.app, fetched))
            if ahead:
                await seek_back(self.app, ahead)
            if not messages:
                return
            for message in messages:
                self.next_offset[message.partition] = message.offset + 1
            mark_processing(self.app, messages)
            await self.handle(gen, messages)

    async def on_tick(self) -> None:
        # Nothing while handing over: a write to a partition being revoked would reopen its
        # RocksDB here and lock out the worker taking it over (same JOURNEY_HOME), or reach the
        # changelog after that worker restored it.
        if not recovered(self.app) or handing_over(self.app):
            return
        async with self.lock:
            await self.sync()
            if handing_over(self.app):
                return
            await self.tick(generation(self.app))

    def resync(self, generation: int | None = None) -> None:
        """What was done since the last commit must not stay: load everything again next time --
        unless the stage has loaded again since `generation` (the generation of the batch given
        up). Its changes are gone from memory then, and loading again would also throw away those
        of newer batches still waiting to be persisted; the snapshots of the batches after would
        then write their journeys without them (lost updates: a delivery forgotten, a false
        breach after the next rebalance; found by reading, while hunting the false alarms whose
        cause was `resume_offset`). A batch is given up only once the generation moved on, and
        the next batch loads again for that anyway."""
        if generation is None or generation == self._synced:
            self._synced = -1

    async def sync(self) -> None:
        """Load newly assigned partitions, forget those that moved away. Only between rebalances;
        after each one every partition is loaded again: one that left and came back was processed
        elsewhere meanwhile (regression: test_second_worker_joins_and_leaves_mid_run[own])."""
        if self.app.rebalancing:
            return
        if generation(self.app) != self._synced:
            self.drop(set(self.loaded))
            self.loaded.clear()
            self.next_offset.clear()
            self._synced = generation(self.app)
        now = assigned(self.app, self.topic)
        gone = self.loaded - now
        if gone:
            self.drop(gone)
            self.loaded -= gone
            for partition in gone:
                self.next_offset.pop(partition, None)
        new = now - self.loaded
        if new:
            await self.load(new)
            self.loaded |= new
            for partition in new:
                # where reading resumes: an idle partition counts as caught up from there
                self.next_offset.setdefault(partition, resume_offset(self.app, self.topic, partition))

    def caught_up(self, partition: int) -> bool:
        end = highwater(self.app, self.topic, partition)
        return end is not None and self.next_offset.get(partition, 0) >= end
