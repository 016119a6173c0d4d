"""The dead-letter topic: what could not be read, with the reason and the original bytes.

Writers: the touchpoint worker (undecodable or contract-violating messages) and `journey emit`
(lines it refused, as sent, the line number as offset). Readers:
`journey dlq list` and `journey dlq replay`. A dead letter is the original key and value,
unchanged, with the reason in Kafka headers, so nothing about the bad input is lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kafka import TopicPartition

from infra.base.config import Settings
from infra.base.kafka import consumer
from infra.base.quarantine import KIND as QUARANTINE_KIND
from infra.base.schema_registry import connect as connect_schema_registry
from schemas.codec import decode_many, encode
from schemas.contract import ContractError, check_contract, parse_json_line
from schemas.dead_letter import parse_dead_letter_headers
from streams.emitter import make_producer

REPLAY_GROUP = "journey-dlq-replay"


@dataclass(frozen=True)
class DeadLetter:
    """One message of the dead-letter topic."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes
    reason: str
    origin: str
    kind: str = ""  # what failed: decode, contract, quarantine (a whole record batch; no bytes here)

    def preview(self, width: int = 40) -> str:
        text = self.value[:width].decode("latin-1")
        return "".join(ch if ch.isprintable() else "." for ch in text)

    def as_json(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "offset": self.offset,
            "reason": self.reason,
            "origin": self.origin,
            "bytes": len(self.value),
            "value_hex": self.value.hex(),
        }


def _to_letter(message: Any) -> DeadLetter:
    info = parse_dead_letter_headers(message.headers or [])
    if "partition" in info:
        origin = f"{info.get('source_topic', '?')}[{info['partition']}]@{info.get('offset', '?')}"
    else:  # refused before it reached a topic (`journey emit`): the offset is the line number
        origin = f"{info.get('source_topic', '?')} line {info.get('offset', '?')}"
    return DeadLetter(
        message.partition, message.offset, message.key, message.value or b"",
        str(info.get("reason", "unknown")), origin, str(info.get("kind", "")),
    )


def read_dead_letters(settings: Settings, limit: int | None = None) -> list[DeadLetter]:
    """Every dead letter present now (oldest first per partition), up to `limit`."""
    reader = consumer(settings, group_id=None, consumer_timeout_ms=2000)
    try:
        partitions = reader.partitions_for_topic(settings.topics.dlq) or set()
        assignment = [TopicPartition(settings.topics.dlq, p) for p in sorted(partitions)]
        if not assignment:
            return []
        reader.assign(assignment)
        reader.seek_to_beginning(*assignment)
        return _read_until(reader, reader.end_offsets(assignment), limit)
    finally:
        reader.close()


def _read_until(reader: Any, end: dict[TopicPartition, int], limit: int | None) -> list[DeadLetter]:
    """Read what is there now: until every partition reached its end and a poll came back empty.

    The empty poll matters: Tansu reports a partition's end as the base offset of its last
    record batch + 1, so records after the first of a multi-record batch lie past `end`.
    """
    letters: list[DeadLetter] = []
    while limit is None or len(letters) < limit:
        batch = reader.poll(timeout_ms=500)
        for messages in batch.values():
            letters.extend(_to_letter(m) for m in messages)
        if not batch and all(reader.position(tp) >= off for tp, off in end.items()):
            break
    return letters[:limit] if limit is not None else letters


@dataclass
class ReplayResult:
    replayed: int = 0
    still_bad: int = 0


def repaired(letter: DeadLetter, now_ms: int | None = None) -> tuple[bytes | None, bytes, str | None]:
    """(key, value, None) to re-send when the letter now reads fine, else (.., .., why not).

    An Avro message goes back as it was; a JSON line that `journey emit` refused goes back as
    the Avro touchpoint it now validates to (keyed by its journey, like every touchpoint).
    """
    if letter.value[:1] != b"\x00":  # not Avro framing: maybe a JSON line from `journey emit`
        try:
            event = parse_json_line(letter.value.decode("utf-8"), now_ms)
        except (ContractError, UnicodeDecodeError) as exc:
            return letter.key, letter.value, str(exc)
        return event["journey_id"].encode(), encode("touchpoint", event), None
    events, failures = decode_many([letter.value], "touchpoint")
    if failures:
        return letter.key, letter.value, failures[0].reason
    try:
        check_contract(events[0], now_ms)
    except ContractError as exc:
        return letter.key, letter.value, str(exc)
    return letter.key, letter.value, None


def replay_dead_letters(settings: Settings, include_still_bad: bool = False) -> ReplayResult:
    """Re-send dead letters that now decode (or all, with `include_still_bad`) to the touchpoints.

    Progress is a consumer group's committed offsets: per partition it advances only up to the
    first letter that still fails, so a later fix can replay that one too. A letter behind it may
    then be sent again; duplicates are harmless downstream (deduplicated by `event_id`).
    """
    result = ReplayResult()
    connect_schema_registry(settings)  # a letter written with a version registered since then now reads
    reader = consumer(settings, group_id=REPLAY_GROUP, consumer_timeout_ms=2000)
    producer = make_producer(settings)
    try:
        partitions = reader.partitions_for_topic(settings.topics.dlq) or set()
        assignment = [TopicPartition(settings.topics.dlq, p) for p in sorted(partitions)]
        if not assignment:
            return result
        reader.assign(assignment)
        for tp in assignment:
            committed = reader.committed(tp)
            if committed is None:
                reader.seek_to_beginning(tp)
        end = reader.end_offsets(assignment)
        letters = _read_until(reader, end, None)
        commit_to: dict[TopicPartition, int] = {}
        blocked: set[int] = set()
        for letter in letters:
            tp = TopicPartition(settings.topics.dlq, letter.partition)
            if letter.kind == QUARANTINE_KIND:  # a report of a batch no client could read: nothing to re-send
                if letter.partition not in blocked:
                    commit_to[tp] = letter.offset + 1
                continue
            key, value, still_bad = repaired(letter)
            if still_bad is not None and not include_still_bad:
                result.still_bad += 1
                blocked.add(letter.partition)
                continue
            producer.send(settings.topics.touchpoints, key=key, value=value)
            result.replayed += 1
            if letter.partition not in blocked:
                commit_to[tp] = letter.offset + 1
        producer.flush(timeout=60)
        if commit_to:
            from kafka.structs import OffsetAndMetadata

            reader.commit({tp: OffsetAndMetadata(off, "", -1) for tp, off in commit_to.items()})
        return result
    finally:
        producer.close(timeout=10)
        reader.close()
