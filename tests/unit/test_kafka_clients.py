"""The Kafka client configuration built for each security protocol, as each library takes it.

The embedded broker (Tansu 0.6) cannot authenticate clients nor serve TLS (see README, "Managed
Kafka"), so these settings are checked by the libraries' own constructors and Faust's own
translation to aiokafka, without a connection.
"""

from __future__ import annotations

import asyncio
from typing import Any

import certifi
import faust
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Producer
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from infra.base.config import ConfigError, Settings
from infra.base.kafka_clients import client_args, faust_broker, librdkafka

CA = certifi.where()  # any real PEM bundle will do as a CA file
CASES = {
    "plaintext": {},
    "ssl": {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": CA},
    "sasl-plain": {"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "PLAIN"},
    "scram-256": {"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256"},
    "scram-512-ssl": {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "scram-sha-512",
                      "KAFKA_SSL_CAFILE": CA},
}


def settings_for(case: str, **extra: str) -> Settings:
    env = {"KAFKA_BOOTSTRAP_SERVERS": "broker-1:9093,broker-2:9093", **CASES[case], **extra}
    if "SASL" in env.get("KAFKA_SECURITY_PROTOCOL", ""):
        env |= {"KAFKA_SASL_USERNAME": "tracker", "KAFKA_SASL_PASSWORD": "s3cret"}
    return Settings.from_env(env)


@pytest.mark.parametrize("case", list(CASES))
def test_every_library_gets_the_same_connection(case: str) -> None:
    settings = settings_for(case, KAFKA_COMPRESSION_TYPE="zstd")
    conn = settings.kafka
    args = client_args(settings, producer=True)
    assert args["security_protocol"] == conn.security_protocol
    assert (args.get("sasl_plain_password") == "s3cret") == conn.uses_sasl
    assert ("ssl_context" in args) == conn.uses_tls and args["compression_type"] == "zstd"
    if conn.uses_sasl:
        assert args["sasl_mechanism"] == conn.sasl_mechanism and conn.sasl_mechanism.isupper()

    async def construct() -> None:  # aiokafka validates protocol/mechanism/context at construction
        AIOKafkaProducer(**args)
        AIOKafkaConsumer(**client_args(settings))

    asyncio.run(construct())
    app = faust.App("t", **faust_broker(settings))
    faust_auth = credentials_to_aiokafka_auth(app.conf.broker_credentials)
    assert faust_auth["security_protocol"] == conn.security_protocol
    assert faust_auth.get("sasl_mechanism") == (conn.sasl_mechanism if conn.uses_sasl else None)
    assert faust_auth.get("sasl_plain_password") == (conn.sasl_password if conn.uses_sasl else None)
    assert [str(u) for u in app.conf.broker] == ["kafka://broker-1:9093", "kafka://broker-2:9093"]
    assert app.conf.producer_compression_type == "zstd"
    props = librdkafka(settings)
    assert props["security.protocol"] == conn.security_protocol.lower()
    Producer({**props, "compression.type": "zstd"})  # librdkafka checks its properties here


def test_producers_write_uncompressed_by_default() -> None:
    assert client_args(settings_for("plaintext"), producer=True)["compression_type"] is None


@pytest.mark.parametrize("env, phrase", [
    ({"KAFKA_SECURITY_PROTOCOL": "SASL"}, "KAFKA_SECURITY_PROTOCOL"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "KAFKA_SASL_USERNAME"),
    ({"KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM"),
    ({"KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "no such file"),
    ({"KAFKA_SSL_CERTFILE": CA}, "go together"),
    ({"KAFKA_COMPRESSION_TYPE": "brotli"}, "KAFKA_COMPRESSION_TYPE"),
    ({"SCHEMA_REGISTRY_URL": "file:///etc/passwd"}, "SCHEMA_REGISTRY_URL"),
])
def test_bad_settings_are_refused_with_the_variable_named(env: dict[str, str], phrase: str) -> None:
    with pytest.raises(ConfigError, match=phrase):
        Settings.from_env(env)


def test_the_password_never_shows_in_a_repr() -> None:
    settings: Any = settings_for("scram-256")
    assert "s3cret" not in repr(settings) and "s3cret" not in repr(settings.kafka)
    assert settings.to_env()["KAFKA_SASL_PASSWORD"] == "s3cret"  # children get it; it is theirs
