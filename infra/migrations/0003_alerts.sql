-- Alert history: every notification, escalation, acknowledgement; alert_id is unique per notification.
CREATE TABLE IF NOT EXISTS journey.alerts
(
    alert_id     String,
    incident_id  String,
    kind         LowCardinality(String),
    level        UInt8,
    severity     LowCardinality(String),
    rule         LowCardinality(String),
    store_id     Nullable(String),
    journey_id   String,
    customer_id  Nullable(String),
    at           DateTime64(3, 'UTC'),
    failed_at    DateTime64(3, 'UTC'),
    paged        Bool,
    reason       Nullable(String),
    message      String,
    channels     Array(String)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (incident_id, at, alert_id)
{ttl_alerts}
