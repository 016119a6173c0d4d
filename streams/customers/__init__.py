"""The customers stage: incident changes and journey starts keyed by customer (see `book`)."""
