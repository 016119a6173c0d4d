"""The collector process: the HTTP app, an aiokafka producer behind it, a broker probe, heartbeats.

    python -m streams.collector          (started by `journey up`)

The producer is aiokafka's (the server is asyncio): acks=all, keyed by journey id with the
same murmur2 partitioner as the kafka-python emitter, so a journey lands on one partition
whichever way its events arrive; records go out as record batches per partition (`feeds`).
It runs without idempotence (Tansu refuses aiokafka's InitProducerId): a retried send can
write an event twice, and a duplicate event_id changes nothing downstream. A request is
answered only after every accepted event was acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections import Counter

from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from infra.base.config import ConfigError, Settings
from infra.base.escaping import escape_log_lines
from infra.base.heartbeat import write_heartbeat
from infra.base.kafka_clients import client_args
from infra.base.schema_registry import connect as connect_schema_registry
from schemas.dead_letter import dead_letter_headers
from streams.collector.app import BrokerUnavailable, create_collector_app
from streams.collector.feeds import PartitionFeeds
from streams.collector.intake import Checked
from streams.collector.limits import Access, RateLimiter

log = logging.getLogger("journey.collector")

PRODUCE_TIMEOUT_S = 5.0  # longer than any healthy ack; a client waits at most this before its 503
PROBE_EVERY_S = 1.0
PROBE_TIMEOUT_S = 2.0
START_RETRY_S = 1.0
MAX_BATCH_BYTES = 1024 * 1024


class Collector:
    """The Kafka side of the collector (the app's `Backend`) and the process around it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        connect_schema_registry(settings)  # an external registry's ids for what we write
        self.access = Access.from_settings(settings)
        self.limiter = RateLimiter(settings.collector_rate_per_s)
        self.stats: Counter[str] = Counter()
        self._broker_ok = False
        self._stop = asyncio.Event()

    @property
    def broker_ok(self) -> bool:
        return self._broker_ok

    async def produce(self, checked: list[Checked]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PRODUCE_TIMEOUT_S
        try:
            async with asyncio.timeout(PRODUCE_TIMEOUT_S):
                sent = await self.feeds.send([c.record for c in checked])
        except (TimeoutError, KafkaError) as exc:
            raise BrokerUnavailable(f"could not queue the events: {type(exc).__name__}") from None
        # asyncio.wait, not gather: a timeout must not cancel futures the producer still resolves
        done, pending = await asyncio.wait(sent, timeout=max(0.0, deadline - loop.time()))
        if pending:
            self._broker_ok = False  # fail fast until the probe sees the broker again
            raise BrokerUnavailable(f"no acknowledgement within {PRODUCE_TIMEOUT_S:.0f} s")
        failed = [f.exception() for f in done if f.exception() is not None]
        if failed:
            raise BrokerUnavailable(f"{len(failed)} record batches refused: {type(failed[0]).__name__}: {failed[0]}")

    async def dead_letter(self, raw: bytes, reason: str, origin: str) -> None:
        """A delivery that could not be mapped, as received, with the reason in its headers."""
        try:
            await asyncio.wait_for(self.producer.send_and_wait(
                self.settings.topics.dlq, raw, headers=dead_letter_headers(reason, origin, None, None, "mapping")),
                PRODUCE_TIMEOUT_S)
        except (TimeoutError, KafkaError) as exc:
            raise BrokerUnavailable(f"could not dead-letter the delivery: {type(exc).__name__}") from None

    async def _probe(self) -> None:
        """Keep `broker_ok` current: a metadata request through the producer's own client."""
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self.producer.client.fetch_all_metadata(), PROBE_TIMEOUT_S)
                ok = True
            except (TimeoutError, KafkaError, OSError):
                ok = False
            if ok != self._broker_ok:
                log.log(logging.INFO if ok else logging.WARNING, "broker %s at %s",
                        "reachable" if ok else "UNREACHABLE", self.settings.bootstrap_servers)
            self._broker_ok = ok
            self._beat()
            try:
                await asyncio.wait_for(self._stop.wait(), PROBE_EVERY_S)
            except TimeoutError:
                pass

    def _beat(self) -> None:
        s = self.settings
        write_heartbeat(s, "collector", {"url": f"http://{s.host}:{s.collector_port}/v1/touchpoints",
                                         "broker_ok": self._broker_ok, "anonymous": self.access.anonymous,
                                         "sources": sorted(self.access.keys), "stats": dict(self.stats)})

    async def _start_producer(self) -> bool:
        """Start the producer, retrying while the broker is down; False if asked to stop first."""
        s = self.settings
        while not self._stop.is_set():
            self.producer = AIOKafkaProducer(**client_args(s, producer=True), acks="all", linger_ms=5,
                                             max_batch_size=MAX_BATCH_BYTES,
                                             request_timeout_ms=int(PRODUCE_TIMEOUT_S * 1000))
            try:
                await self.producer.start()
                self.feeds = PartitionFeeds(self.producer, s.topics.touchpoints)
                return True
            except KafkaError as exc:
                log.warning("broker not reachable at %s (%s); retrying", s.bootstrap_servers, exc)
                await self.producer.stop()
                await asyncio.sleep(START_RETRY_S)
        return False

    async def run(self) -> None:
        s = self.settings
        if not await self._start_producer():
            return
        self._broker_ok = True
        app = create_collector_app(s, self, self.access, self.limiter, self.stats)
        runner = web.AppRunner(app, access_log=None)  # keys may travel in `?key=`: no access log
        await runner.setup()
        await web.TCPSite(runner, s.host, s.collector_port).start()
        log.info("collecting on http://%s:%d/v1/touchpoints -> %s (%s)", s.host, s.collector_port,
                 s.topics.touchpoints, "anonymous, loopback only" if self.access.anonymous
                 else f"sources: {', '.join(sorted(self.access.keys))}")
        try:
            await self._probe()
        finally:
            await runner.cleanup()  # stops taking requests, lets the ones in flight finish
            await self.producer.stop()

    def stop(self) -> None:
        self._stop.set()


def main() -> None:
    """Run the collector until SIGTERM; a bad configuration is one line and exit 1."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    escape_log_lines()  # one line per record, whatever an id holds
    # aiokafka logs every failed reconnect while the broker is down; the probe logs the change once
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        settings = Settings.from_env()
        collector = Collector(settings)
    except ConfigError as exc:
        print(f"collector: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    loop = asyncio.new_event_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, collector.stop)
    loop.run_until_complete(collector.run())
