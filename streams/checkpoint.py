"""One batch's effects, made durable in a fixed order before its offsets may be committed.

    publish -> delivered -> persist -> flush -> ack

1. **publish** (in the stage's handler): what the batch produced for other consumers (incident
   rows, events re-keyed for the next stage) is sent; the stage also snapshots the state it
   changed (encoded bytes), so nothing it does with the next batch can leak into this one.
2. **delivered**, then **persist** (in `run_acks`, while the next batch is processed): only
   once everything published is with the broker is the snapshot written to the stage's table
   (changelog) -- a worker killed before reads the batch again and sends the same records (same
   ids and versions: downstream keeps one), whereas a state written first could hold a change
   that never went out. Not at all if our partitions may already be another worker's (a
   rebalance or a stop began since the batch was read): then the stage is told (`on_dropped`,
   with the batch's generation)
   to load its state again, and the batch is never acked; its new owner reads it again.
3. **flush** then **ack**: once the producer has delivered the table writes and dead letters
   too, the batch's messages are acked and Faust may commit them.
At most `depth` batches wait (backpressure). Waiting for delivery in the handler instead cost
a broker round trip per batch per stage in the hot path.
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
    def ack(self, messages: list[Any]) -> None: ...  # one call per batch


Persist = Callable[[], Awaitable[None]]


class Checkpoint:
    """Commits batches of one stage in order (see the module docstring)."""

    def __init__(self, ports: Ports, on_dropped: Callable[[int], None] = lambda generation: None,
                 depth: int = 4) -> None:
        self.ports = ports
        self.on_dropped = on_dropped
        self._pending: asyncio.Queue[tuple[int, list[Any], list[Any], Persist]] = asyncio.Queue(maxsize=depth)

    def still_ours(self, generation: int) -> bool:
        return not self.ports.handing_over() and self.ports.generation() == generation

    async def commit(self, generation: int, messages: list[Any], publish: Callable[[], Awaitable[list[Any]]],
                     persist: Persist) -> bool:
        """Publish (sends; their delivery futures returned), then queue the rest. False when the
        partitions may be someone else's already (nothing published, nothing persisted, no ack)."""
        if not self.still_ours(generation):
            return False
        sent = await publish()
        await self._pending.put((generation, messages, sent, persist))
        return True

    async def run_acks(self) -> None:
        """Forever, batch by batch: delivered, persist, flush, ack."""
        while True:
            generation, messages, sent, persist = await self._pending.get()
            for delivery in sent:
                await delivery
            if not self.still_ours(generation):
                self.on_dropped(generation)  # its state changes must not stay: the stage loads again
                continue
            await persist()
            await self.ports.flush()
            if self.ports.handing_over():
                continue  # whoever owns the partitions next reads them again from the committed offset
            self.ports.ack(self.ports.current(messages))
