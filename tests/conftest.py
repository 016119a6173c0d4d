"""Shared fixtures: the real local stack (Tansu broker + chDB ClickHouse endpoint) on free ports.

Integration tests ask for `stack_settings`; the stack starts once per test session under a
temporary JOURNEY_HOME and is stopped at the end, leaving no process behind. With
KAFKA_BOOTSTRAP_SERVERS / CLICKHOUSE_URL set, the external servers are used instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from infra.base.config import Settings
from infra.base.kafka import ensure_topics
from infra.local import processes, stack
from tests.topic_names import suffixed


@pytest.fixture(scope="session")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings of a running local stack (broker + ClickHouse endpoint) for this test session."""
    home = tmp_path_factory.mktemp("journey-home")
    settings = Settings.from_env().with_(
        home=home,
        kafka_port=processes.free_port(),
        clickhouse_port=processes.free_port(),
        schema_registry_port=processes.free_port(),
        # services a test starts from these settings (notifier, collector) never take a default
        # port that a stack of the user's (or a demo) may hold
        web_port=processes.free_port(),
        collector_port=processes.free_port(),
        startup_timeout_s=60,
    )
    stack.start(settings, stack.plan(settings, with_services=False), echo=lambda _line: None)
    # The endpoint generated its password under this home: pin it, so that tests which move `home`
    # (and the processes they start, through to_env) still log in.
    settings = settings.with_(clickhouse_password_set=settings.clickhouse_password)
    try:
        yield settings
    finally:
        stack.stop(settings)


@pytest.fixture
def unique_topics(stack_settings: Settings) -> Settings:
    """Settings whose topic names are unique to this test (created, 4 partitions each)."""
    suffix = uuid.uuid4().hex[:8]
    settings = stack_settings.with_(topics=suffixed(stack_settings.topics, suffix))
    ensure_topics(settings, settings.topics.all())
    return settings
