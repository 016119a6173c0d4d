"""Slow down password/token guessing: failed logins from one address wait, one at a time.

A failure from an address waits `delay(n)` (doubling from `base_s` up to `max_s` with the
failures seen in the last `window_s`) while holding that address's lock, so parallel guesses
from one address queue behind each other: at most ~1/max_s tries per second once it is
guessing. Successful logins never wait. Each failure is logged with the user name and the
address, never the secret that was tried.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from infra.base.escaping import one_line


@dataclass
class LoginThrottle:
    """Per-address failure counts and locks (in memory: one process)."""

    logger: logging.Logger
    base_s: float = 0.05
    max_s: float = 1.0
    window_s: float = 60.0
    max_addresses: int = 10_000
    _failures: dict[str, tuple[int, float]] = field(default_factory=dict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def delay(self, failures: int) -> float:
        return min(self.max_s, self.base_s * 2 ** max(0, failures - 1))

    async def failed(self, address: str, who: str, what: str = "login") -> None:
        """Record a failed attempt, log it, and wait (serialised per address)."""
        now = time.monotonic()
        count, since = self._failures.get(address, (0, now))
        if now - since > self.window_s:
            count, since = 0, now
        count += 1
        if len(self._failures) >= self.max_addresses and address not in self._failures:
            self._failures.clear()  # bounded memory; the locks below still serialise
            self._locks = {a: lock for a, lock in self._locks.items() if lock.locked()}
        self._failures[address] = (count, since)
        self.logger.warning("%s failed for %s from %s (%d in %.0f s)", what, one_line(who, 64), address,
                            count, now - since)
        lock = self._locks.setdefault(address, asyncio.Lock())
        async with lock:
            await asyncio.sleep(self.delay(count))
