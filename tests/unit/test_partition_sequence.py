"""PartitionSequence: each partition's records applied in offset order, from the committed offset."""

from __future__ import annotations

from faust.types import TP, Message

from streams.batch_consumer import PartitionSequence

P0 = TP("touchpoints", 0)
P1 = TP("touchpoints", 1)


def records(tp: TP, first: int, last: int) -> list[Message]:
    return [Message(tp.topic, tp.partition, offset, 0.0, 0, None, b"k", b"v", None) for offset in
            range(first, last + 1)]


def offsets(messages: list[Message]) -> list[tuple[int, int]]:
    return [(m.partition, m.offset) for m in messages]


def test_records_fetched_ahead_of_the_seek_are_dropped_and_their_partition_sought_back() -> None:
    # the regression: after a rebalance, 2842.. (fetched before Faust's seek) came before 2476..
    sequence = PartitionSequence()
    sequence.restart({P0: 2476, P1: 100})
    taken, seek = sequence.take(records(P0, 2842, 2845) + records(P1, 100, 101))
    assert offsets(taken) == [(1, 100), (1, 101)]
    assert seek == {P0: 2476}
    taken, seek = sequence.take(records(P0, 2476, 2478))
    assert offsets(taken) == [(0, 2476), (0, 2477), (0, 2478)] and seek == {}
    assert sequence.expected == {P0: 2479, P1: 102}


def test_records_below_the_expected_offset_were_applied_before() -> None:
    sequence = PartitionSequence()
    sequence.restart({P0: 10})
    taken, seek = sequence.take(records(P0, 8, 12))
    assert offsets(taken) == [(0, 10), (0, 11), (0, 12)] and seek == {}


def test_a_partition_without_committed_offset_starts_where_its_first_record_is() -> None:
    sequence = PartitionSequence()
    sequence.restart({P0: None})
    taken, _ = sequence.take(records(P0, 5, 6))
    assert offsets(taken) == [(0, 5), (0, 6)]
    _, seek = sequence.take(records(P0, 9, 9))  # then in sequence like any other
    assert seek == {P0: 7}


def test_a_gap_still_there_after_the_seek_back_is_taken() -> None:
    # retention deleted 20..29: the fetcher resets to the earliest offset it still has
    sequence = PartitionSequence()
    sequence.restart({P0: 20})
    assert sequence.take(records(P0, 30, 31)) == ([], {P0: 20})
    taken, seek = sequence.take(records(P0, 30, 31))
    assert offsets(taken) == [(0, 30), (0, 31)] and seek == {}


def test_a_restart_forgets_what_was_expected() -> None:
    sequence = PartitionSequence()
    sequence.restart({P0: 50})
    sequence.take(records(P0, 50, 60))
    sequence.restart({P0: 40})  # the committed offset after the next rebalance
    taken, _ = sequence.take(records(P0, 40, 41))
    assert offsets(taken) == [(0, 40), (0, 41)]


def test_a_partition_resumes_at_the_committed_offset_not_where_the_fetcher_got_to() -> None:
    """Intake resumed a source's clock from the consumer's position, thousands of records past the
    committed offset under load: its first marks ran ahead of the events still to send (false
    breaches after rebalances)."""
    from types import SimpleNamespace

    from streams.batch_consumer import resume_offset

    sequence = PartitionSequence()
    sequence.restart({P0: 4092, P1: None})  # Faust's seek to the committed offsets
    app = SimpleNamespace(consumer=SimpleNamespace(sequence=sequence))
    assert resume_offset(app, P0.topic, 0) == 4092  # however far the fetcher has read meanwhile
    assert resume_offset(app, P1.topic, 1) == 0  # nothing committed: the reset policy reads from the start
    sequence.take(records(P0, 4092, 4093))
    assert resume_offset(app, P0.topic, 0) == 4094  # then: the next record to apply
