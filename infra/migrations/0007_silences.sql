-- Silences as recorded (created, expired) by `journey silence add|expire`: kept so they survive a restart of the embedded broker
-- (infra/local/restore.py re-seeds them) and so BI tools see what was muted when.
CREATE TABLE IF NOT EXISTS journey.silences
(
    silence_id  String,
    action      LowCardinality(String),
    store_id    Nullable(String),
    rule        Nullable(String),
    starts_at   DateTime64(3, 'UTC'),
    ends_at     DateTime64(3, 'UTC'),
    created_by  String,
    comment     Nullable(String),
    at          DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (silence_id, action, at)
