"""Dead letters keep the original key and bytes; why they failed travels in Kafka headers."""

from __future__ import annotations

from collections.abc import Iterable

REASON = "journey.dlq.reason"
KIND = "journey.dlq.kind"
SOURCE_TOPIC = "journey.dlq.source_topic"
PARTITION = "journey.dlq.partition"
OFFSET = "journey.dlq.offset"
MAX_REASON = 1000


def dead_letter_headers(
    reason: str, source_topic: str, partition: int | None, offset: int | None, error_kind: str
) -> list[tuple[str, bytes]]:
    """Kafka headers describing why a message was dead-lettered and where it came from."""
    headers = [
        (REASON, reason[:MAX_REASON].encode("utf-8", "replace")),
        (KIND, error_kind.encode()),
        (SOURCE_TOPIC, source_topic.encode()),
    ]
    if partition is not None:
        headers.append((PARTITION, str(partition).encode()))
    if offset is not None:
        headers.append((OFFSET, str(offset).encode()))
    return headers


def parse_dead_letter_headers(headers: Iterable[tuple[str, bytes]]) -> dict[str, object]:
    """Headers -> {reason, kind, source_topic, partition, offset} (missing ones left out)."""
    names = {REASON: "reason", KIND: "kind", SOURCE_TOPIC: "source_topic", PARTITION: "partition", OFFSET: "offset"}
    out: dict[str, object] = {}
    for key, raw in headers:
        name = names.get(key)
        if name is None or raw is None:
            continue
        text = bytes(raw).decode("utf-8", "replace")
        out[name] = int(text) if name in ("partition", "offset") and text.isdigit() else text
    return out
