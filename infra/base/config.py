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
| CLICKHOUSE_PASSWORD | (generated) | password; unset: made by the local endpoint, `$JOURNEY_HOME/clickhouse.password` |
| CLICKHOUSE_READONLY_USER | (unset) | optional read-only user for BI tools (local endpoint) |
| CLICKHOUSE_READONLY_PASSWORD | (generated) | its password; unset: `$JOURNEY_HOME/clickhouse-readonly.password` |
| JOURNEY_CLICKHOUSE_THREADS | 8 | queries the local endpoint runs at once (read-only users: at most 2 of them) |
| JOURNEY_CLICKHOUSE_READONLY_MAX_EXECUTION_S | 60 | `max_execution_time` cap of a read-only user |
| JOURNEY_CLICKHOUSE_READONLY_MAX_MEMORY | 2147483648 | read-only user's `max_memory_usage` cap, bytes |
| JOURNEY_CLICKHOUSE_READONLY_MAX_RESULT_ROWS | 1000000 | a read-only user's `max_result_rows` cap |
| JOURNEY_CLICKHOUSE_READONLY_MAX_CPUS | 0.5 | read-only workload max_cpus (inert without CPU preemption: chDB 26.9) |
| JOURNEY_CLICKHOUSE_MUTATION_WAIT_S | 60 | longest wait for a DELETE's mutation, then UNFINISHED (it goes on) |
| JOURNEY_CLICKHOUSE_CORS_ORIGINS | (unset) | browser origins the local endpoint serves (others: 403), comma-separated |
| JOURNEY_TOPIC_TOUCHPOINTS | touchpoints | topic of all touchpoint events |
| JOURNEY_TOPIC_DLQ | touchpoints.dlq | dead letters (with reason and original bytes) |
| JOURNEY_TOPIC_INCIDENTS | incidents | every incident state change |
| JOURNEY_TOPIC_ALERTS | alerts | every notification |
| JOURNEY_TOPIC_SILENCES | alerts.silences | alert silences as events (created, expired), so they survive restarts |
| JOURNEY_PARTITIONS | 4 | partitions of the topics the tracker creates |
| JOURNEY_TOPIC_CUSTOMERS | customers | customer profiles (customers stage -> ClickHouse `customers`) |
| JOURNEY_TOPIC_LATE | touchpoints.late | events later than the allowed lateness (-> ClickHouse `late_touchpoints`) |
| JOURNEY_TOPIC_BY_JOURNEY | (app id).touchpoints.by-journey | internal: touchpoints by journey (our partitioner) |
| JOURNEY_TOPIC_BY_CUSTOMER | (app id).incidents.by-customer | internal: incident changes, journey starts by customer |
| JOURNEY_INTERNAL_PARTITIONS | 4 | partitions of the internal topics and tables (ours, whatever the source topic has) |
| JOURNEY_SESSION_TIMEOUT_MS | 6000 | consumer-group session timeout (short: Tansu joins wait ~one timeout) |
| JOURNEY_RULES_FILE | (built-in infra/rules.toml) | failure-rule configuration |
| JOURNEY_STORES_FILE | (built-in infra/stores.toml) | stores: time zones, opening hours, holidays |
| JOURNEY_STARTUP_TIMEOUT_S | 30 | how long `journey up` waits for each component to be ready |
| JOURNEY_FAUST_STORE | rocksdb:// | Faust table store (`memory://` keeps state only in the changelog) |
| JOURNEY_RETENTION_DAYS | (unset: keep) | ClickHouse TTL for touchpoints, incidents and alerts |
| JOURNEY_APP_ID | journey-tracker | Faust app id: consumer group and changelog topic prefix |
| JOURNEY_WORKERS | 1 | Faust worker processes `journey up` starts (one per core is the most useful) |
| JOURNEY_EMIT_PROCESSES | auto | `journey emit` producers for a file (auto: one per core beyond the first, max 4) |
| JOURNEY_SINK_PROCESSES | 1 | ClickHouse sink processes in one group (a join is a rebalance pause on Tansu) |
| JOURNEY_SINK_BATCH_ROWS | 50000 | most rows in one sink insert (a batch also closes after 0.5 s) |
| JOURNEY_CLOCK_TOLERANCE_S | 5 | device skew (received - sent) beyond this is corrected; event time <= receive + this |
| JOURNEY_SOURCE_IDLE_S | 60 | caught up, no event this long: follows the topic less lateness (end of data: at once) |
| JOURNEY_WEB_PORT | 8088 | the live on-call page (served by the notifier) |
| JOURNEY_ONCALL_TOKEN | (generated) | on-call page token; unset: a random one kept in `$JOURNEY_HOME/oncall.token` |
| JOURNEY_MANAGER_TOKEN | unset | read-only token of the managers' dashboard (`/dashboard`); the on-call one works too |
| JOURNEY_SLA_GOAL | 0.9 | share of incidents that should meet every SLA target (goal line of report, dashboard) |
| JOURNEY_WEBHOOKS | (unset) | alert webhooks, `name=url[,name=url...]` (Slack-compatible JSON); secret: never logged |
| JOURNEY_COLLECTOR_PORT | 8090 | the HTTP collector (`POST /v1/touchpoints`) |
| JOURNEY_COLLECTOR_KEYS | (unset) | collector API keys per source, `source=key[,source=key...]`; secret: never logged |
| JOURNEY_COLLECTOR_STAFF_SOURCES | (unset) | sources (of the keys) that are staff, e.g. POS: may send recovery events |
| JOURNEY_COLLECTOR_ORIGINS | (unset) | web-shop origins allowed by the collector's CORS, comma-separated |
| JOURNEY_COLLECTOR_MAX_BODY_BYTES | 1048576 | largest request body the collector reads (413 above) |
| JOURNEY_COLLECTOR_MAX_BATCH | 500 | most events in one request (413 above) |
| JOURNEY_COLLECTOR_RATE_PER_S | 200 | events/s per API key (429 with Retry-After above; bursts of 2 s allowed) |
| JOURNEY_SHOPIFY_WEBHOOK_SECRET | (unset: 404) | Shopify app's webhook signing secret; secret: never logged |
| JOURNEY_SQUARE_SIGNATURE_KEY | (unset: 404) | Square webhook subscription's signature key; secret: never logged |
| JOURNEY_SQUARE_NOTIFICATION_URL | (unset) | the notification URL exactly as registered with Square (Square signs it) |
| JOURNEY_WOOCOMMERCE_WEBHOOK_SECRET | (unset: 404) | WooCommerce webhooks' secret; secret: never logged |
| JOURNEY_MAX_PROMISE_DAYS | 365 | longest `promised_within_s` the event contract accepts (every process) |
| JOURNEY_PLATFORM_PROMISE_S | 0 | promise of a platform order that states none (0: the rules' ORDER_PLACED default) |
| KAFKA_SECURITY_PROTOCOL | PLAINTEXT | PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (every Kafka client) |
| KAFKA_SASL_MECHANISM | PLAIN | with SASL_*: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 |
| KAFKA_SASL_USERNAME | (unset) | SASL user (required with SASL_*) |
| KAFKA_SASL_PASSWORD | (unset) | SASL password (required with SASL_*); secret: never logged |
| KAFKA_SSL_CAFILE | (system CAs) | with SSL/SASL_SSL: PEM file of the CAs that sign the brokers' certificates |
| KAFKA_SSL_CERTFILE | (unset) | with SSL/SASL_SSL: client certificate (PEM) for brokers that require one (mTLS) |
| KAFKA_SSL_KEYFILE | (unset) | its private key (PEM) |
| KAFKA_SSL_CHECK_HOSTNAME | true | verify that the broker's certificate names the host we connect to |
| KAFKA_COMPRESSION_TYPE | none | codec of the batches we produce: none, gzip, snappy, lz4 or zstd (all are read) |
| SCHEMA_REGISTRY_URL | (unset) | use this Confluent-compatible schema registry; no local one is started |
| SCHEMA_REGISTRY_BASIC_AUTH | (unset) | `user:password` for that registry (Confluent Cloud: API key:secret); secret |
| JOURNEY_SCHEMA_REGISTRY_PORT | 8081 | port of the local schema registry (Confluent Schema Registry API) |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from schemas.contract import DEFAULT_MAX_PROMISE_DAYS, promise_limit_s

# Variables holding secrets: a process of the stack sees only those its component uses.
SECRET_VARIABLES = ("CLICKHOUSE_PASSWORD", "CLICKHOUSE_READONLY_PASSWORD", "JOURNEY_ONCALL_TOKEN",
                    "JOURNEY_MANAGER_TOKEN", "JOURNEY_WEBHOOKS", "JOURNEY_COLLECTOR_KEYS",
                    "JOURNEY_SHOPIFY_WEBHOOK_SECRET", "JOURNEY_SQUARE_SIGNATURE_KEY",
                    "JOURNEY_WOOCOMMERCE_WEBHOOK_SECRET", "KAFKA_SASL_PASSWORD", "SCHEMA_REGISTRY_BASIC_AUTH")
# What every Kafka client of ours needs when the cluster or the registry asks for credentials.
KAFKA_SECRETS = ("KAFKA_SASL_PASSWORD", "SCHEMA_REGISTRY_BASIC_AUTH")
CLICKHOUSE_PASSWORD_FILE = "clickhouse.password"  # noqa: S105 (a file name)
CLICKHOUSE_READONLY_PASSWORD_FILE = "clickhouse-readonly.password"  # noqa: S105


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


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list (origins, sources)."""
    return tuple(item.strip() for item in env.get(name, "").split(",") if item.strip())


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer; set it to a number or unset it") from None


def max_promise_s(env: Mapping[str, str] | None = None) -> int:
    """JOURNEY_MAX_PROMISE_DAYS in seconds: the longest promise the event contract accepts
    (`schemas.contract.promise_limit_s`, which the contract reads at import)."""
    env = os.environ if env is None else env
    _int(env, "JOURNEY_MAX_PROMISE_DAYS", DEFAULT_MAX_PROMISE_DAYS)  # not a number: that error first
    try:
        return promise_limit_s(env.get("JOURNEY_MAX_PROMISE_DAYS"))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number; set it to one or unset it") from None


def _share(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise ConfigError(f"{name}={raw!r} is not a share between 0 and 1 (0.9 means 90%); fix it or unset it")
    return value
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
COMPRESSION_TYPES = ("none", "gzip", "snappy", "lz4", "zstd")


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = (env.get(name) or default).strip()
    canonical = {a.upper(): a for a in allowed}.get(value.upper())
    if canonical is None:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(allowed)}")
    return canonical


@dataclass(frozen=True)
class KafkaConnection:
    """How every Kafka client reaches the cluster: security protocol, SASL, TLS, and the codec it writes."""

    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    sasl_username: str | None = None
    sasl_password: str = field(default="", repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool = True
    compression: str = "none"

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> KafkaConnection:
        conn = cls(
            security_protocol=_choice(env, "KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", SECURITY_PROTOCOLS),
            sasl_mechanism=_choice(env, "KAFKA_SASL_MECHANISM", "PLAIN", SASL_MECHANISMS),
            sasl_username=env.get("KAFKA_SASL_USERNAME") or None,
            sasl_password=env.get("KAFKA_SASL_PASSWORD", ""),
            ssl_cafile=env.get("KAFKA_SSL_CAFILE") or None,
            ssl_certfile=env.get("KAFKA_SSL_CERTFILE") or None,
            ssl_keyfile=env.get("KAFKA_SSL_KEYFILE") or None,
            ssl_check_hostname=(env.get("KAFKA_SSL_CHECK_HOSTNAME") or "true").strip().lower()
            not in ("0", "false", "no"),
            compression=_choice(env, "KAFKA_COMPRESSION_TYPE", "none", COMPRESSION_TYPES),
        )
        if conn.uses_sasl and not (conn.sasl_username and conn.sasl_password):
            raise ConfigError(f"KAFKA_SECURITY_PROTOCOL={conn.security_protocol} needs KAFKA_SASL_USERNAME and "
                              "KAFKA_SASL_PASSWORD")
        for name, path in (("KAFKA_SSL_CAFILE", conn.ssl_cafile), ("KAFKA_SSL_CERTFILE", conn.ssl_certfile),
                           ("KAFKA_SSL_KEYFILE", conn.ssl_keyfile)):
            if path and not Path(path).is_file():
                raise ConfigError(f"{name}={path!r}: no such file")
        if bool(conn.ssl_certfile) != bool(conn.ssl_keyfile):
            raise ConfigError("KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together: set both or neither")
        return conn

    def to_env(self) -> dict[str, str]:
        env = {"KAFKA_SECURITY_PROTOCOL": self.security_protocol, "KAFKA_SASL_MECHANISM": self.sasl_mechanism,
               "KAFKA_SSL_CHECK_HOSTNAME": "true" if self.ssl_check_hostname else "false",
               "KAFKA_COMPRESSION_TYPE": self.compression}
        for name, value in (("KAFKA_SASL_USERNAME", self.sasl_username), ("KAFKA_SASL_PASSWORD", self.sasl_password),
                            ("KAFKA_SSL_CAFILE", self.ssl_cafile), ("KAFKA_SSL_CERTFILE", self.ssl_certfile),
                            ("KAFKA_SSL_KEYFILE", self.ssl_keyfile)):
            if value:
                env[name] = value
        return env


def _http_url(env: Mapping[str, str], name: str) -> str | None:
    url = (env.get(name) or "").strip().rstrip("/")
    if url and not url.startswith(("http://", "https://")):
        raise ConfigError(f"{name}={url!r} is not an http:// or https:// URL")
    return url or None


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
    late: str = "touchpoints.late"

    def all(self) -> list[str]:
        return [self.touchpoints, self.dlq, self.incidents, self.alerts, self.silences, self.customers, self.late]


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
    clickhouse_password_set: str | None = field(default=None, repr=False)  # None: generated (local endpoint)
    clickhouse_readonly_user: str | None = None
    clickhouse_readonly_password_set: str | None = field(default=None, repr=False)
    clickhouse_threads: int = 8
    clickhouse_readonly_max_execution_s: int = 60
    clickhouse_readonly_max_memory: int = 2 * 1024**3
    clickhouse_readonly_max_result_rows: int = 1_000_000
    clickhouse_readonly_max_cpus: float = 0.5
    clickhouse_mutation_wait_s: float = 60.0
    clickhouse_cors_origins: tuple[str, ...] = ()
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
    clock_tolerance_s: float = 5.0  # see streams.domain.event_time
    source_idle_s: float = 60.0  # see streams.journeys.low_watermark
    web_port: int = 8088
    oncall_token: str = field(default="", repr=False)
    manager_token: str = field(default="", repr=False)
    sla_goal: float = 0.9
    webhooks: dict[str, str] = field(default_factory=dict, repr=False)
    collector_port: int = 8090
    collector_keys: dict[str, str] = field(default_factory=dict, repr=False)
    collector_origins: tuple[str, ...] = ()
    collector_staff_sources: frozenset[str] = frozenset()
    collector_max_body_bytes: int = 1_048_576
    collector_max_batch: int = 500
    collector_rate_per_s: int = 200
    shopify_webhook_secret: str = field(default="", repr=False)
    square_signature_key: str = field(default="", repr=False)
    square_notification_url: str = ""
    woocommerce_webhook_secret: str = field(default="", repr=False)
    platform_promise_s: int = 0
    max_promise_days: int = DEFAULT_MAX_PROMISE_DAYS
    kafka: KafkaConnection = field(default_factory=KafkaConnection)
    external_schema_registry: str | None = None
    schema_registry_auth: str = field(default="", repr=False)
    schema_registry_port: int = 8081
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
            late=env.get("JOURNEY_TOPIC_LATE", Topics.late),
        )
        rules = env.get("JOURNEY_RULES_FILE")
        if env.get("JOURNEY_SQUARE_SIGNATURE_KEY") and not env.get("JOURNEY_SQUARE_NOTIFICATION_URL"):
            raise ConfigError("JOURNEY_SQUARE_SIGNATURE_KEY is set without JOURNEY_SQUARE_NOTIFICATION_URL: Square "
                              "signs the notification URL with the body; set it to the URL registered with Square")
        return cls(
            home=Path(env.get("JOURNEY_HOME", ".journey")),
            host=env.get("JOURNEY_HOST", "127.0.0.1"),
            kafka_port=_int(env, "JOURNEY_KAFKA_PORT", 9092),
            clickhouse_port=_int(env, "JOURNEY_CLICKHOUSE_PORT", 8123),
            external_kafka=env.get("KAFKA_BOOTSTRAP_SERVERS") or None,
            external_clickhouse=env.get("CLICKHOUSE_URL") or None,
            clickhouse_user=env.get("CLICKHOUSE_USER", "default") or "default",
            clickhouse_password_set=env.get("CLICKHOUSE_PASSWORD"),
            clickhouse_readonly_user=env.get("CLICKHOUSE_READONLY_USER") or None,
            clickhouse_readonly_password_set=env.get("CLICKHOUSE_READONLY_PASSWORD"),
            clickhouse_threads=max(2, _int(env, "JOURNEY_CLICKHOUSE_THREADS", 8)),
            clickhouse_readonly_max_execution_s=_int(env, "JOURNEY_CLICKHOUSE_READONLY_MAX_EXECUTION_S", 60),
            clickhouse_readonly_max_memory=_int(env, "JOURNEY_CLICKHOUSE_READONLY_MAX_MEMORY", 2 * 1024**3),
            clickhouse_readonly_max_result_rows=_int(env, "JOURNEY_CLICKHOUSE_READONLY_MAX_RESULT_ROWS", 1_000_000),
            clickhouse_readonly_max_cpus=float(env.get("JOURNEY_CLICKHOUSE_READONLY_MAX_CPUS") or 0.5),
            clickhouse_mutation_wait_s=float(env.get("JOURNEY_CLICKHOUSE_MUTATION_WAIT_S") or 60),
            clickhouse_cors_origins=_list(env, "JOURNEY_CLICKHOUSE_CORS_ORIGINS"),
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
            clock_tolerance_s=max(0.0, _float(env, "JOURNEY_CLOCK_TOLERANCE_S", 5.0)),
            source_idle_s=max(0.0, _float(env, "JOURNEY_SOURCE_IDLE_S", 60.0)),
            app_id=env.get("JOURNEY_APP_ID", "journey-tracker") or "journey-tracker",
            retention_days=_int(env, "JOURNEY_RETENTION_DAYS", 0) or None,
            web_port=_int(env, "JOURNEY_WEB_PORT", 8088),
            oncall_token=env.get("JOURNEY_ONCALL_TOKEN", ""),
            manager_token=env.get("JOURNEY_MANAGER_TOKEN", ""),
            sla_goal=_share(env, "JOURNEY_SLA_GOAL", 0.9),
            webhooks=_pairs(env, "JOURNEY_WEBHOOKS"),
            collector_port=_int(env, "JOURNEY_COLLECTOR_PORT", 8090),
            collector_keys=_pairs(env, "JOURNEY_COLLECTOR_KEYS"),
            collector_origins=_list(env, "JOURNEY_COLLECTOR_ORIGINS"),
            collector_staff_sources=frozenset(_list(env, "JOURNEY_COLLECTOR_STAFF_SOURCES")),
            collector_max_body_bytes=_int(env, "JOURNEY_COLLECTOR_MAX_BODY_BYTES", 1_048_576),
            collector_max_batch=_int(env, "JOURNEY_COLLECTOR_MAX_BATCH", 500),
            collector_rate_per_s=_int(env, "JOURNEY_COLLECTOR_RATE_PER_S", 200),
            shopify_webhook_secret=env.get("JOURNEY_SHOPIFY_WEBHOOK_SECRET", ""),
            square_signature_key=env.get("JOURNEY_SQUARE_SIGNATURE_KEY", ""),
            square_notification_url=env.get("JOURNEY_SQUARE_NOTIFICATION_URL", ""),
            woocommerce_webhook_secret=env.get("JOURNEY_WOOCOMMERCE_WEBHOOK_SECRET", ""),
            platform_promise_s=max(0, _int(env, "JOURNEY_PLATFORM_PROMISE_S", 0)),
            max_promise_days=max_promise_s(env) // 86_400,
            kafka=KafkaConnection.from_env(env),
            external_schema_registry=_http_url(env, "SCHEMA_REGISTRY_URL"),
            schema_registry_auth=env.get("SCHEMA_REGISTRY_BASIC_AUTH", ""),
            schema_registry_port=_int(env, "JOURNEY_SCHEMA_REGISTRY_PORT", 8081),
            internal_partitions=max(1, _int(env, "JOURNEY_INTERNAL_PARTITIONS", 4)),
            by_journey_topic=env.get("JOURNEY_TOPIC_BY_JOURNEY", ""),
            by_customer_topic=env.get("JOURNEY_TOPIC_BY_CUSTOMER", ""),
        )

    def to_env(self) -> dict[str, str]:
        """These settings as environment variables, for child processes (tests, `journey up`)."""
        env = {
            "JOURNEY_HOME": str(self.home.resolve()), "JOURNEY_HOST": self.host,
            "JOURNEY_KAFKA_PORT": str(self.kafka_port), "JOURNEY_CLICKHOUSE_PORT": str(self.clickhouse_port),
            "CLICKHOUSE_USER": self.clickhouse_user,
            "JOURNEY_TOPIC_TOUCHPOINTS": self.topics.touchpoints, "JOURNEY_TOPIC_DLQ": self.topics.dlq,
            "JOURNEY_TOPIC_INCIDENTS": self.topics.incidents, "JOURNEY_TOPIC_ALERTS": self.topics.alerts,
            "JOURNEY_PARTITIONS": str(self.partitions), "JOURNEY_SESSION_TIMEOUT_MS": str(self.session_timeout_ms),
            "JOURNEY_STARTUP_TIMEOUT_S": str(self.startup_timeout_s), "JOURNEY_FAUST_STORE": self.faust_store,
            "JOURNEY_APP_ID": self.app_id, "JOURNEY_WORKERS": str(self.workers),
            "JOURNEY_EMIT_PROCESSES": str(self.emit_processes),
            "JOURNEY_SINK_PROCESSES": str(self.sink_processes), "JOURNEY_SINK_BATCH_ROWS": str(self.sink_batch_rows),
            "JOURNEY_CLOCK_TOLERANCE_S": str(self.clock_tolerance_s),
            "JOURNEY_SOURCE_IDLE_S": str(self.source_idle_s),
            "JOURNEY_TOPIC_SILENCES": self.topics.silences, "JOURNEY_WEB_PORT": str(self.web_port),
            "JOURNEY_ONCALL_TOKEN": self.oncall_token, "JOURNEY_MANAGER_TOKEN": self.manager_token,
            "JOURNEY_SLA_GOAL": str(self.sla_goal),
            "JOURNEY_WEBHOOKS": ",".join(f"{k}={v}" for k, v in self.webhooks.items()),
            "JOURNEY_COLLECTOR_PORT": str(self.collector_port),
            "JOURNEY_COLLECTOR_KEYS": ",".join(f"{k}={v}" for k, v in self.collector_keys.items()),
            "JOURNEY_COLLECTOR_ORIGINS": ",".join(self.collector_origins),
            "JOURNEY_COLLECTOR_STAFF_SOURCES": ",".join(sorted(self.collector_staff_sources)),
            "JOURNEY_CLICKHOUSE_THREADS": str(self.clickhouse_threads),
            "JOURNEY_CLICKHOUSE_READONLY_MAX_EXECUTION_S": str(self.clickhouse_readonly_max_execution_s),
            "JOURNEY_CLICKHOUSE_READONLY_MAX_MEMORY": str(self.clickhouse_readonly_max_memory),
            "JOURNEY_CLICKHOUSE_READONLY_MAX_RESULT_ROWS": str(self.clickhouse_readonly_max_result_rows),
            "JOURNEY_CLICKHOUSE_READONLY_MAX_CPUS": str(self.clickhouse_readonly_max_cpus),
            "JOURNEY_CLICKHOUSE_MUTATION_WAIT_S": str(self.clickhouse_mutation_wait_s),
            "JOURNEY_CLICKHOUSE_CORS_ORIGINS": ",".join(self.clickhouse_cors_origins),
            "JOURNEY_COLLECTOR_MAX_BODY_BYTES": str(self.collector_max_body_bytes),
            "JOURNEY_COLLECTOR_MAX_BATCH": str(self.collector_max_batch),
            "JOURNEY_COLLECTOR_RATE_PER_S": str(self.collector_rate_per_s),
            "JOURNEY_SHOPIFY_WEBHOOK_SECRET": self.shopify_webhook_secret,
            "JOURNEY_SQUARE_SIGNATURE_KEY": self.square_signature_key,
            "JOURNEY_SQUARE_NOTIFICATION_URL": self.square_notification_url,
            "JOURNEY_WOOCOMMERCE_WEBHOOK_SECRET": self.woocommerce_webhook_secret,
            "JOURNEY_PLATFORM_PROMISE_S": str(self.platform_promise_s),
            "JOURNEY_MAX_PROMISE_DAYS": str(self.max_promise_days),
            "JOURNEY_SCHEMA_REGISTRY_PORT": str(self.schema_registry_port),
            **self.kafka.to_env(),
            "JOURNEY_TOPIC_CUSTOMERS": self.topics.customers, "JOURNEY_TOPIC_LATE": self.topics.late,
            "JOURNEY_INTERNAL_PARTITIONS": str(self.internal_partitions),
            "JOURNEY_TOPIC_BY_JOURNEY": self.by_journey_topic, "JOURNEY_TOPIC_BY_CUSTOMER": self.by_customer_topic,
        }
        if self.external_schema_registry:
            env["SCHEMA_REGISTRY_URL"] = self.external_schema_registry
        if self.schema_registry_auth:
            env["SCHEMA_REGISTRY_BASIC_AUTH"] = self.schema_registry_auth
        for name, value in (("CLICKHOUSE_PASSWORD", self.clickhouse_password_set),
                            ("CLICKHOUSE_READONLY_PASSWORD", self.clickhouse_readonly_password_set)):
            if value is not None:  # unset stays unset: children read the generated one from its file
                env[name] = value
        if self.clickhouse_readonly_user:
            env["CLICKHOUSE_READONLY_USER"] = self.clickhouse_readonly_user
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
    def clickhouse_password(self) -> str:
        """CLICKHOUSE_PASSWORD; unset (local endpoint): the one it generated under JOURNEY_HOME."""
        return self._kept(self.clickhouse_password_set, CLICKHOUSE_PASSWORD_FILE)

    @property
    def clickhouse_readonly_password(self) -> str:
        """CLICKHOUSE_READONLY_PASSWORD; unset (local endpoint): the generated one."""
        return self._kept(self.clickhouse_readonly_password_set, CLICKHOUSE_READONLY_PASSWORD_FILE)

    def _kept(self, value: str | None, file_name: str) -> str:
        if value is not None or not self.runs_local_clickhouse:
            return value or ""
        try:
            return (self.home.resolve() / file_name).read_text().strip()
        except OSError:  # not generated yet: the endpoint makes it when it starts
            return ""

    @property
    def schema_registry_url(self) -> str:
        """Schema registry URL: the external one, or the local stack's."""
        return self.external_schema_registry or f"http://{self.host}:{self.schema_registry_port}"

    @property
    def runs_local_schema_registry(self) -> bool:
        return self.external_schema_registry is None

    @property
    def clock_tolerance_ms(self) -> int:
        return int(self.clock_tolerance_s * 1000)

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
