"""The tracker's own services that `journey up` starts after the servers: workers, sink, notifier, collector."""

from __future__ import annotations

import sys

from infra.base.config import KAFKA_SECRETS, Settings
from infra.base.heartbeat import service_ready
from infra.local.stack import SERVICE_FACTORIES, Component


def worker_components(settings: Settings) -> list[Component]:
    """One Faust worker process per JOURNEY_WORKERS (default 1)."""
    return [
        Component(
            name=f"worker-{worker_id}",
            address=f"faust worker {worker_id} (group {settings.app_id})",
            ready=lambda name=f"worker-{worker_id}": service_ready(settings, name),
            argv=[sys.executable, "-m", "streams.worker"],
            env={"JOURNEY_WORKER_ID": str(worker_id)},
            secrets=KAFKA_SECRETS,
        )
        for worker_id in range(settings.workers)
    ]


def sink_components(settings: Settings) -> list[Component]:
    """The ClickHouse sink."""
    return [Component(
        name="sink",
        address=f"kafka -> {settings.clickhouse_url} (group {settings.app_id}-sink)",
        ready=lambda: service_ready(settings, "sink"),
        argv=[sys.executable, "-m", "consumers.sink"],
        secrets=("CLICKHOUSE_PASSWORD", *KAFKA_SECRETS),
    )]


def notifier_components(settings: Settings) -> list[Component]:
    """The alert notifier (also serves the on-call page)."""
    return [Component(
        name="notifier",
        address=f"http://{settings.host}:{settings.web_port}/ (on-call page, /dashboard for managers; "
                "token: JOURNEY_ONCALL_TOKEN or $JOURNEY_HOME/oncall.token)",
        ready=lambda: service_ready(settings, "notifier"),
        argv=[sys.executable, "-m", "consumers.notifier"],
        port=settings.web_port,
        # the dashboard reads ClickHouse (the read-only user when there is one)
        secrets=("JOURNEY_ONCALL_TOKEN", "JOURNEY_MANAGER_TOKEN", "JOURNEY_WEBHOOKS", "CLICKHOUSE_PASSWORD",
                 "CLICKHOUSE_READONLY_PASSWORD", *KAFKA_SECRETS),
    )]


def collector_components(settings: Settings) -> list[Component]:
    """The HTTP collector (POST /v1/touchpoints, the browser snippet)."""
    sources = ", ".join(sorted(settings.collector_keys))
    return [Component(
        name="collector",
        address=f"http://{settings.host}:{settings.collector_port}/v1/touchpoints "
                f"({'sources: ' + sources if sources else 'no keys: anonymous, loopback only'})",
        ready=lambda: service_ready(settings, "collector"),
        argv=[sys.executable, "-m", "streams.collector"],
        port=settings.collector_port,
        secrets=("JOURNEY_COLLECTOR_KEYS", "JOURNEY_SHOPIFY_WEBHOOK_SECRET", "JOURNEY_SQUARE_SIGNATURE_KEY",
                 "JOURNEY_WOOCOMMERCE_WEBHOOK_SECRET", *KAFKA_SECRETS),
    )]


def register() -> None:
    """Add the services to what `journey up` starts (idempotent)."""
    for factory in (worker_components, sink_components, notifier_components, collector_components):
        if factory not in SERVICE_FACTORIES:
            SERVICE_FACTORIES.append(factory)
