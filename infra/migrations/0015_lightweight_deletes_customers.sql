-- Lightweight DELETEs (journey forget) as patch parts on the customers table too (see 0012).
ALTER TABLE journey.customers MODIFY SETTING enable_block_number_column = 1, enable_block_offset_column = 1
