"""Settings come from env vars with documented defaults; bad values give a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.base.config import ConfigError, Settings


def test_defaults_bind_loopback_and_use_local_servers() -> None:
    s = Settings.from_env({})
    assert s.home == Path(".journey")
    assert s.host == "127.0.0.1"
    assert s.bootstrap_servers == "127.0.0.1:9092"
    assert s.clickhouse_url == "http://127.0.0.1:8123"
    assert s.runs_local_broker and s.runs_local_clickhouse
    assert s.topics.all() == ["touchpoints", "touchpoints.dlq", "incidents", "alerts", "alerts.silences",
                              "customers", "touchpoints.late"]


def test_external_servers_replace_the_local_ones() -> None:
    s = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092", "CLICKHOUSE_URL": "http://ch:8123/"})
    assert s.bootstrap_servers == "k1:9092,k2:9092"
    assert s.clickhouse_url == "http://ch:8123"
    assert not s.runs_local_broker and not s.runs_local_clickhouse


def test_ports_and_topics_are_configurable() -> None:
    s = Settings.from_env({"JOURNEY_KAFKA_PORT": "19092", "JOURNEY_TOPIC_TOUCHPOINTS": "tp"})
    assert s.bootstrap_servers == "127.0.0.1:19092"
    assert s.topics.touchpoints == "tp"


def test_bad_integer_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="JOURNEY_KAFKA_PORT='abc' is not an integer"):
        Settings.from_env({"JOURNEY_KAFKA_PORT": "abc"})


def test_password_is_not_in_repr() -> None:
    s = Settings.from_env({"CLICKHOUSE_PASSWORD": "hunter2"})
    assert "hunter2" not in repr(s)


def test_webhooks_and_keys_parse_and_bad_entries_never_echo_the_secret() -> None:
    s = Settings.from_env({"JOURNEY_WEBHOOKS": "oncall=http://h/a?t=1, managers=http://h/b",
                           "JOURNEY_COLLECTOR_KEYS": "web-shop=k1"})
    assert s.webhooks == {"oncall": "http://h/a?t=1", "managers": "http://h/b"}
    assert s.collector_keys == {"web-shop": "k1"}
    assert "http://h/a" not in repr(s)
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"JOURNEY_WEBHOOKS": "oncall=http://h/a,https://secret-hook"})
    assert "secret-hook" not in str(err.value) and "entry 2" in str(err.value)
    assert Settings.from_env(s.to_env()).webhooks == s.webhooks
