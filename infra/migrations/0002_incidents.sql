-- One row per incident after merges; the newest `version` wins (read with FINAL or argMax).
CREATE TABLE IF NOT EXISTS journey.incidents
(
    incident_id                 String,
    version                     UInt64,
    journey_id                  String,
    customer_id                 Nullable(String),
    rule                        LowCardinality(String),
    severity                    LowCardinality(String),
    servqual                    LowCardinality(String),
    store_id                    Nullable(String),
    channel                     LowCardinality(Nullable(String)),
    status                      LowCardinality(String),
    failed_at                   DateTime64(3, 'UTC'),
    detected_at                 DateTime64(3, 'UTC'),
    updated_at                  DateTime64(3, 'UTC'),
    trigger_event_id            String,
    request_id                  Nullable(String),
    repeat_customer             Bool,
    acknowledged_at             Nullable(DateTime64(3, 'UTC')),
    acknowledged_by             Nullable(String),
    first_response_at           Nullable(DateTime64(3, 'UTC')),
    resolved_at                 Nullable(DateTime64(3, 'UTC')),
    detection_lag_s             Float64,
    time_to_acknowledge_s       Nullable(Float64),
    time_to_first_response_s    Nullable(Float64),
    time_to_resolve_s           Nullable(Float64),
    sla_acknowledge_breached    Bool,
    sla_first_response_breached Bool,
    sla_resolve_breached        Bool,
    compensation_kind           Nullable(String),
    compensation_amount         Nullable(Float64),
    followed_up_at              Nullable(DateTime64(3, 'UTC')),
    post_recovery_score         Nullable(Int32),
    recovered                   Nullable(Bool),
    late_fulfilment_at          Nullable(DateTime64(3, 'UTC')),
    note                        Nullable(String)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(failed_at)
ORDER BY incident_id
{ttl_incidents}
