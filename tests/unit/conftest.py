"""Fixtures shared by unit tests."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest

from schemas.registry import Registry, load_registry


@pytest.fixture
def touchpoint_v2() -> Iterator[tuple[Registry, int, int]]:
    """(registry, v1 id, v2 id): touchpoint v2 = v1 plus an optional `device` field and a new type
    symbol (`TABLE_RESET`), as a producer a release ahead of the reader would write."""
    registry = load_registry()
    v1 = registry.latest("touchpoint")
    raw = copy.deepcopy(v1.raw)
    raw["fields"].append({"name": "device", "type": ["null", "string"], "default": None})
    next(f for f in raw["fields"] if f["name"] == "type")["type"]["symbols"].append("TABLE_RESET")
    yield registry, v1.id, registry.register(1001, "touchpoint", v1.version + 1, raw).id
