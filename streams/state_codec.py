"""Journey state <-> bytes for the journey table (RocksDB and its changelog).

The table holds raw bytes: Faust's json codec would encode every write twice (once for the
changelog message, once for RocksDB) through its own encoder class; here each changed journey
is encoded once, compactly, by the C encoder. It is still JSON (`Journey.to_state`), so a changelog written by
Faust's json codec, or in the older all-keys layout, reads back the same.
"""

from __future__ import annotations

import json

from streams.domain.journey import Journey
from streams.domain.tombstones import Tombstone

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False).encode
_decode = json.JSONDecoder().decode


def encode_journey(journey: Journey) -> bytes:
    """Compact JSON bytes of a journey's state."""
    return _encode(journey.to_state()).encode()


def decode_journey(data: bytes) -> Journey | Tombstone:
    """The journey from `encode_journey` (or from Faust's json codec), or an expired journey's
    tombstone from `encode_tombstone`."""
    state = _decode(data.decode())
    if "t" in state:
        return Tombstone(state["p"], state["t"], state["d"])
    return Journey.from_state(state)


def encode_tombstone(tombstone: Tombstone) -> bytes:
    """Compact JSON bytes of an expired journey's tombstone."""
    return _encode(tombstone.to_state()).encode()
