-- Lightweight DELETEs (journey forget) as patch parts: the matching rows only, not a mutation of every part
-- (which waits behind merges, slower with every part the sink adds). Existing parts are covered too.
ALTER TABLE journey.touchpoints MODIFY SETTING enable_block_number_column = 1, enable_block_offset_column = 1
