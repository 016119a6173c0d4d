"""The HTTP collector: browsers and POS terminals POST touchpoints; valid ones go to Kafka."""
