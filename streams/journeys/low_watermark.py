"""The low watermark of one internal partition, from the marks intake sends (pure, no Kafka).

Every source partition holds the watermark at its own progress: its newest event time, which
advances with the wall clock once it is caught up (so in live traffic an idle source follows the
clock, and a breach fires at its deadline). Not "caught up, so it holds nothing back": in live
traffic the next event of a caught-up source may already be on its way, older than what another
source just delivered (measured: false breaches in a sped-up `journey demo` with 2 workers). A
source that never had an event holds nothing back until it has one. Until every source partition
has reported once, nothing fires by watermark (a journey's own later events still fire its
deadlines). In a replay, traffic after the history moves every source (see the tests' closing
events), as it did per partition before.
"""

from __future__ import annotations

from streams.intake.marks import Mark


class LowWatermark:
    """Marks of every source partition seen on one internal partition."""

    def __init__(self, lateness_ms: int = 0) -> None:
        self.lateness_ms = lateness_ms
        self.sources = 0
        self._marks: dict[int, tuple[int | None, bool]] = {}
        self._idle: set[int] = set()

    def update(self, mark: Mark) -> None:
        self.sources = max(self.sources, mark.sources)
        known = self._marks.get(mark.source)
        watermark = mark.watermark
        if known is not None and known[0] is not None and (watermark is None or watermark < known[0]):
            watermark = known[0]  # never back (a restarted intake starts from its commit)
        self._marks[mark.source] = (watermark, mark.caught_up)
        if mark.idle:
            self._idle.add(mark.source)
        else:
            self._idle.discard(mark.source)

    def low(self) -> int | None:
        """How far every source has got, or None while it is not known yet."""
        if self.sources == 0 or any(s not in self._marks for s in range(self.sources)):
            return None
        if any(wm is None and not caught_up for wm, caught_up in self._marks.values()):
            return None  # a backlog not read yet
        known = [wm for wm, _ in self._marks.values() if wm is not None]
        if not known:
            return None
        follow = max(known) - self.lateness_ms  # where an idle source stands at least (see module doc)
        for source in self._idle:
            wm, caught_up = self._marks[source]
            if wm is not None and wm < follow:
                self._marks[source] = (follow, caught_up)  # kept: it never goes back from there
        return min(wm for wm, _ in self._marks.values() if wm is not None)
