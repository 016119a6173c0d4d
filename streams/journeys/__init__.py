"""The journeys stage: the detector, keyed by journey, on the internal topic intake feeds."""
