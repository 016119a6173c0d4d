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

    async def flush(self) -> None:
        self.calls.append("flush")

    def handing_over(self) -> bool:
        return self.stopping

    def generation(self) -> int:
        return self.gen

    def current(self, messages: list[Any]) -> list[Any]:
        return [m for m in messages if m != "revoked"]

    def ack(self, message: Any) -> None:
        self.calls.append(f"ack {message}")


def run(ports: Recorder, *, during_publish: Any = None, messages: tuple[str, ...] = ("m1", "m2")) -> bool:
    async def main() -> bool:
        checkpoint = Checkpoint(ports)
        acks = asyncio.create_task(checkpoint.run_acks())

        async def publish() -> None:
            ports.calls.append("publish")
            if during_publish:
                during_publish()

        async def persist() -> None:
            ports.calls.append("persist")

        done = await checkpoint.commit(1, list(messages), publish, persist)
        await asyncio.sleep(0.01)
        acks.cancel()
        return done
    return asyncio.run(main())


def test_publish_then_persist_then_flush_then_ack() -> None:
    ports = Recorder()
    assert run(ports)
    assert ports.calls == ["publish", "persist", "flush", "ack m1", "ack m2"]


def test_a_rebalance_during_publish_persists_nothing_and_acks_nothing() -> None:
    ports = Recorder()
    assert not run(ports, during_publish=lambda: setattr(ports, "gen", 2))
    assert ports.calls == ["publish"]


def test_a_batch_of_an_older_generation_is_not_even_published() -> None:
    ports = Recorder()
    ports.gen = 3
    assert not run(ports) and ports.calls == []


def test_stopping_after_persist_flushes_but_acks_nothing() -> None:
    ports = Recorder()

    async def main() -> None:
        checkpoint = Checkpoint(ports)

        async def persist() -> None:
            ports.calls.append("persist")
            ports.stopping = True

        async def publish() -> None:
            ports.calls.append("publish")

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
