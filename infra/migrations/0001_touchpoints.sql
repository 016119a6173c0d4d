-- Every valid touchpoint event, as on the topic. ReplacingMergeTree on event_id inside the
-- sort key: a replayed or redelivered event collapses into one row (read with FINAL for exact counts).
CREATE TABLE IF NOT EXISTS journey.touchpoints
(
    event_id          String,
    journey_id        String,
    customer_id       Nullable(String),
    type              LowCardinality(String),
    stage             LowCardinality(String),
    channel           LowCardinality(String),
    occurred_at       DateTime64(3, 'UTC'),
    store_id          Nullable(String),
    staff_id          Nullable(String),
    request_id        Nullable(String),
    promised_within_s Nullable(Int32),
    incident_id       Nullable(String),
    attrs             Map(String, String),
    source            Nullable(String),
    kafka_partition   UInt16,
    kafka_offset      UInt64,
    ingested_at       DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (journey_id, occurred_at, event_id)
{ttl_touchpoints}
