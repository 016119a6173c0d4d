"""Journey state <-> bytes for the journey table (RocksDB and its changelog).

The table holds raw bytes: Faust's json codec would encode every write twice (once for the
changelog message, once for RocksDB) through its own encoder class; here each changed journey
is encoded once, compactly, by the C encoder. It is still JSON, so a changelog written by
Faust's json codec reads back the same.
"""

from __future__ import annotations

import json
from typing import Any

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False).encode
_decode = json.JSONDecoder().decode


def encode_journey(state: dict[str, Any]) -> bytes:
    """Compact JSON bytes of a journey's state."""
    return _encode(state).encode()


def decode_journey(data: bytes) -> dict[str, Any]:
    """The journey state from `encode_journey` (or from Faust's json codec)."""
    return _decode(data.decode())  # type: ignore[no-any-return]
