"""Kafka over TLS for real: kafka-python, aiokafka and a Faust worker built by infra/base/kafka_clients.py.

Tansu 0.6 serves no TLS itself (README, "Any producer, any Kafka"), so a TLS-terminating proxy with
a freshly made certificate stands in front of a broker of this test's own, which advertises the
proxy's address: every connection the clients make, bootstrap and partition leaders alike, is TLS,
verified against the certificate as KAFKA_SSL_CAFILE (hostname checked: the certificate names
127.0.0.1).
"""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from infra.base.config import KafkaConnection, Settings
from infra.base.kafka import broker_reachable, ensure_topics
from infra.base.kafka_clients import client_args
from infra.local import processes
from infra.local.stack import tansu_binary
from streams.emitter import TouchpointEmitter
from tests.integration.test_detection import event, incidents_until, start_worker, stop_worker

pytestmark = pytest.mark.integration


def make_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "broker.pem", directory / "broker.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


class TlsProxy:
    """TLS on `port`, plaintext to the broker on `upstream`, in a thread of its own."""

    def __init__(self, port: int, upstream: int, cert: Path, key: Path) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.port, self.upstream = port, upstream
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, ssl.SSLError):
                pass
            finally:
                writer.close()

        async def serve(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
            broker_r, broker_w = await asyncio.open_connection("127.0.0.1", self.upstream)
            await asyncio.gather(pipe(client_r, broker_w), pipe(broker_r, client_w))

        async def main() -> None:
            self.server = await asyncio.start_server(serve, "127.0.0.1", self.port, ssl=self.context)
            self.ready.set()
            await self.server.serve_forever()

        try:
            self.loop.run_until_complete(main())
        except asyncio.CancelledError:
            pass

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        for task in asyncio.all_tasks(self.loop):
            self.loop.call_soon_threadsafe(task.cancel)
        self.thread.join(timeout=5)


@pytest.fixture
def tls_settings(stack_settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    cert, key = make_certificate(tmp_path)
    broker_port, proxy_port = processes.free_port(), processes.free_port()
    advertised = f"tcp://127.0.0.1:{proxy_port}"
    log = open(tmp_path / "tansu.log", "ab")  # noqa: SIM115 - closed below
    broker = subprocess.Popen([str(tansu_binary()), "broker", "--listener-url", f"tcp://127.0.0.1:{broker_port}",
                               "--advertised-listener-url", advertised, "--storage-engine", "memory://tansu/"],
                              stdout=log, stderr=subprocess.STDOUT)
    proxy = TlsProxy(proxy_port, broker_port, cert, key)
    env = {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{proxy_port}", "KAFKA_SECURITY_PROTOCOL": "SSL",
           "KAFKA_SSL_CAFILE": str(cert), "KAFKA_COMPRESSION_TYPE": "lz4"}
    base = Settings.from_env({**os.environ, **env})
    settings = base.with_(home=tmp_path / "home", app_id=f"jt-tls-{uuid.uuid4().hex[:6]}", host=stack_settings.host,
                          clickhouse_port=stack_settings.clickhouse_port,
                          schema_registry_port=stack_settings.schema_registry_port)
    settings.home.mkdir()
    try:
        assert processes.wait_until(lambda: broker_reachable(settings.bootstrap_servers, 1.0, settings), 30)
        yield settings
    finally:
        proxy.close()
        broker.terminate()
        broker.wait(timeout=10)
        log.close()


def test_every_client_talks_tls_to_the_broker(tls_settings: Settings) -> None:
    settings = tls_settings
    # the same port without TLS answers nothing a Kafka client can use
    assert not broker_reachable(settings.bootstrap_servers, 1.0)
    ensure_topics(settings, settings.topics.all())  # kafka-python admin over TLS
    worker = start_worker(settings)  # Faust (aiokafka) over TLS
    try:
        tag = uuid.uuid4().hex[:6]
        now = int(time.time() * 1000)
        with TouchpointEmitter(settings) as emitter:  # kafka-python producer over TLS, lz4 batches
            emitter.send_many(event("COMPLAINT_FILED", now - 1000, f"{tag}-{i}") for i in range(3))
            emitter.flush()
        wanted = {f"{tag}-{i}" for i in range(3)}
        found = incidents_until(settings, lambda latest: wanted <= {i["journey_id"] for i in latest.values()})
        assert wanted <= {i["journey_id"] for i in found.values()}
    finally:
        stop_worker(worker)

    async def read_back() -> int:  # aiokafka over TLS
        reader = AIOKafkaConsumer(settings.topics.touchpoints, **client_args(settings), auto_offset_reset="earliest")
        await reader.start()
        try:
            got = await reader.getmany(timeout_ms=5000)
            return sum(len(v) for v in got.values())
        finally:
            await reader.stop()

    assert asyncio.run(read_back()) >= 3
    # and the certificate is checked: trusting only the system's CAs, the client refuses this broker
    system_cas = settings.with_(kafka=KafkaConnection(security_protocol="SSL"))
    assert not broker_reachable(system_cas.bootstrap_servers, 2.0, system_cas)
