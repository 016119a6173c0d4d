"""Record batches no client can read are quarantined: set aside, reported, and read past.

A batch that fails its CRC, or whose payload does not decompress (corrupt, or a codec with no
library), makes aiokafka raise inside the fetch, before any of our code sees a message: the
records fetched with it are dropped, the position stays, and the next fetch raises again. A
consumer that lets it propagate crash-loops on that one batch for ever; one that catches it
stalls. Both happened (issue 18): the worker and the sink crashed on restart on the same batch.

`install()` (called whenever `infra/base/kafka_clients.py` builds a client) makes every aiokafka
(Faust's included) and kafka-python consumer of the process check each batch as it is unpacked:
a batch that cannot be read is recorded here (topic, partition, offsets, error) and the
consumer's position moves past it, so everything around it is still delivered. The
component then sends what was recorded to the dead-letter topic (`publish()`: the offsets and the
error in headers; the bytes stay in the source topic) and its heartbeat carries a summary
(`summary()`, added by `infra.base.heartbeat`), from which the pipeline watch pages with the cause.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from infra.base.config import Settings
from schemas.dead_letter import dead_letter_headers

log = logging.getLogger("journey.quarantine")

KIND = "quarantine"
LAST_OFFSET_HEADER = "journey.dlq.last_offset"
_SEEN_MAX = 10_000  # (topic, partition, first offset) remembered: a batch fetched again is reported once


@dataclass(frozen=True)
class QuarantinedBatch:
    """One record batch set aside: where it is and why it could not be read."""

    topic: str
    partition: int
    first_offset: int
    last_offset: int
    error: str
    at: int  # wall ms

    @property
    def reason(self) -> str:
        return (f"unreadable record batch, offsets {self.first_offset}..{self.last_offset} quarantined "
                f"(still in {self.topic}[{self.partition}]): {self.error}")

    def headers(self) -> list[tuple[str, bytes]]:
        return [*dead_letter_headers(self.reason, self.topic, self.partition, self.first_offset, KIND),
                (LAST_OFFSET_HEADER, str(self.last_offset).encode())]


class Quarantine:
    """What this process set aside: pending for the dead-letter topic, and counted for the heartbeat.

    Appended from the thread that fetches (Faust runs aiokafka in its own thread), drained by the
    component's loop: hence the lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[QuarantinedBatch] = []
        self._seen: collections.OrderedDict[tuple[str, int, int], None] = collections.OrderedDict()
        self.count = 0
        self.last: QuarantinedBatch | None = None

    def add(self, batch: QuarantinedBatch) -> bool:
        """Record a batch; False when it was recorded before (fetched again after a seek back)."""
        key = (batch.topic, batch.partition, batch.first_offset)
        with self._lock:
            if key in self._seen:
                return False
            self._seen[key] = None
            if len(self._seen) > _SEEN_MAX:
                self._seen.popitem(last=False)
            self._pending.append(batch)
            self.count += 1
            self.last = batch
        log.error("quarantined %s", batch.reason)
        return True

    def take(self) -> list[QuarantinedBatch]:
        with self._lock:
            pending, self._pending = self._pending, []
        return pending

    def give_back(self, batches: list[QuarantinedBatch]) -> None:
        """Batches whose dead letters could not be sent: kept for the next attempt."""
        with self._lock:
            self._pending[:0] = batches

    def summary(self) -> dict[str, Any] | None:
        """For the heartbeat: how many batches, and the last one (None when nothing was set aside)."""
        with self._lock:
            if self.last is None:
                return None
            return {"count": self.count, "pending": len(self._pending), "last": asdict(self.last),
                    "reason": self.last.reason}


QUARANTINE = Quarantine()


class _CheckedBatch:
    """A batch whose records were already read whole (so checked): iterates them again."""

    def __init__(self, batch: Any, records: list[Any]) -> None:
        self._batch = batch
        self._records = iter(records)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)

    def validate_crc(self) -> bool:
        return True  # checked before the records were read

    def __iter__(self) -> Any:
        return self._records

    def __next__(self) -> Any:
        return next(self._records)


