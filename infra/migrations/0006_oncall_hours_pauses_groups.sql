-- On-call (issue 21): business-time SLA metrics and deadlines, waits on the customer, what an incident
-- is about; alert groups. Columns only added, with defaults: rows written before read as "no data".
ALTER TABLE journey.incidents
    ADD COLUMN IF NOT EXISTS about                             Nullable(String),
    ADD COLUMN IF NOT EXISTS sla_acknowledge_due_at            Nullable(DateTime64(3, 'UTC')),
    ADD COLUMN IF NOT EXISTS sla_first_response_due_at         Nullable(DateTime64(3, 'UTC')),
    ADD COLUMN IF NOT EXISTS sla_resolve_due_at                Nullable(DateTime64(3, 'UTC')),
    ADD COLUMN IF NOT EXISTS business_time_to_acknowledge_s    Nullable(Float64),
    ADD COLUMN IF NOT EXISTS business_time_to_first_response_s Nullable(Float64),
    ADD COLUMN IF NOT EXISTS business_time_to_resolve_s        Nullable(Float64),
    ADD COLUMN IF NOT EXISTS waiting_since                     Nullable(DateTime64(3, 'UTC')),
    ADD COLUMN IF NOT EXISTS paused_s                          Float64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS paused_business_s                 Float64 DEFAULT 0
