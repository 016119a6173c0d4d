"""`journey demo` refuses a running stack whose event time has passed the day it would send."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.base.config import Settings
from infra.base.errors import JourneyError
from infra.base.heartbeat import write_heartbeat
from streams.demo import check_stack_clock

HOUR_MS = 3_600_000
DAY_START = 1_700_000_000_000
LATENESS_MS = 300_000


def settings_with_workers(tmp_path: Path, *watermarks: dict[str, int]) -> Settings:
    settings = Settings.from_env().with_(home=tmp_path)
    for n, marks in enumerate(watermarks):
        write_heartbeat(settings, f"worker-{n}", {"watermarks": marks})
    return settings


def test_no_worker_or_no_watermark_yet_sends_the_day(tmp_path: Path) -> None:
    check_stack_clock(settings_with_workers(tmp_path), DAY_START, LATENESS_MS)
    check_stack_clock(settings_with_workers(tmp_path, {}), DAY_START, LATENESS_MS)


def test_a_clock_within_the_allowed_lateness_of_the_day_start_sends_the_day(tmp_path: Path) -> None:
    settings = settings_with_workers(tmp_path, {"0": DAY_START - HOUR_MS}, {"1": DAY_START + LATENESS_MS})
    check_stack_clock(settings, DAY_START, LATENESS_MS)


def test_an_earlier_demos_clock_on_any_worker_is_refused_with_the_way_out(tmp_path: Path) -> None:
    # an earlier demo ended its 12-hour day now and closed it 2 h ahead
    settings = settings_with_workers(tmp_path, {"0": DAY_START}, {"1": DAY_START, "3": DAY_START + 14 * HOUR_MS})
    with pytest.raises(JourneyError) as refused:
        check_stack_clock(settings, DAY_START, LATENESS_MS)
    message = str(refused.value)
    assert "14.0 h past the start of the day" in message
    assert "journey down" in message and "JOURNEY_HOME" in message