class _CheckedRecords:
    """Stands in for the fetched records of one partition (aiokafka's or kafka-python's
    MemoryRecords): hands out only batches that read fine, recording the others and handing out a
    stand-in the client steps over as over a control batch (no records, the position moves past)."""

    def __init__(self, records: Any, owner: Any, tp_attr: str, crc_attr: str) -> None:
        self._records = records
        self._owner = owner  # the client's PartitionRecords: its next_fetch_offset becomes the position
        self._tp_attr, self._crc_attr = tp_attr, crc_attr

    def __getattr__(self, name: str) -> Any:
        return getattr(self._records, name)

    def has_next(self) -> bool:
        return bool(self._records.has_next())

    def next_batch(self) -> Any:
        batch = self._records.next_batch()
        if batch is None:  # kafka-python's end of the records
            return None
        try:
            if getattr(self._owner, self._crc_attr) and not batch.validate_crc():
                raise ValueError(f"record batch CRC mismatch (stored 0x{batch.crc & 0xFFFFFFFF:08x})")
            return _CheckedBatch(batch, list(batch))  # reading the records decompresses them
        except Exception as exc:  # any failure to read the batch: corrupt, truncated, unknown codec
            tp = getattr(self._owner, self._tp_attr)
            first = max(batch.base_offset, self._owner.next_fetch_offset)
            QUARANTINE.add(QuarantinedBatch(tp.topic, tp.partition, first, batch.next_offset - 1,
                                            f"{type(exc).__name__}: {exc}", int(time.time() * 1000)))
            return _SkippedBatch(batch.next_offset)


class _SkippedBatch:
    """In place of a quarantined batch: what both clients read to step over a control batch."""

    is_control_batch = True
    is_transactional = False
    producer_id = None
    magic = 2
    leader_epoch = -1

    def __init__(self, next_offset: int) -> None:
        self.next_offset = next_offset

    def validate_crc(self) -> bool:
        return True

    def has_producer_id(self) -> bool:
        return False


def install() -> None:
    """Check every batch every Kafka consumer of this process unpacks, aiokafka's (Faust's
    included) and kafka-python's (idempotent)."""
    from aiokafka.consumer import fetcher as aio_fetcher
    from kafka.consumer import fetcher as kp_fetcher

    aio = aio_fetcher.PartitionRecords
    if not getattr(aio.__init__, "_journey_quarantine", False):
        aio_init = aio.__init__

        def aio_checked(self: Any, tp: Any, records: Any, *args: Any, **kwargs: Any) -> None:
            aio_init(self, tp, _CheckedRecords(records, self, "_tp", "_check_crcs"), *args, **kwargs)

        aio_checked._journey_quarantine = True  # type: ignore[attr-defined]
        aio.__init__ = aio_checked  # type: ignore[method-assign]
    kp = kp_fetcher.Fetcher.PartitionRecords
    if not getattr(kp.__init__, "_journey_quarantine", False):
        kp_init = kp.__init__

        def kp_checked(self: Any, fetch_offset: int, tp: Any, records: Any, *args: Any, **kwargs: Any) -> None:
            kp_init(self, fetch_offset, tp, _CheckedRecords(records, self, "topic_partition", "check_crcs"),
                    *args, **kwargs)

        kp_checked._journey_quarantine = True  # type: ignore[attr-defined]
        kp.__init__ = kp_checked  # type: ignore[method-assign]


async def publish(settings: Settings, producer: Any = None) -> int:
    """Send what was quarantined since the last call to the dead-letter topic; returns how many.

    With no `producer` (the sink has none) a short-lived one is made: quarantines are rare.
    Batches not sent stay pending for the next call.
    """
    batches = QUARANTINE.take()
    if not batches:
        return 0
    own = producer is None
    try:
        if own:
            from aiokafka import AIOKafkaProducer

            from infra.base.kafka_clients import client_args

            producer = AIOKafkaProducer(**client_args(settings, producer=True), acks="all")
            await producer.start()
        for batch in batches:
            await producer.send_and_wait(settings.topics.dlq, b"", headers=batch.headers())
    except Exception as exc:  # broker away: keep them, the next call tries again
        QUARANTINE.give_back(batches)
        log.warning("could not dead-letter %d quarantined batches yet (%s)", len(batches), exc)
        return 0
    finally:
        if own and producer is not None:
            await producer.stop()
    return len(batches)


def attach_to_faust(app: Any, settings: Settings, every_s: float = 0.5) -> None:
    """The worker's hook: dead letters of what its consumer set aside, sent by a timer through its producer.

    A timer rather than the batch handler: a fetch holding only a bad batch hands no batch over.
    """
    class _FaustProducer:  # send_and_wait in aiokafka's shape, through Faust's own producer
        @staticmethod
        async def send_and_wait(topic: str, value: bytes, headers: list[tuple[str, bytes]]) -> None:
            await app.producer.send_and_wait(topic, None, value, None, None, headers)

    @app.timer(every_s)
    async def dead_letter_quarantined() -> None:
        await publish(settings, _FaustProducer())

    _ = dead_letter_quarantined
