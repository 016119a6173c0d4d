"""Control records on the touchpoints topic: a producer's begin and end of data on one partition.

A producer that knows when its data ends (`journey emit --file`, the emitter library on close)
writes, on every partition it wrote to, a *begin* record before its first event there and an *end*
record after its last one was acknowledged. Intake then need not wait for the silence rule
(JOURNEY_SOURCE_IDLE_S) before a finished partition follows the topic (`streams.intake.marks`).

Wire form, chosen so that every reader can tell it from a touchpoint without decoding:
- value: ASCII ``journey-control <kind> <session>``; it does not start with the Confluent magic
  byte 0, so an Avro reader refuses it rather than misreading it (our readers skip it first);
- header ``journey-control: <kind>``, so that foreign consumers can drop it without reading the
  value (Kafka Connect: the `HasHeaderKey` predicate with the `Filter` transform);
- no key; the producer picks the partition it speaks about.
`session` names one producer's run (random), so that intake can tell several producers apart.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

HEADER = "journey-control"
PREFIX = b"journey-control "
_FIRST = PREFIX[0]
BEGIN: Literal["begin"] = "begin"
END: Literal["end"] = "end"
_MAX_SESSION = 64


@dataclass(frozen=True)
class Control:
    """One control record: `kind` "begin" or "end" of `session`'s data on its partition."""

    kind: Literal["begin", "end"]
    session: str

    def encode(self) -> bytes:
        return PREFIX + f"{self.kind} {self.session}".encode("ascii")

    def headers(self) -> list[tuple[str, bytes]]:
        return [(HEADER, self.kind.encode("ascii"))]


def new_session() -> str:
    """A name for one producer's run."""
    return uuid.uuid4().hex


def is_control(value: bytes | None) -> bool:
    """True for a control record's value (cheap: most values fail on the first byte)."""
    return bool(value) and value[0] == _FIRST and value.startswith(PREFIX)  # type: ignore[index, union-attr]


def parse(value: bytes) -> Control | None:
    """The control record in `value`, or None for a malformed one (then it is ignored, never an event)."""
    parts = value[len(PREFIX):].split(b" ")
    if len(parts) != 2 or parts[0] not in (b"begin", b"end") or not 0 < len(parts[1]) <= _MAX_SESSION:
        return None
    try:
        session = parts[1].decode("ascii")
    except UnicodeDecodeError:
        return None
    return Control(BEGIN if parts[0] == b"begin" else END, session)
