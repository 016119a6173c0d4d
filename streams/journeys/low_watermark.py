"""The low watermark of one internal partition, from the marks intake sends (pure, no Kafka).

A source partition with a backlog holds the watermark back at its own; one that is caught up
has delivered everything it has, so it holds nothing back: in a replay an idle source follows
the topic's progress and every deadline inside the data fires. Until every source partition has
reported once, nothing fires by watermark (a journey's own later events still fire its deadlines).
"""

from __future__ import annotations

from streams.intake.marks import Mark


class LowWatermark:
    """Marks of every source partition seen on one internal partition."""

    def __init__(self) -> None:
        self.sources = 0
        self._marks: dict[int, tuple[int | None, bool]] = {}

    def update(self, mark: Mark) -> None:
        self.sources = max(self.sources, mark.sources)
        known = self._marks.get(mark.source)
        watermark = mark.watermark
        if known is not None and known[0] is not None and (watermark is None or watermark < known[0]):
            watermark = known[0]  # never back (a restarted intake starts from its commit)
        self._marks[mark.source] = (watermark, mark.caught_up)

    def low(self) -> int | None:
        """How far every source has got, or None while it is not known yet."""
        if self.sources == 0 or any(s not in self._marks for s in range(self.sources)):
            return None
        behind = [wm for wm, caught_up in self._marks.values() if not caught_up]
        if behind:
            return None if any(wm is None for wm in behind) else min(behind)  # type: ignore[type-var]
        known = [wm for wm, _ in self._marks.values() if wm is not None]
        return max(known) if known else None
