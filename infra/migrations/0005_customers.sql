-- One row per customer after merges (the customers stage's profile); the newest `version` wins
-- (read with FINAL). `regular`: at least 3 journeys in the 90 days up to the last visit.
CREATE TABLE IF NOT EXISTS journey.customers
(
    customer_id String,
    version     UInt64,
    first_seen  Nullable(DateTime64(3, 'UTC')),
    last_visit  Nullable(DateTime64(3, 'UTC')),
    journeys    UInt32,
    incidents   UInt32,
    recovered   UInt32,
    regular     Bool
)
ENGINE = ReplacingMergeTree(version)
ORDER BY customer_id
