"""A request body in, checked events and the per-event answer out (pure: no HTTP, no Kafka).

Validation is `schemas.contract.validate_event`, the very check `journey emit` applies; the
collector adds one rule: the event's `source` is the source its API key belongs to.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from schemas.codec import encode
from schemas.contract import ContractError, validate_event
from schemas.contract import now_ms as contract_now_ms
from schemas.event_types import RECOVERY_TYPES

TOUCHPOINT = "touchpoint"


class BodyError(ValueError):
    """The request as a whole is unusable; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Checked:
    """One event of a request: valid (with its key and Avro bytes) or rejected (with the reason)."""

    index: int
    event_id: str | None
    key: bytes | None = None
    value: bytes | None = None
    reason: str | None = None

    @property
    def valid(self) -> bool:
        return self.reason is None

    @property
    def record(self) -> tuple[bytes, bytes]:
        """Kafka key and value of a valid event."""
        if self.key is None or self.value is None:
            raise ValueError(f"event {self.index} was rejected: it has no record")
        return self.key, self.value


def parse_body(body: bytes, max_batch: int) -> list[Any]:
    """The body's events: one JSON object, or a JSON array of them (a batch)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BodyError(400, f"the body is not valid JSON ({exc}); send one event object or an array of them") from None
    if isinstance(data, dict):
        return [data]
    if not isinstance(data, list):
        raise BodyError(400, f"the body must be an event object or an array of events, got {type(data).__name__}")
    if not data:
        raise BodyError(400, "the batch is empty: send at least one event")
    if len(data) > max_batch:
        raise BodyError(413, f"the batch has {len(data)} events, more than the limit of {max_batch} "
                             "(JOURNEY_COLLECTOR_MAX_BATCH): split it into smaller batches")
    return data


def check_events(items: list[Any], source: str, now_ms: int | None = None, staff: bool = False) -> list[Checked]:
    """Validate each item as `journey emit` does, stamp the source, encode the valid ones.

    Recovery events (acknowledge, contact, compensate, resolve, follow-up) close and change
    incidents: they come only from a staff source (a server-side POS key named in
    JOURNEY_COLLECTOR_STAFF_SOURCES), never from a public web key that sits in a shop's page.
    """
    checked = []
    received = now_ms if now_ms is not None else contract_now_ms()
    for index, item in enumerate(items):
        event_id = item.get("event_id") if isinstance(item, dict) else None
        event_id = event_id if isinstance(event_id, str) else None
        try:
            event = validate_event(item, now_ms)
            if not staff and event["type"] in RECOVERY_TYPES:
                raise ContractError(
                    f"{event['type']} is a staff action: source {source!r} is not a staff source "
                    "(JOURNEY_COLLECTOR_STAFF_SOURCES); acknowledge or resolve on the on-call page or with "
                    "`journey ack`/`journey resolve`")
            if event["source"] not in (None, source):
                raise ContractError(f"source {event['source']!r} does not match the API key's source {source!r} "
                                    "(the collector sets it: leave it out)")
            event["source"] = source
            event["received_at"] = received  # ours, whatever the client says: the anchor of its clock's skew
            value = encode(TOUCHPOINT, event)
        except (ValueError, TypeError) as exc:
            # ContractError is a ValueError; ValueError/TypeError are also what fastavro raises
            checked.append(Checked(index, event_id, reason=str(exc)))
            continue
        checked.append(Checked(index, event_id, event["journey_id"].encode(), value))
    return checked


def answer(checked: list[Checked]) -> tuple[int, dict[str, Any]]:
    """HTTP status and body for a request whose valid events the broker acknowledged.

    200: every event accepted. 207: some accepted (written) and some rejected, so a client
    must not resend the whole batch as failed, only fix the rejects. 400: none accepted.
    """
    results = [{"index": c.index, "event_id": c.event_id, "status": "accepted"} if c.valid else
               {"index": c.index, "event_id": c.event_id, "status": "rejected", "reason": c.reason}
               for c in checked]
    accepted = sum(1 for c in checked if c.valid)
    rejected = len(checked) - accepted
    status = 200 if not rejected else 207 if accepted else 400
    return status, {"accepted": accepted, "rejected": rejected, "results": results}
