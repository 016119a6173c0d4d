"""One batch's effects, made durable in a fixed order before its offsets may be committed.

    publish -> delivered -> persist -> flush -> ack

1. **publish**: what the batch produced for other consumers (incident rows, events re-keyed for
   the next stage) is sent, and delivered before anything else happens. A worker killed after
   this reads the batch again and sends the same records (same ids and versions: downstream
   keeps one). The other order could write a state that holds a change which never went out.
2. **persist**: the stage's table writes (changelog records) and dead letters are queued --
   unless our partitions may already be another worker's (a rebalance or a stop began since
   the batch was read): then nothing is written and the batch is never acked; its new owner
   reads it again.
3. **flush** then **ack** (in `run_acks`, so the next batch is processed meanwhile): once the
   producer has delivered everything, the batch's messages are acked and Faust may commit them.
   At most `depth` batches wait (backpressure).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol


class Ports(Protocol):
    """What a checkpoint needs from the runtime (Faust, in the worker)."""

    async def flush(self) -> None: ...  # every record sent so far is with the broker
    def handing_over(self) -> bool: ...  # a rebalance or a stop has begun
    def generation(self) -> int: ...  # changes with every rebalance
    def current(self, messages: list[Any]) -> list[Any]: ...  # those still ours (this generation, assigned)
    def ack(self, message: Any) -> None: ...


class Checkpoint:
    """Commits batches of one stage in order (see the module docstring)."""

    def __init__(self, ports: Ports, depth: int = 2) -> None:
        self.ports = ports
        self._pending: asyncio.Queue[list[Any]] = asyncio.Queue(maxsize=depth)

    def still_ours(self, generation: int) -> bool:
        return not self.ports.handing_over() and self.ports.generation() == generation

    async def commit(self, generation: int, messages: list[Any], publish: Callable[[], Awaitable[None]],
                     persist: Callable[[], Awaitable[None]]) -> bool:
        """Publish (and wait for delivery), then persist, then queue the batch for its ack.
        False when the partitions may be someone else's by then (nothing persisted, no ack)."""
        if not self.still_ours(generation):
            return False
        await publish()
        if not self.still_ours(generation):
            return False  # what went out is sent again by the new owner, with the same ids
        await persist()
        await self._pending.put(messages)
        return True

    async def run_acks(self) -> None:
        """Forever: flush, then ack each committed batch's messages that are still ours."""
        while True:
            messages = await self._pending.get()
            await self.ports.flush()
            if self.ports.handing_over():
                continue  # whoever owns the partitions next reads them again from the committed offset
            for message in self.ports.current(messages):
                self.ports.ack(message)
