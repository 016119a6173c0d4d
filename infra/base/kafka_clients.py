"""Every Kafka client's connection settings, built in one place from `Settings.kafka`.

kafka-python (producers, admin, CLI readers), aiokafka (sink, notifier, collector) and Faust (the
worker, on aiokafka); managed clusters (Confluent Cloud, MSK, Aiven, Redpanda Cloud) need SASL_SSL
on all of them alike. Call sites pass `**client_args(s)` (kafka-python and aiokafka use the same
names) or `**faust_broker(s)` and add only what is their own (group, timeouts).
Producers also get the configured codec (KAFKA_COMPRESSION_TYPE); every codec is read regardless.
"""

from __future__ import annotations

import ssl
from functools import cache
from typing import Any

from infra.base import quarantine
from infra.base.config import KafkaConnection, Settings


@cache
def _ssl_context(cafile: str | None, certfile: str | None, keyfile: str | None, check_hostname: bool) -> ssl.SSLContext:
    # One context per process and configuration: loading the CA file per client is slow.
    context = ssl.create_default_context(cafile=cafile)
    if certfile:
        context.load_cert_chain(certfile, keyfile)
    context.check_hostname = check_hostname
    return context


def ssl_context(conn: KafkaConnection) -> ssl.SSLContext | None:
    """The TLS context of the configured connection (None without TLS)."""
    if not conn.uses_tls:
        return None
    return _ssl_context(conn.ssl_cafile, conn.ssl_certfile, conn.ssl_keyfile, conn.ssl_check_hostname)


def _codec(conn: KafkaConnection) -> str | None:
    return None if conn.compression == "none" else conn.compression


def client_args(settings: Settings, producer: bool = False) -> dict[str, Any]:
    """Keyword arguments of a kafka-python or aiokafka client (both libraries use these names).

    Building a client also arms the quarantine (infra/base/quarantine.py): its consumers step over a
    record batch they cannot read instead of failing on it for ever.
    """
    quarantine.install()
    conn = settings.kafka
    args: dict[str, Any] = {"bootstrap_servers": settings.bootstrap_servers,
                            "security_protocol": conn.security_protocol}
    if conn.uses_sasl:
        args.update(sasl_mechanism=conn.sasl_mechanism, sasl_plain_username=conn.sasl_username,
                    sasl_plain_password=conn.sasl_password)
    if conn.uses_tls:
        args["ssl_context"] = ssl_context(conn)
    if producer:
        args["compression_type"] = _codec(conn)
    return args


def faust_broker(settings: Settings) -> dict[str, Any]:
    """faust.App keyword arguments: the broker URL, its credentials, the producer's codec."""
    import faust  # only the worker pays for importing Faust

    quarantine.install()
    conn = settings.kafka
    credentials: Any = None
    if conn.uses_sasl:
        credentials = faust.SASLCredentials(username=conn.sasl_username, password=conn.sasl_password,
                                            mechanism=conn.sasl_mechanism, ssl_context=ssl_context(conn))
    elif conn.uses_tls:
        credentials = faust.SSLCredentials(ssl_context(conn))
    args: dict[str, Any] = {"broker": [f"kafka://{b.strip()}" for b in settings.bootstrap_servers.split(",")],
                            "producer_compression_type": _codec(conn)}
    if credentials is not None:
        args["broker_credentials"] = credentials
    return args


def librdkafka(settings: Settings) -> dict[str, str]:
    """The same connection as librdkafka properties (confluent-kafka, kcat -X, Vector, Fluent Bit)."""
    conn = settings.kafka
    props = {"bootstrap.servers": settings.bootstrap_servers, "security.protocol": conn.security_protocol.lower()}
    if conn.uses_sasl:
        props.update({"sasl.mechanism": conn.sasl_mechanism, "sasl.username": conn.sasl_username or "",
                      "sasl.password": conn.sasl_password})
    if conn.uses_tls and conn.ssl_cafile:
        props["ssl.ca.location"] = conn.ssl_cafile
    if conn.uses_tls and conn.ssl_certfile:
        props.update({"ssl.certificate.location": conn.ssl_certfile, "ssl.key.location": conn.ssl_keyfile or ""})
    if conn.uses_tls and not conn.ssl_check_hostname:
        props["ssl.endpoint.identification.algorithm"] = "none"
    return props
