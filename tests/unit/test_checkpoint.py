"""The batch checkpoint: publish, delivered, persist, flush, ack -- in that order, or not at all."""

from __future__ import annotations

import asyncio
from typing import Any

from streams.checkpoint import Checkpoint


class Recorder:
    """Ports that record what the checkpoint asked for, in order."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.gen = 1
        self.stopping = False
        self.dropped_generations: list[int] = []

    async def flush(self) -> None:
        self.calls.append("flush")

    def handing_over(self) -> bool:
        return self.stopping

    def generation(self) -> int:
        return self.gen

    def current(self, messages: list[Any]) -> list[Any]:
        return [m for m in messages if m != "revoked"]

    def ack(self, messages: list[Any]) -> None:
        self.calls.extend(f"ack {message}" for message in messages)


def run(ports: Recorder, *, before_delivery: Any = None, messages: tuple[str, ...] = ("m1", "m2")) -> bool:
    """Commit one batch whose one record is delivered a moment later; `before_delivery` runs meanwhile."""

    async def main() -> bool:
        checkpoint = Checkpoint(ports, on_dropped=lambda generation: ports.dropped_generations.append(generation))
        acks = asyncio.create_task(checkpoint.run_acks())

        async def delivered() -> None:
            await asyncio.sleep(0.01)
            if before_delivery:
                before_delivery()
            ports.calls.append("delivered")

        async def publish() -> list[Any]:
            ports.calls.append("publish")
            return [asyncio.ensure_future(delivered())]

        async def persist() -> None:
            ports.calls.append("persist")

        done = await checkpoint.commit(1, list(messages), publish, persist)
        ports.calls.append("handler done")
        await asyncio.sleep(0.05)
        acks.cancel()
        return done
    return asyncio.run(main())


def test_publish_then_delivered_then_persist_then_flush_then_ack() -> None:
    ports = Recorder()
    assert run(ports)
    assert ports.calls == ["publish", "handler done", "delivered", "persist", "flush", "ack m1", "ack m2"]


def test_a_rebalance_before_delivery_persists_nothing_acks_nothing_and_reloads() -> None:
    ports = Recorder()
    assert run(ports, before_delivery=lambda: setattr(ports, "gen", 2))
    assert ports.calls == ["publish", "handler done", "delivered"] and ports.dropped_generations == [1]


def test_a_batch_of_an_older_generation_is_not_even_published() -> None:
    ports = Recorder()
    ports.gen = 3
    assert not run(ports) and ports.calls == ["handler done"]


def test_stopping_after_persist_flushes_but_acks_nothing() -> None:
    ports = Recorder()

    async def main() -> None:
        checkpoint = Checkpoint(ports)

        async def persist() -> None:
            ports.calls.append("persist")
            ports.stopping = True

        async def publish() -> list[Any]:
            ports.calls.append("publish")
            return []

        assert await checkpoint.commit(1, ["m1"], publish, persist)
        acks = asyncio.create_task(checkpoint.run_acks())
        await asyncio.sleep(0.01)
        acks.cancel()
    asyncio.run(main())
    assert ports.calls == ["publish", "persist", "flush"]


def test_messages_revoked_meanwhile_are_not_acked() -> None:
    ports = Recorder()
    run(ports, messages=("m1", "revoked"))
    assert ports.calls[-1] == "ack m1" and "ack revoked" not in ports.calls


def test_a_batch_given_up_after_the_stage_loaded_again_does_not_make_it_load_again() -> None:
    """A reload throws away what batches of the new generation changed and have not persisted yet;
    the batches after would then persist their journeys without it (lost updates under load)."""
    from streams.stage import Stage

    stage = Stage(app=None, topic="t", internal_partitions=4, stats=None)
    stage._synced = 7  # loaded for generation 7: its batches may be processed, not yet persisted
    stage.resync(6)  # the checkpoint gives up a batch of generation 6
    assert stage._synced == 7
    stage.resync(7)  # one of the generation it loaded for: load again
    assert stage._synced == -1
