"""How `journey emit` spreads work: journeys to worker processes, keys to partitions; its GC setting."""

from __future__ import annotations

import gc
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka.cluster import ClusterMetadata
from kafka.partitioner import DefaultPartitioner

from streams.emit_parallel import route
from streams.emitter import GC_FIRST_GENERATION, KeyPartitioner, fewer_gc_passes


@given(st.binary(min_size=1, max_size=64), st.integers(min_value=1, max_value=64))
def test_key_partitioner_matches_kafka_pythons_default_partitioner(key: bytes, partitions: int) -> None:
    class Cluster(ClusterMetadata):
        def topics(self, exclude_internal_topics: bool = True) -> set[str]:
            return {"t"}

        def partitions_for_topic(self, topic: str) -> set[int]:
            return set(range(partitions))

        def available_partitions_for_topic(self, topic: str) -> set[int]:
            return set(range(partitions))

    expected = DefaultPartitioner().partition("t", key, key, b"", b"", Cluster())
    mine = KeyPartitioner(list(range(partitions)))
    assert mine(key) == expected
    assert mine(key) == expected  # memoised answer is the same


def test_one_journey_always_goes_to_the_same_worker() -> None:
    lines = [json.dumps({"journey_id": f"j-{i % 13}", "n": i}) for i in range(500)]
    workers: dict[str, set[int]] = {}
    for line in lines:
        workers.setdefault(json.loads(line)["journey_id"], set()).add(route(line, 3))
    assert all(len(w) == 1 for w in workers.values())
    assert set().union(*workers.values()) == {0, 1, 2}  # and the work is spread


def test_lines_without_a_journey_id_go_to_worker_zero() -> None:
    for line in ["{not json", "[1, 2]", '{"journey_id": 7}', '{"event_id": "e"}']:
        assert route(line, 4) == 0


@given(st.text(max_size=20), st.dictionaries(st.text(max_size=12), st.text(max_size=12), max_size=3),
       st.booleans())
def test_the_fast_route_agrees_with_parsing_the_line(journey: str, attrs: dict[str, str], ascii_only: bool) -> None:
    import zlib

    line = json.dumps({"event_id": "e", "journey_id": journey, "attrs": attrs}, ensure_ascii=ascii_only)
    parsed = json.loads(line)["journey_id"]
    assert route(line, 5) == zlib.crc32(parsed.encode("utf-8", "surrogatepass")) % 5


def test_a_bulk_emit_collects_cycles_less_often_and_restores_the_collector_after() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), fewer_gc_passes():
        assert gc.get_threshold() == (GC_FIRST_GENERATION, *before[1:])
        raise RuntimeError("a failed emit")
    assert gc.get_threshold() == before
