"""Who may send (API keys, browser origins) and how fast (per-key token buckets). Pure logic."""

from __future__ import annotations

import hmac
import ipaddress
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from infra.base.config import ConfigError, Settings

ANONYMOUS = "anonymous"
BURST_S = 2.0  # a key may send 2 s worth of events at once (a batch flushed after a pause)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Access:
    """API keys per source and the web-shop origins allowed to call from a browser.

    Without keys the collector takes anonymous events (source "anonymous"), and only on a
    loopback address: `from_settings` refuses a keyless collector anyone on the network can reach.
    """

    keys: dict[str, str] = field(repr=False)  # source -> key
    origins: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, settings: Settings) -> Access:
        if not settings.collector_keys and not is_loopback(settings.host):
            raise ConfigError(
                f"the collector would listen on {settings.host} without API keys: set JOURNEY_COLLECTOR_KEYS "
                "(source=key[,source=key...]) or bind it to loopback (JOURNEY_HOST=127.0.0.1)")
        return cls(dict(settings.collector_keys), frozenset(settings.collector_origins))

    @property
    def anonymous(self) -> bool:
        return not self.keys

    def source_of(self, key: str | None) -> str | None:
        """The source a key belongs to; None for a missing or unknown key (401)."""
        if not key:
            return ANONYMOUS if self.anonymous else None
        found = None
        for source, known in self.keys.items():
            # compare with every key, in constant time each: no timing hint about which is close
            if hmac.compare_digest(key.encode(), known.encode()):
                found = source
        return found

    def origin_allowed(self, origin: str | None) -> bool:
        """Requests without an Origin header (POS terminals, servers) are not browser calls: allowed."""
        return origin is None or origin in self.origins


class TokenBucket:
    """`rate` events/s with bursts of `BURST_S` seconds; a batch bigger than the burst may go into debt."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.capacity = max(rate * BURST_S, 1.0)
        self.tokens = self.capacity
        self.clock = clock
        self.at = clock()

    def take(self, count: int) -> float:
        """Take `count` tokens: 0.0 when allowed, else the seconds to wait before retrying."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        # A batch larger than the burst is allowed when the bucket is full (it then owes the
        # difference), so the batch limit and the rate limit never combine to refuse forever.
        need = min(float(count), self.capacity)
        if self.tokens >= need:
            self.tokens -= count
            return 0.0
        return (need - self.tokens) / self.rate


class RateLimiter:
    """One token bucket per source."""

    def __init__(self, rate_per_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate_per_s
        self.clock = clock
        self.buckets: dict[str, TokenBucket] = {}

    def take(self, source: str, count: int) -> int:
        """0 when allowed, else the whole seconds a client should wait (Retry-After); rate <= 0: no limit."""
        if self.rate <= 0:
            return 0
        bucket = self.buckets.get(source)
        if bucket is None:
            bucket = self.buckets[source] = TokenBucket(self.rate, self.clock)
        wait = bucket.take(count)
        return 0 if wait <= 0 else max(1, math.ceil(wait))
