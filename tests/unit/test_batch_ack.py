"""`BatchConsumer.ack_all`: one pass over a batch leaves Faust's ack bookkeeping exactly as
`Consumer.ack` per message does (what Faust then commits is computed from it)."""

from __future__ import annotations

from typing import Any

from faust.types import TP
from faust.types.tuples import ConsumerMessage

from streams.batch_consumer import BatchApp

ACKED = TP("touchpoints", 0)
OTHER = TP("touchpoints", 1)
NOT_ACKING = TP("elsewhere", 0)


def consumer() -> Any:
    app = BatchApp("ack-test", broker="kafka://127.0.0.1:1")  # never started: no broker needed
    app.topics._acking_topics.add("touchpoints")  # what subscribing to the topic with acks does
    app.consumer._committed_offset[ACKED] = 10
    return app.consumer


def batch() -> list[ConsumerMessage]:
    """Below the committed offset, in order, a repeat, another partition, a topic without acks."""
    plan = [(ACKED, 8), (ACKED, 10), (ACKED, 11), (ACKED, 13), (ACKED, 11), (OTHER, 0), (OTHER, 1),
            (NOT_ACKING, 4), (ACKED, 12)]
    messages = [ConsumerMessage(tp.topic, tp.partition, offset, 0.0, 0, None, b"k", b"v", None, tp=tp)
                for tp, offset in plan]
    messages[2].acked = True  # acked before (its offset is not recorded again)
    return messages


def bookkeeping(consumer: Any, messages: list[ConsumerMessage]) -> Any:
    return ({tp: list(v) for tp, v in consumer._acked.items()}, {tp: set(v) for tp, v in consumer._acked_index.items()},
            consumer._n_acked, [m.acked for m in messages], consumer._new_offset(ACKED), consumer._new_offset(OTHER))


def test_ack_all_keeps_the_books_as_faust_does_per_message() -> None:
    faust_way, ours = consumer(), consumer()
    one_by_one, at_once = batch(), batch()
    for message in one_by_one:
        faust_way.ack(message)
    ours.ack_all(at_once)
    assert bookkeeping(ours, at_once) == bookkeeping(faust_way, one_by_one)
    ours.ack_all([])  # nothing to do, no error
