"""Faust's aiokafka transport, handing fetched batches of chosen topics over whole.

Faust delivers every fetched message on its own: `Consumer._drain_messages` runs two tasks and
an `asyncio.wait` per message, then the conductor builds an `Event`, queues it, and the stream
sets it current, tracks and acks it. Profiled in the worker, that machinery took ~75% of its
busy time, decoding and detecting under 10% (see BENCHMARKS.md).

For topics given a batch handler (`BatchApp.batch_handlers`), this consumer hands each
fetched batch over as one list of messages; every other topic (table changelogs during
recovery, ...) takes Faust's usual path. Faust still owns group membership, assignment,
flow control during rebalances, offsets and commits: the handler acks its messages
(`consumer.ack`) once the batch's effects are produced, so a commit never covers work that is
not out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, cast

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

BatchHandler = Callable[[list[Message]], Awaitable[None]]


class ShortWaitConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust hard-codes fetch_max_wait_ms=1500; Tansu holds an empty fetch that long, so a
    failing event could wait up to 1.5 s before the worker sees it. A short wait keeps alert
    latency low (at the cost of more, empty fetches)."""

    fetch_max_wait_ms: ClassVar[int] = 20

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = self.fetch_max_wait_ms  # read by start() to build its fetcher
        return consumer


class BatchConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer; messages of topics in the app's `batch_handlers` go to their
    handler in batches (handlers are registered on the app before the consumer starts)."""

    @property
    def batch_handlers(self) -> dict[str, BatchHandler]:
        return cast(dict[str, BatchHandler], self.app.batch_handlers)

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return ShortWaitConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - runs in the worker
        """Faust's fetch loop (`Consumer._drain_messages`), with batches for our topics."""
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                await self.sleep(0)
                batches: dict[str, list[Message]] = {}
                async for tp, message in self.getmany(timeout=1.0):
                    offset = message.offset
                    last = read_offset[tp]
                    if last is not None and offset < last:
                        continue  # read before (Faust drops these too)
                    if last and offset - last > 1 and acks_enabled_for(message.topic):
                        await self._add_gap(tp, last + 1, offset)  # compacted or transactional gap
                    if self._commit_every is not None and self._n_acked >= self._commit_every:
                        self._n_acked = 0
                        await self.commit()
                    read_offset[tp] = offset
                    handler = self.batch_handlers.get(message.topic)
                    if handler is None:
                        await self.wait_first(self.callback(message), self.suspend_flow.wait())
                    else:
                        batches.setdefault(message.topic, []).append(message)
                for topic, messages in batches.items():
                    await self.batch_handlers[topic](messages)
        except (*self.consumer_stopped_errors, asyncio.CancelledError):
            if self.transport.app.should_stop:
                return  # stopping: as Faust's own loop does
            raise


class BatchTransport(faust_aiokafka.Transport):
    """The aiokafka transport with `BatchConsumer`."""

    Consumer = BatchConsumer


class BatchApp(faust.App):
    """A Faust app whose consumer hands the fetched batches of chosen topics to handlers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_handlers: dict[str, BatchHandler] = {}

    def _new_transport(self) -> BatchTransport:
        return BatchTransport(self.conf.broker_consumer, self)


def current_messages(app: Any, messages: list[Message]) -> list[Message]:
    """The messages still ours to process: fetched in this generation, of an assigned partition.

    After a rebalance Faust seeks to the committed offsets, so what is dropped here is read
    again by whoever owns its partition now (Faust's own `getmany` drops them the same way).
    """
    generation = app.consumer_generation_id
    assigned = cast(set[TP], app.consumer.assignment())
    return [m for m in messages if m.generation_id == generation and m.tp in assigned]
