"""`journey emit --file`'s producer: events handed over in chunks, sent as record batches built in C.

Profiled (cProfile, 100k lines, one process, the same run as the bare kafka-python producer):
kafka-python's per-record `send` was ~45% of the emitting thread (its pure-Python record
builder, accumulator locks, a future per record), and each new batch woke its sender thread
through a socket: `socket.send` lets go of the GIL and the emitting thread then waits for the
sender thread to hand it back (~1 ms per wake-up on a busy box; 18k wake-ups per 100k lines,
18 s of 101 s). Here the emitting thread only parses, validates and encodes. Every `CHUNK`
events it hands the records, grouped by partition, to an aiokafka producer on an event-loop
thread of its own, which appends them to record batches in C and sends them through the
collector's `PartitionFeeds` (one feed per partition, so each partition's records keep their
order), acks=all (and idempotent where the broker allows it: see `_started`). Partitions are the same murmur2
mapping as every other writer (`KeyPartitioner`).
One producer session (`schemas.control`): before the first chunk with events for a partition is
handed over, a begin record is written there (and acknowledged: nothing of the session can
overtake it); `close()` writes an end record on each such partition once all its events were
acknowledged, so intake knows at once that this backfill's data there has ended.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError

from infra.base.config import Settings
from infra.base.kafka_clients import client_args
from infra.base.schema_registry import connect as connect_schema_registry
from schemas.codec import encode
from schemas.control import BEGIN, END, Control, new_session
from schemas.dead_letter import dead_letter_headers
from streams.collector.feeds import PartitionFeeds, Record
from streams.emitter import TOUCHPOINT, DeliveryError, DeliveryReport, KeyPartitioner, delivery_error, unreachable

log = logging.getLogger(__name__)

CHUNK = 2000  # events per hand-over to the producer thread (one cross-thread call each)
MAX_CHUNKS_IN_FLIGHT = 32  # then the emitting thread waits for the broker: memory stays bounded on a huge file
# aiokafka keeps one produce request in flight per broker (kafka-python five), so each request
# must carry a lot: at 256 KiB per partition a 200k-line file went out at 12-16k lines/s, at
# 1 MiB (what the collector uses; a broker's default message.max.bytes) at 26-42k (same box, same hour)
BATCH_BYTES = 1024 * 1024
WAIT_S = 60.0

T = TypeVar("T")


class BatchEmitter:
    """Validated touchpoints in, record batches out; the same interface as `TouchpointEmitter`."""

    def __init__(self, settings: Settings, session: str | None = None, end_on_close: bool = True) -> None:
        """`session`: shared by the processes of one `journey emit` (`streams.emit_parallel`), whose
        parent alone writes the end once all of them are done (`end_on_close` False in the others)."""
        connect_schema_registry(settings)  # an external registry's ids for what we write
        self.topic = settings.topics.touchpoints
        self.dlq_topic = settings.topics.dlq
        self.report = DeliveryReport()
        self._records: dict[int, list[Record]] = {}
        self._ids: dict[int, list[str]] = {}
        self._count = 0
        self._in_flight: deque[tuple[Future[list[BaseException | None]], list[list[str]]]] = deque()
        self._letters: list[tuple[str, Future[Any]]] = []
        self.session = session or new_session()
        self.end_on_close = end_on_close
        self.begun: set[int] = set()  # partitions this emitter wrote to (a begin record first)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="emit-producer", daemon=True)
        self._thread.start()
        try:
            partitions = self._run(self._start(settings))
        except KafkaError:
            self._stop_loop()
            raise unreachable(settings) from None
        except BaseException:
            self._stop_loop()
            raise
        self._partition = KeyPartitioner(list(partitions))
        self._feeds = PartitionFeeds(self._producer, self.topic)

    def _run(self, coro: Coroutine[Any, Any, T], timeout_s: float = WAIT_S) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    async def _start(self, settings: Settings) -> set[int]:
        self._producer = await self._started(settings, idempotent=settings.external_kafka is not None)
        partitions = await self._producer.partitions_for(self.topic)
        if not partitions:
            await self._producer.stop()
            raise DeliveryError(f"no metadata for topic {self.topic}")
        return partitions

    async def _started(self, settings: Settings, idempotent: bool) -> AIOKafkaProducer:
        """A started producer, idempotent where the broker grants a producer id.

        The embedded broker (Tansu 0.6) answers aiokafka's InitProducerId (v0) with UnknownError,
        as the collector found, so against it (and any cluster that refuses too) the producer is
        plain acks=all like the collector's: one batch per partition in flight keeps the order, a
        retried batch may write events twice, and a repeated `event_id` changes nothing downstream.
        """
        # built on the loop's thread: aiokafka binds a producer to the running loop
        producer = AIOKafkaProducer(**client_args(settings, producer=True), acks="all",
                                    enable_idempotence=idempotent, max_batch_size=BATCH_BYTES,
                                    request_timeout_ms=15000)
        try:
            await producer.start()
        except KafkaConnectionError:
            await producer.stop()
            raise
        except KafkaError as exc:
            await producer.stop()
            if not idempotent:
                raise
            log.warning("the broker refused an idempotent aiokafka producer (%r): acks=all without it", exc)
            return await self._started(settings, idempotent=False)
        return producer

    def send(self, event: dict[str, Any]) -> None:
        """Queue one event already in the decoded shape (see `schemas.contract.validate_event`)."""
        key = event["journey_id"].encode()
        partition = self._partition(key)
        records = self._records.get(partition)
        if records is None:
            records = self._records[partition] = []
            self._ids[partition] = []
        records.append((key, encode(TOUCHPOINT, event)))
        self._ids[partition].append(event["event_id"])
        self._count += 1
        if self._count >= CHUNK:
            self._hand_over()

    def send_dead_letter(self, raw: bytes, reason: str, source: str, line: int) -> None:
        """Queue refused input for the dead-letter topic: the original bytes, the reason in headers."""
        headers = dead_letter_headers(reason, source, None, line, "contract")
        future = asyncio.run_coroutine_threadsafe(self._dead_letter(raw, headers), self._loop)
        self._letters.append((f"{source} line {line}", future))

    async def _controls(self, partitions: set[int], control: Control) -> None:
        """`control` written to each partition, acknowledged."""
        sent = [await self._producer.send(self.topic, control.encode(), partition=p, headers=control.headers())
                for p in sorted(partitions)]
        await asyncio.gather(*sent)

    async def _dead_letter(self, raw: bytes, headers: list[tuple[str, bytes]]) -> Any:
        return await (await self._producer.send(self.dlq_topic, raw, headers=headers))

    def _hand_over(self) -> None:
        if not self._count:
            return
        records, ids = self._records, self._ids
        self._records, self._ids, self._count = {}, {}, 0
        if new := set(records) - self.begun:  # the first chunk, mostly: one round trip per session
            self._run(self._controls(new, Control(BEGIN, self.session)))
            self.begun |= new
        future = asyncio.run_coroutine_threadsafe(self._deliver(records), self._loop)
        self._in_flight.append((future, [ids[p] for p in records]))
        while len(self._in_flight) > MAX_CHUNKS_IN_FLIGHT:
            self._settle_oldest()

    async def _deliver(self, records: dict[int, list[Record]]) -> list[BaseException | None]:
        """One outcome per partition of the chunk, in its order: None when the broker acknowledged."""
        waiters = [self._feeds.send_to(partition, items) for partition, items in records.items()]
        return list(await asyncio.gather(*waiters, return_exceptions=True))

    def _settle_oldest(self) -> None:
        future, ids = self._in_flight.popleft()
        try:
            outcomes = future.result(WAIT_S)
        except Exception as exc:  # noqa: BLE001 - timed out or torn down: none of the chunk is known sent
            outcomes = [exc] * len(ids)
        for outcome, event_ids in zip(outcomes, ids, strict=True):
            if outcome is None:
                self.report.sent += len(event_ids)
            else:
                error = f"{type(outcome).__name__}: {outcome}"
                self.report.failed.extend((event_id, error) for event_id in event_ids)

    def flush(self) -> DeliveryReport:
        """Block until every queued event is acknowledged; raise `DeliveryError` if any failed."""
        self._hand_over()
        while self._in_flight:
            self._settle_oldest()
        letters, self._letters = self._letters, []
        for label, future in letters:
            try:
                future.result(WAIT_S)
                self.report.sent += 1
            except Exception as exc:  # noqa: BLE001 - recorded and reported by the caller
                self.report.failed.append((label, f"{type(exc).__name__}: {exc}"))
        if self.report.failed:
            raise delivery_error(self.report.failed)
        return self.report

    def end_of_data(self, partitions: set[int]) -> None:
        """The session's end on `partitions`, after everything this emitter queued was acknowledged
        (best effort: without it intake waits for the silence rule)."""
        try:
            while self._in_flight:
                self._settle_oldest()
            self._run(self._controls(partitions, Control(END, self.session)), timeout_s=15)
        except Exception as exc:  # noqa: BLE001 - the events' own outcome was reported already
            log.warning("could not write the end of data (%r): intake waits for silence instead", exc)

    def close(self) -> None:
        """End of data on every partition written to (unless another process ends the session), then stop."""
        if self.end_on_close and self.begun and not self.report.failed:  # failed: no more waits on the broker
            self.end_of_data(self.begun)
            self.begun.clear()
        try:
            self._run(self._producer.stop(), timeout_s=15)
        except Exception:  # noqa: BLE001, S110 - closing after a failure: what failed was reported already
            pass
        self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> BatchEmitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
