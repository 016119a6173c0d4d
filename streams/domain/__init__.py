"""Detection and recovery tracking as plain Python: rules, deadlines, incidents, metrics.

Nothing here knows Kafka or Faust; `streams.worker` adapts it to a Faust agent.
"""
