"""Thin kafka-python adapters: reachability, topic creation, clients with the stack's settings."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from infra.base.config import Settings
from infra.base.errors import JourneyError
from infra.base.kafka_clients import client_args

log = logging.getLogger(__name__)


def _first_address(bootstrap: str) -> tuple[str, int]:
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    return host or "127.0.0.1", int(port)


def broker_reachable(bootstrap: str, timeout_s: float = 2.0, settings: Settings | None = None) -> bool:
    """True when the broker answers a metadata request (not merely accepts TCP), authenticating
    as `settings` say."""
    try:
        with socket.create_connection(_first_address(bootstrap), timeout=timeout_s):
            pass
        admin = KafkaAdminClient(
            **{**(client_args(settings) if settings else {}), "bootstrap_servers": bootstrap},
            request_timeout_ms=int(timeout_s * 1000),
            bootstrap_timeout_ms=int(timeout_s * 1000),
        )
    except (OSError, KafkaError, ValueError):
        return False
    try:
        admin.list_topics()
        return True
    except KafkaError:
        return False
    finally:
        admin.close()


def require_broker(settings: Settings, timeout_s: float = 3.0) -> None:
    """Fail fast with one clear line when the broker cannot be reached."""
    if not broker_reachable(settings.bootstrap_servers, timeout_s, settings):
        raise JourneyError(
            f"Kafka broker not reachable at {settings.bootstrap_servers}: start the local stack "
            "with `journey up -d`, or set KAFKA_BOOTSTRAP_SERVERS to a running cluster"
        )


def admin_client(settings: Settings) -> KafkaAdminClient:
    """An admin client for the configured cluster (clear error when it is down)."""
    try:
        return KafkaAdminClient(
            **client_args(settings),
            request_timeout_ms=10000,
            bootstrap_timeout_ms=5000,
        )
    except KafkaError:
        raise JourneyError(
            f"Kafka broker not reachable at {settings.bootstrap_servers}: run `journey up -d` "
            "or set KAFKA_BOOTSTRAP_SERVERS"
        ) from None


def ensure_topics(
    settings: Settings, names: Iterable[str], partitions: int | None = None
) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics())
        missing = [n for n in dict.fromkeys(names) if n not in existing]
        if not missing:
            return []
        new = [NewTopic(n, partitions or settings.partitions, 1) for n in missing]
        try:
            admin.create_topics(new)
        except TopicAlreadyExistsError:
            pass  # another process created it between our list and create: fine
        log.info("created topics %s", missing)
        return missing
    finally:
        admin.close()


def consumer(settings: Settings, *topics: str, group_id: str | None = None, **kw: object) -> KafkaConsumer:
    """A kafka-python consumer with the stack's group timeouts (short: Tansu joins wait one)."""
    defaults: dict[str, object] = {
        **client_args(settings),
        "group_id": group_id,
        "session_timeout_ms": settings.session_timeout_ms,
        "heartbeat_interval_ms": max(100, settings.session_timeout_ms // 3),
        "auto_offset_reset": "earliest",
        "enable_auto_commit": False,
    }
    defaults.update(kw)
    return KafkaConsumer(*topics, **defaults)


def records_written(settings: Settings, reader: KafkaConsumer, topic: str) -> int:
    """Records ever written to `topic`: the sum of its partitions' true ends (0 if it has none).

    Not the reported end offsets alone: Tansu reports the base offset of a partition's last record
    batch + 1 (see `last_offsets_from`), so 3 dead letters sent as one batch counted 1."""
    parts = [TopicPartition(topic, p) for p in reader.partitions_for_topic(topic) or ()]
    if not parts:
        return 0
    reported = reader.end_offsets(parts)
    last = last_offsets_from(settings, {(tp.topic, tp.partition): end - 1 for tp, end in reported.items()})
    return sum(offset + 1 for offset in last.values())


def _read_each(settings: Settings, starts: dict[TopicPartition, int],
               take: Callable[[TopicPartition, list[Any]], bool], timeout_s: float) -> None:
    """Read every partition of `starts` from its offset, handing each fetched run of records to `take`
    until it says it has enough (True) or `timeout_s` passes."""
    reader = KafkaConsumer(**client_args(settings), enable_auto_commit=False)
    try:
        reader.assign(list(starts))
        for tp, start in starts.items():
            reader.seek(tp, start)
        pending = set(starts)
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            for tp, records in reader.poll(timeout_ms=200).items():
                if tp in pending and take(tp, records):
                    pending.discard(tp)
    finally:
        reader.close()


def last_offsets_from(settings: Settings, starts: dict[tuple[str, int], int], timeout_s: float = 10.0) -> dict[
        tuple[str, int], int]:
    """The offset of the last record of each (topic, partition), reading from `starts` (-1: empty).

    Tansu reports a partition's end as the base offset of its last record batch + 1, so the
    records after the first of that batch lie past the reported end. Reading from that base
    returns the whole batch (a fetch never splits one) and with it the real last offset.
    """
    result = dict(starts)

    def take(tp: TopicPartition, records: list[Any]) -> bool:
        key = (tp.topic, tp.partition)
        result[key] = max(result[key], records[-1].offset)
        return True

    wanted = {TopicPartition(t, p): start for (t, p), start in starts.items() if start >= 0}
    if wanted:
        _read_each(settings, wanted, take, timeout_s)
    return result


def values_before(settings: Settings, topic: str, positions: dict[int, int], lookback: int = 64,
                  timeout_s: float = 10.0) -> dict[int, list[tuple[bytes, int]]]:
    """Per partition, (value, timestamp ms) of (up to `lookback`) records just before `positions`
    (offset order)."""
    result: dict[int, list[tuple[bytes, int]]] = {p: [] for p in positions}
    ends = {TopicPartition(topic, p): pos for p, pos in positions.items() if pos > 0}

    def take(tp: TopicPartition, records: list[Any]) -> bool:
        result[tp.partition] += [(r.value, r.timestamp) for r in records
                                 if r.offset < ends[tp] and r.value is not None]
        return records[-1].offset >= ends[tp] - 1

    if ends:
        _read_each(settings, {tp: max(0, pos - lookback) for tp, pos in ends.items()}, take, timeout_s)
    return result
