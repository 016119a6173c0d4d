"""All configuration in one place: environment variables with documented defaults.

Every knob of the tracker is read here and nowhere else. `Settings.from_env()` reads the
process environment once; code receives a `Settings` object instead of reading `os.environ`.

| variable | default | meaning |
|---|---|---|
| JOURNEY_HOME | .journey | state directory: pids, logs, chDB data, RocksDB |
| JOURNEY_HOST | 127.0.0.1 | address every local server binds to (loopback by default) |
| JOURNEY_KAFKA_PORT | 9092 | port of the embedded Tansu broker |
| JOURNEY_CLICKHOUSE_PORT | 8123 | port of the embedded ClickHouse HTTP endpoint |
| KAFKA_BOOTSTRAP_SERVERS | (unset) | use this Kafka cluster; no local broker is started |
| CLICKHOUSE_URL | (unset) | use this ClickHouse (http://host:port); no local endpoint is started |
| CLICKHOUSE_USER | default | user for the ClickHouse endpoint |
| CLICKHOUSE_PASSWORD | (empty) | password; when set the local endpoint requires it |
| CLICKHOUSE_READONLY_USER | (unset) | optional read-only user for BI tools (local endpoint) |
| CLICKHOUSE_READONLY_PASSWORD | (empty) | its password |
| JOURNEY_TOPIC_TOUCHPOINTS | touchpoints | topic of all touchpoint events |
| JOURNEY_TOPIC_DLQ | touchpoints.dlq | dead letters (with reason and original bytes) |
| JOURNEY_TOPIC_INCIDENTS | incidents | every incident state change |
| JOURNEY_TOPIC_ALERTS | alerts | every notification |
| JOURNEY_TOPIC_SILENCES | alerts.silences | alert silences as events (created, expired), so they survive restarts |
| JOURNEY_PARTITIONS | 4 | partitions of the topics the tracker creates |
| JOURNEY_TOPIC_CUSTOMERS | customers | customer profiles (customers stage -> ClickHouse `customers`) |
| JOURNEY_TOPIC_BY_JOURNEY | (app id).touchpoints.by-journey | internal: touchpoints by journey (our partitioner) |
| JOURNEY_TOPIC_BY_CUSTOMER | (app id).incidents.by-customer | internal: incident changes, journey starts by customer |
| JOURNEY_INTERNAL_PARTITIONS | 4 | partitions of the internal topics and tables (ours, whatever the source topic has) |
| JOURNEY_SESSION_TIMEOUT_MS | 6000 | consumer-group session timeout (short: Tansu joins wait ~one timeout) |
| JOURNEY_RULES_FILE | (built-in infra/rules.toml) | failure-rule configuration |
| JOURNEY_STORES_FILE | (built-in infra/stores.toml) | stores and their time zones (report's local hours) |
| JOURNEY_STARTUP_TIMEOUT_S | 30 | how long `journey up` waits for each component to be ready |
| JOURNEY_FAUST_STORE | rocksdb:// | Faust table store (`memory://` keeps state only in the changelog) |
| JOURNEY_RETENTION_DAYS | (unset: keep) | ClickHouse TTL for touchpoints, incidents and alerts |
| JOURNEY_APP_ID | journey-tracker | Faust app id: consumer group and changelog topic prefix |
| JOURNEY_WORKERS | 1 | Faust worker processes `journey up` starts (one per core is the most useful) |
| JOURNEY_EMIT_PROCESSES | auto | `journey emit` producers for a file (auto: one per core beyond the first, max 4) |
| JOURNEY_SINK_PROCESSES | 1 | ClickHouse sink processes in one group (a join is a rebalance pause on Tansu) |
| JOURNEY_SINK_BATCH_ROWS | 50000 | most rows in one sink insert (a batch also closes after 0.5 s) |
| JOURNEY_WEB_PORT | 8088 | the live on-call page (served by the notifier) |
| JOURNEY_ONCALL_TOKEN | (generated) | on-call page token; unset: a random one kept in `$JOURNEY_HOME/oncall.token` |
| JOURNEY_WEBHOOKS | (unset) | alert webhooks, `name=url[,name=url...]` (Slack-compatible JSON); secret: never logged |
| JOURNEY_COLLECTOR_PORT | 8090 | the HTTP collector (`POST /v1/touchpoints`) |
| JOURNEY_COLLECTOR_KEYS | (unset) | collector API keys per source, `source=key[,source=key...]`; secret: never logged |
| JOURNEY_COLLECTOR_ORIGINS | (unset) | web-shop origins allowed by the collector's CORS, comma-separated |
| JOURNEY_COLLECTOR_MAX_BODY_BYTES | 1048576 | largest request body the collector reads (413 above) |
| JOURNEY_COLLECTOR_MAX_BATCH | 500 | most events in one request (413 above) |
| JOURNEY_COLLECTOR_RATE_PER_S | 200 | events/s per API key (429 with Retry-After above; bursts of 2 s allowed) |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path


class ConfigError(ValueError):
    """A configuration value is invalid; the message says which variable and how to fix it."""


def _pairs(env: Mapping[str, str], name: str) -> dict[str, str]:
    """`name=value[,name=value...]` -> dict (webhooks, API keys)."""
    out: dict[str, str] = {}
    for item in (env.get(name) or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            # the value may be a secret: name the entry's position, never echo it
            raise ConfigError(f"{name}: entry {len(out) + 1} is not `name=value`; use name=value[,name=value...]")
        out[key.strip()] = value.strip()
    return out


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer; set it to a number or unset it") from None


def _spare_cores() -> int:
    """Producers worth running beside the rest of the stack: one per core beyond the first, max 4.

    Measured on 2 cores shared with the broker: a second emit process cost ~40% more CPU per
    line and was no faster, so a 2-core machine gets one.
    """
    return max(1, min(4, (os.cpu_count() or 1) - 1))


@dataclass(frozen=True)
class Topics:
    """Kafka topic names."""

    touchpoints: str = "touchpoints"
    dlq: str = "touchpoints.dlq"
    incidents: str = "incidents"
    alerts: str = "alerts"
    silences: str = "alerts.silences"
    customers: str = "customers"

    def all(self) -> list[str]:
        return [self.touchpoints, self.dlq, self.incidents, self.alerts, self.silences, self.customers]


@dataclass(frozen=True)
class Settings:
    """The tracker's configuration (see the module docstring for the variables)."""

    home: Path = Path(".journey")
    host: str = "127.0.0.1"
    kafka_port: int = 9092
    clickhouse_port: int = 8123
    external_kafka: str | None = None
    external_clickhouse: str | None = None
    clickhouse_user: str = "default"
    clickhouse_password: str = field(default="", repr=False)
    clickhouse_readonly_user: str | None = None
    clickhouse_readonly_password: str = field(default="", repr=False)
    topics: Topics = field(default_factory=Topics)
    partitions: int = 4
    session_timeout_ms: int = 6000
    rules_file: Path | None = None
    stores_file: Path | None = None
    startup_timeout_s: int = 30
    faust_store: str = "rocksdb://"
    app_id: str = "journey-tracker"
    retention_days: int | None = None
    workers: int = 1
    emit_processes: int = 1
    sink_processes: int = 1
    sink_batch_rows: int = 50_000
    web_port: int = 8088
    oncall_token: str = field(default="", repr=False)
    webhooks: dict[str, str] = field(default_factory=dict, repr=False)
    collector_port: int = 8090
    collector_keys: dict[str, str] = field(default_factory=dict, repr=False)
    collector_origins: tuple[str, ...] = ()
    collector_max_body_bytes: int = 1_048_576
    collector_max_batch: int = 500
    collector_rate_per_s: int = 200
    internal_partitions: int = 4
    by_journey_topic: str = ""  # empty: derived from the app id (`topic_by_journey`)
    by_customer_topic: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read settings from `env` (default: the process environment)."""
        env = os.environ if env is None else env
        topics = Topics(
            touchpoints=env.get("JOURNEY_TOPIC_TOUCHPOINTS", Topics.touchpoints),
            dlq=env.get("JOURNEY_TOPIC_DLQ", Topics.dlq),
            incidents=env.get("JOURNEY_TOPIC_INCIDENTS", Topics.incidents),
            alerts=env.get("JOURNEY_TOPIC_ALERTS", Topics.alerts),
            silences=env.get("JOURNEY_TOPIC_SILENCES", Topics.silences),
            customers=env.get("JOURNEY_TOPIC_CUSTOMERS", Topics.customers),
        )
        rules = env.get("JOURNEY_RULES_FILE")
        return cls(
            home=Path(env.get("JOURNEY_HOME", ".journey")),
            host=env.get("JOURNEY_HOST", "127.0.0.1"),
            kafka_port=_int(env, "JOURNEY_KAFKA_PORT", 9092),
            clickhouse_port=_int(env, "JOURNEY_CLICKHOUSE_PORT", 8123),
            external_kafka=env.get("KAFKA_BOOTSTRAP_SERVERS") or None,
            external_clickhouse=env.get("CLICKHOUSE_URL") or None,
            clickhouse_user=env.get("CLICKHOUSE_USER", "default") or "default",
            clickhouse_password=env.get("CLICKHOUSE_PASSWORD", ""),
            clickhouse_readonly_user=env.get("CLICKHOUSE_READONLY_USER") or None,
            clickhouse_readonly_password=env.get("CLICKHOUSE_READONLY_PASSWORD", ""),
            topics=topics,
            partitions=_int(env, "JOURNEY_PARTITIONS", 4),
            session_timeout_ms=_int(env, "JOURNEY_SESSION_TIMEOUT_MS", 6000),
            rules_file=Path(rules) if rules else None,
            stores_file=Path(env["JOURNEY_STORES_FILE"]) if env.get("JOURNEY_STORES_FILE") else None,
            startup_timeout_s=_int(env, "JOURNEY_STARTUP_TIMEOUT_S", 30),
            faust_store=env.get("JOURNEY_FAUST_STORE", "rocksdb://") or "rocksdb://",
            workers=_int(env, "JOURNEY_WORKERS", 1),
            emit_processes=_int(env, "JOURNEY_EMIT_PROCESSES", 0) or _spare_cores(),
            sink_processes=max(1, _int(env, "JOURNEY_SINK_PROCESSES", 1)),
            sink_batch_rows=max(1, _int(env, "JOURNEY_SINK_BATCH_ROWS", 50_000)),
            app_id=env.get("JOURNEY_APP_ID", "journey-tracker") or "journey-tracker",
            retention_days=_int(env, "JOURNEY_RETENTION_DAYS", 0) or None,
            web_port=_int(env, "JOURNEY_WEB_PORT", 8088),
            oncall_token=env.get("JOURNEY_ONCALL_TOKEN", ""),
            webhooks=_pairs(env, "JOURNEY_WEBHOOKS"),
            collector_port=_int(env, "JOURNEY_COLLECTOR_PORT", 8090),
            collector_keys=_pairs(env, "JOURNEY_COLLECTOR_KEYS"),
            collector_origins=tuple(o.strip() for o in env.get("JOURNEY_COLLECTOR_ORIGINS", "").split(",")
                                    if o.strip()),
            collector_max_body_bytes=_int(env, "JOURNEY_COLLECTOR_MAX_BODY_BYTES", 1_048_576),
            collector_max_batch=_int(env, "JOURNEY_COLLECTOR_MAX_BATCH", 500),
            collector_rate_per_s=_int(env, "JOURNEY_COLLECTOR_RATE_PER_S", 200),
            internal_partitions=max(1, _int(env, "JOURNEY_INTERNAL_PARTITIONS", 4)),
            by_journey_topic=env.get("JOURNEY_TOPIC_BY_JOURNEY", ""),
            by_customer_topic=env.get("JOURNEY_TOPIC_BY_CUSTOMER", ""),
        )

    def to_env(self) -> dict[str, str]:
        """These settings as environment variables, for child processes (tests, `journey up`)."""
        env = {
            "JOURNEY_HOME": str(self.home.resolve()), "JOURNEY_HOST": self.host,
            "JOURNEY_KAFKA_PORT": str(self.kafka_port), "JOURNEY_CLICKHOUSE_PORT": str(self.clickhouse_port),
            "CLICKHOUSE_USER": self.clickhouse_user, "CLICKHOUSE_PASSWORD": self.clickhouse_password,
            "JOURNEY_TOPIC_TOUCHPOINTS": self.topics.touchpoints, "JOURNEY_TOPIC_DLQ": self.topics.dlq,
            "JOURNEY_TOPIC_INCIDENTS": self.topics.incidents, "JOURNEY_TOPIC_ALERTS": self.topics.alerts,
            "JOURNEY_PARTITIONS": str(self.partitions), "JOURNEY_SESSION_TIMEOUT_MS": str(self.session_timeout_ms),
            "JOURNEY_STARTUP_TIMEOUT_S": str(self.startup_timeout_s), "JOURNEY_FAUST_STORE": self.faust_store,
            "JOURNEY_APP_ID": self.app_id, "JOURNEY_WORKERS": str(self.workers),
            "JOURNEY_EMIT_PROCESSES": str(self.emit_processes),
            "JOURNEY_SINK_PROCESSES": str(self.sink_processes), "JOURNEY_SINK_BATCH_ROWS": str(self.sink_batch_rows),
            "JOURNEY_TOPIC_SILENCES": self.topics.silences, "JOURNEY_WEB_PORT": str(self.web_port),
            "JOURNEY_ONCALL_TOKEN": self.oncall_token,
            "JOURNEY_WEBHOOKS": ",".join(f"{k}={v}" for k, v in self.webhooks.items()),
            "JOURNEY_COLLECTOR_PORT": str(self.collector_port),
            "JOURNEY_COLLECTOR_KEYS": ",".join(f"{k}={v}" for k, v in self.collector_keys.items()),
            "JOURNEY_COLLECTOR_ORIGINS": ",".join(self.collector_origins),
            "JOURNEY_COLLECTOR_MAX_BODY_BYTES": str(self.collector_max_body_bytes),
            "JOURNEY_COLLECTOR_MAX_BATCH": str(self.collector_max_batch),
            "JOURNEY_COLLECTOR_RATE_PER_S": str(self.collector_rate_per_s),
            "JOURNEY_TOPIC_CUSTOMERS": self.topics.customers,
            "JOURNEY_INTERNAL_PARTITIONS": str(self.internal_partitions),
            "JOURNEY_TOPIC_BY_JOURNEY": self.by_journey_topic, "JOURNEY_TOPIC_BY_CUSTOMER": self.by_customer_topic,
        }
        if self.external_kafka:
            env["KAFKA_BOOTSTRAP_SERVERS"] = self.external_kafka
        if self.external_clickhouse:
            env["CLICKHOUSE_URL"] = self.external_clickhouse
        if self.retention_days:
            env["JOURNEY_RETENTION_DAYS"] = str(self.retention_days)
        if self.rules_file:
            env["JOURNEY_RULES_FILE"] = str(self.rules_file)
        if self.stores_file:
            env["JOURNEY_STORES_FILE"] = str(self.stores_file)
        return env

    def with_(self, **changes: object) -> Settings:
        """A copy with some fields changed (used by tests and `journey bench`)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def bootstrap_servers(self) -> str:
        """Kafka bootstrap servers: the external cluster, or the local broker."""
        return self.external_kafka or f"{self.host}:{self.kafka_port}"

    @property
    def clickhouse_url(self) -> str:
        """ClickHouse HTTP URL: the external server, or the local endpoint."""
        return (self.external_clickhouse or f"http://{self.host}:{self.clickhouse_port}").rstrip("/")

    @property
    def topic_by_journey(self) -> str:
        """Internal topic: valid touchpoints keyed by journey (intake -> journeys stage)."""
        return self.by_journey_topic or f"{self.app_id}.touchpoints.by-journey"

    @property
    def topic_by_customer(self) -> str:
        """Internal topic: incident changes and journey starts keyed by customer (journeys -> customers)."""
        return self.by_customer_topic or f"{self.app_id}.incidents.by-customer"

    @property
    def runs_local_broker(self) -> bool:
        return self.external_kafka is None

    @property
    def runs_local_clickhouse(self) -> bool:
        return self.external_clickhouse is None
