"""The emitter library POS terminals and the web shop use to send touchpoints to Kafka.

kafka-python producer keyed by journey id (so one journey stays in one partition, in order),
acks=all and idempotence (no duplicates from producer retries), batching with a short linger.
Delivery errors are never swallowed: `flush()` raises `DeliveryError` listing what failed.

Why the partition is computed here: kafka-python's default partitioner runs a pure-Python
murmur2 on every send (~8 µs of a ~30 µs send, profiled). We compute the same murmur2 mapping
(Java-compatible: the same journey lands in the same partition as with any Kafka client) once
per journey id and pass the partition explicitly.

Each emitter is one producer session (`schemas.control`): a begin record precedes its first event
on a partition, and `close()` writes an end record on every partition it wrote to, so intake knows
at once that this producer's data there has ended (a backfill's last deadlines then fire without
waiting for JOURNEY_SOURCE_IDLE_S of silence).
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.partitioner.default import murmur2

from infra.base.config import Settings
from infra.base.errors import JourneyError
from infra.base.kafka_clients import client_args
from infra.base.schema_registry import connect as connect_schema_registry
from schemas.codec import encode
from schemas.contract import ContractError, parse_json_line, validate_event
from schemas.control import BEGIN, END, Control, new_session
from schemas.dead_letter import dead_letter_headers

log = logging.getLogger(__name__)

TOUCHPOINT = "touchpoint"
SETTLE_EVERY = 20_000  # pending futures checked (and released) in bulk this often
_PARTITION_CACHE_MAX = 200_000
GC_FIRST_GENERATION = 50_000  # allocations between collections while emitting (Python's default: 700)


class DeliveryError(JourneyError):
    """Some events were not acknowledged by the broker."""


@dataclass
class DeliveryReport:
    """What the broker acknowledged so far."""

    sent: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (event_id, error)


def delivery_error(failed: list[tuple[str, str]]) -> DeliveryError:
    """The error for events the broker did not acknowledge: how many, and the first one."""
    first_id, first_error = failed[0]
    return DeliveryError(
        f"{len(failed)} events were not acknowledged by the broker "
        f"(first: {first_id}: {first_error}); re-send them once the broker is healthy"
    )


@contextmanager
def fewer_gc_passes() -> Iterator[None]:
    """Raise the cyclic collector's first threshold for a bulk emit, and restore it after.

    Profiled: with the default, the collector ran ~550 times per 50k lines (each pass into the
    older generations walking the producer's thousands of pending futures) and took 6-10 µs
    per line, ~10% of it; with this, ~1 µs. Reference counting still frees everything acyclic
    at once; only cycles wait longer.
    """
    old = gc.get_threshold()
    gc.set_threshold(GC_FIRST_GENERATION, *old[1:])
    try:
        yield
    finally:
        gc.set_threshold(*old)


class LineEmitter(Protocol):
    """What `take_line` sends through: `TouchpointEmitter` or `streams.emit_batches.BatchEmitter`."""

    def send(self, event: dict[str, Any]) -> None: ...

    def send_dead_letter(self, raw: bytes, reason: str, source: str, line: int) -> None: ...


def take_line(emitter: LineEmitter, number: int, line: str, source: str) -> str | None:
    """Validate one input line and send it; a refused line goes to the dead-letter topic exactly
    as it was read. Returns why it was refused, or None when it was sent."""
    try:
        event = parse_json_line(line)
    except ContractError as exc:
        # surrogateescape: undecodable input bytes come back exactly as they were sent
        emitter.send_dead_letter(line.rstrip("\r\n").encode("utf-8", "surrogateescape"), str(exc), source, number)
        return str(exc)
    emitter.send(event)
    return None


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """The producer settings every touchpoint writer shares (emitter, collector, replays)."""
    config: dict[str, Any] = {
        **client_args(settings, producer=True),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "batch_size": 256 * 1024,
        "max_in_flight_requests_per_connection": 5,
        "retries": 5,
        "request_timeout_ms": 15000,
        "max_block_ms": 15000,
    }
    config.update(overrides)
    return config


def make_producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    """A kafka-python producer, or a one-line `JourneyError` when the broker is unreachable.

    What it writes is encoded with the configured registry's ids (SCHEMA_REGISTRY_URL's when set):
    `journey silence add`, the re-seed of `journey up` and the replay use it, not only the emitter.
    """
    connect_schema_registry(settings)
    try:
        return KafkaProducer(**producer_config(settings, **overrides))
    except KafkaError:
        raise unreachable(settings) from None


def unreachable(settings: Settings) -> JourneyError:
    """The one-line error for a broker no producer could reach."""
    return JourneyError(f"Kafka broker not reachable at {settings.bootstrap_servers}: start the stack with "
                        "`journey up -d` or set KAFKA_BOOTSTRAP_SERVERS")


class KeyPartitioner:
    """Key -> partition exactly as kafka-python's (and Java's) default partitioner, memoised."""

    def __init__(self, partitions: list[int]) -> None:
        self.partitions = sorted(partitions)
        self._cache: dict[bytes, int] = {}

    def __call__(self, key: bytes) -> int:
        partition = self._cache.get(key)
        if partition is None:
            if len(self._cache) >= _PARTITION_CACHE_MAX:
                self._cache.clear()
            partition = self._cache[key] = self.partitions[(murmur2(key) & 0x7FFFFFFF) % len(self.partitions)]
        return partition


class TouchpointEmitter:
    """Validates, encodes (Avro, Confluent framing) and produces touchpoint events."""

    def __init__(self, settings: Settings, producer: KafkaProducer | None = None) -> None:
        connect_schema_registry(settings)  # an external registry's ids for what we write
        self.topic = settings.topics.touchpoints
        self.dlq_topic = settings.topics.dlq
        self._producer = producer or make_producer(settings)
        self._pending: list[tuple[str, Any]] = []
        self._partition: KeyPartitioner | None = None
        self.report = DeliveryReport()
        self.session = new_session()
        self._begun: set[int] = set()  # partitions this session wrote to (a begin record first)
        self._controls: list[Any] = []  # their futures: not events, so not in the delivery report

    def _partitioner(self) -> KeyPartitioner:
        if self._partition is None:
            try:
                partitions = self._producer.partitions_for(self.topic)
            except KafkaError as exc:
                raise DeliveryError(f"no metadata for topic {self.topic}: {type(exc).__name__}: {exc}") from None
            self._partition = KeyPartitioner(list(partitions))
        return self._partition

    def send(self, event: dict[str, Any]) -> None:
        """Queue one event already in the decoded shape (see `schemas.contract.validate_event`),
        stamped with this machine's clock as its `sent_at` unless it has one (the skew a reader
        derives is then this clock's: `streams.domain.event_time`)."""
        if event.get("sent_at") is None:
            event = {**event, "sent_at": int(time.time() * 1000)}
        key = event["journey_id"].encode()
        partition = self._partitioner()(key)
        if partition not in self._begun:
            self._control(partition, Control(BEGIN, self.session))  # before the event (ordered: idempotent)
            self._begun.add(partition)
        future = self._producer.send(self.topic, key=key, value=encode(TOUCHPOINT, event), partition=partition)
        self._pending.append((event["event_id"], future))
        if len(self._pending) >= SETTLE_EVERY:
            self._settle()

    def _control(self, partition: int, control: Control) -> None:
        future = self._producer.send(self.topic, key=None, value=control.encode(), partition=partition,
                                     headers=control.headers())
        self._controls.append(future)

    def send_dead_letter(self, raw: bytes, reason: str, source: str, line: int) -> None:
        """Queue input that was refused before it became an event: the original bytes, the reason
        in headers (the line number travels as the offset), so nothing sent to us is lost."""
        future = self._producer.send(
            self.dlq_topic, key=None, value=raw,
            headers=dead_letter_headers(reason, source, None, line, "contract"),
        )
        self._pending.append((f"{source} line {line}", future))
        if len(self._pending) >= 20000:
            self._settle()

    def send_json(self, obj: Any) -> dict[str, Any]:
        """Validate one event in the design's JSON form and queue it; raises `ContractError`."""
        event = validate_event(obj)
        self.send(event)
        return event

    def send_many(self, events: Iterable[dict[str, Any]]) -> None:
        for event in events:
            self.send(event)

    def _settle(self) -> None:
        """Wait for queued sends and record each outcome."""
        pending, self._pending = self._pending, []
        for event_id, future in pending:
            if future.succeeded():  # the common case, without get()'s wait machinery
                self.report.sent += 1
                continue
            try:
                future.get(timeout=60)
                self.report.sent += 1
            except KafkaError as exc:
                self.report.failed.append((event_id, f"{type(exc).__name__}: {exc}"))

    def flush(self) -> DeliveryReport:
        """Block until every queued event is acknowledged; raise `DeliveryError` if any failed."""
        self._producer.flush(timeout=60)
        self._settle()
        if self.report.failed:
            raise delivery_error(self.report.failed)
        return self.report

    def end_of_data(self) -> None:
        """Say on every partition this session wrote to that its data there has ended (after
        everything it sent was acknowledged); a later `send` begins there again."""
        self._producer.flush(timeout=60)
        for partition in sorted(self._begun):
            self._control(partition, Control(END, self.session))
        self._begun.clear()
        self._producer.flush(timeout=60)
        self._settle()
        controls, self._controls = self._controls, []
        for future in controls:
            future.get(timeout=60)  # KafkaError: see close()

    def close(self) -> None:
        """End of data (best effort: a broker gone now leaves intake its silence rule), then close."""
        try:
            if self._begun and not self.report.failed:  # after failed deliveries: no more waits on the broker
                self.end_of_data()
        except KafkaError as exc:
            log.warning("could not write the end of data (%s): intake waits for silence instead", exc)
        self._producer.close(timeout=10)

    def __enter__(self) -> TouchpointEmitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
