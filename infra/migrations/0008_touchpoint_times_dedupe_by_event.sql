-- Touchpoints keep three times (occurred_at: device clock; sent_at: device clock at send, optional;
-- received_at: the collector's stamp or the Kafka record timestamp) and the device's skew
-- (received_at - sent_at, NULL without sent_at). They deduplicate by event_id ALONE: a retry that
-- re-stamps occurred_at (same event_id) is one row in FINAL (the old key included the time, and the
-- old partition key the month); of two writes of one event the newest stored wins. Rows of an existing data directory are copied over (received_at NULL:
-- not known then), then the tables are swapped. Each step can be repeated after a failure: the
-- copy and the swap are skipped once the table has the new columns.
CREATE TABLE IF NOT EXISTS journey.touchpoints_by_event
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
    sent_at           Nullable(DateTime64(3, 'UTC')),
    received_at       Nullable(DateTime64(3, 'UTC')),
    clock_skew_ms     Nullable(Int64) MATERIALIZED
        if(sent_at IS NULL OR received_at IS NULL, NULL,
           toUnixTimestamp64Milli(assumeNotNull(received_at)) - toUnixTimestamp64Milli(assumeNotNull(sent_at))),
    -- the flag, judged at the default JOURNEY_CLOCK_TOLERANCE_S (5 s): the worker corrected the skew, or
    -- capped a device time ahead of its receipt (streams/domain/event_time.py)
    clock_flag        LowCardinality(String) MATERIALIZED multiIf(
        received_at IS NULL, '',
        sent_at IS NOT NULL AND abs(toUnixTimestamp64Milli(assumeNotNull(received_at))
                                    - toUnixTimestamp64Milli(assumeNotNull(sent_at))) > 5000, 'skew corrected',
        toUnixTimestamp64Milli(occurred_at) > toUnixTimestamp64Milli(assumeNotNull(received_at)) + 5000,
        'ahead of receipt: capped', ''),
    kafka_partition   UInt16,
    kafka_offset      UInt64,
    ingested_at       DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX journey_idx journey_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree(ingested_at)
ORDER BY event_id
{ttl_touchpoints};

-- skip-if: SELECT hasColumnInTable('journey', 'touchpoints', 'received_at')
INSERT INTO journey.touchpoints_by_event (event_id, journey_id, customer_id, type, stage, channel, occurred_at,
    store_id, staff_id, request_id, promised_within_s, incident_id, attrs, source, kafka_partition, kafka_offset,
    ingested_at)
SELECT event_id, journey_id, customer_id, type, stage, channel, occurred_at, store_id, staff_id, request_id,
    promised_within_s, incident_id, attrs, source, kafka_partition, kafka_offset, ingested_at
FROM journey.touchpoints
ORDER BY ingested_at;

-- skip-if: SELECT hasColumnInTable('journey', 'touchpoints', 'received_at')
EXCHANGE TABLES journey.touchpoints AND journey.touchpoints_by_event;

DROP TABLE IF EXISTS journey.touchpoints_by_event
