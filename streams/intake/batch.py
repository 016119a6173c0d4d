"""Sorting a batch of raw touchpoint messages into events and dead letters (pure, no Kafka).

The worker's only gate: whatever this returns as valid is handed to the detector; everything
else is dead-lettered with its reason and kind. It never raises for bad input (fuzzed in
tests/unit/test_fuzz_decode.py), so one bad message cannot stop a worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas.codec import decode_many
from schemas.contract import ContractError, check_contract


@dataclass
class Sorted:
    """`valid`: (index in the batch, event) in batch order; `rejected`: index -> (reason, kind)."""

    valid: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    rejected: dict[int, tuple[str, str]] = field(default_factory=dict)


def sort_batch(values: list[bytes], now_ms: int) -> Sorted:
    """Decode `values` as touchpoints; kind "decode" for unreadable bytes, "contract" for events
    that read fine but break the contract (empty ids, oversized fields, absurd timestamps)."""
    records, failures = decode_many(values, "touchpoint")
    out = Sorted(rejected={f.index: (f.reason, "decode") for f in failures})
    decoded = iter(records)
    for index in range(len(values)):
        if index in out.rejected:
            continue
        record = next(decoded)
        try:
            check_contract(record, now_ms)
        except ContractError as exc:
            out.rejected[index] = (str(exc), "contract")
            continue
        out.valid.append((index, record))
    return out
