"""The intake stage: touchpoints from any producer -> validated events keyed by journey.

`batch.sort_batch` sorts raw messages into events and dead letters; `rekey` sends the events to
the internal topic partitioned by OUR partitioner, with the source partitions' event-time
progress (`marks`) so the journeys stage knows how far every source has got.
"""

from streams.intake.batch import Sorted, sort_batch

__all__ = ["Sorted", "sort_batch"]
