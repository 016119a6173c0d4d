"""`journey up` after a crash: a stack that still runs is refused, a dead or half-dead one is not
(real child processes and pid files; no broker)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from infra.base.config import Settings
from infra.base.errors import JourneyError
from infra.local import processes, stack

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]


def _old_stack(home: Path, names: list[str]) -> list[object]:
    (home / "logs").mkdir(parents=True)
    (home / "stack.json").write_text(json.dumps({"order": names}))
    return [processes.spawn(name, SLEEP, home / "logs" / f"{name}.log", home / "pids") for name in names]


def test_a_running_stack_is_refused_and_left_alone(tmp_path: Path) -> None:
    settings = Settings.from_env({"JOURNEY_HOME": str(tmp_path)})
    procs = _old_stack(tmp_path, ["broker", "worker-0"])
    try:
        with pytest.raises(JourneyError, match="already running"):
            stack._previous_life(settings, echo=lambda _line: None)
        assert all(p.alive() for p in processes.tracked(tmp_path / "pids"))
    finally:
        stack.stop(settings)
    assert all(p.wait(timeout=10) is not None for p in procs)  # type: ignore[attr-defined]


def test_a_half_dead_stack_is_stopped_and_started_anew(tmp_path: Path) -> None:
    settings = Settings.from_env({"JOURNEY_HOME": str(tmp_path)})
    broker, worker = _old_stack(tmp_path, ["broker", "worker-0"])
    broker.kill()  # type: ignore[attr-defined]
    broker.wait(timeout=5)  # type: ignore[attr-defined]
    lines: list[str] = []
    previous = stack._previous_life(settings, echo=lines.append)
    assert previous["crashed"] is True
    assert worker.wait(timeout=15) is not None  # type: ignore[attr-defined]  # the survivor was stopped
    assert processes.tracked(tmp_path / "pids") == []
    assert "broker not running; stopping worker-0" in lines[0]


def test_stale_pid_files_after_a_power_cut_are_forgotten(tmp_path: Path) -> None:
    settings = Settings.from_env({"JOURNEY_HOME": str(tmp_path)})
    procs = _old_stack(tmp_path, ["broker", "sink"])
    for proc in procs:
        proc.kill()  # type: ignore[attr-defined]
        proc.wait(timeout=5)  # type: ignore[attr-defined]
    previous = stack._previous_life(settings, echo=lambda _line: None)
    assert previous["crashed"] is True and previous["stopped_at"] is None
    assert processes.tracked(tmp_path / "pids") == []


def test_a_clean_stop_is_told_from_a_crash(tmp_path: Path) -> None:
    settings = Settings.from_env({"JOURNEY_HOME": str(tmp_path)})
    _old_stack(tmp_path, ["broker"])
    assert stack.stop(settings) == ["broker"]
    previous = stack._previous_life(settings, echo=lambda _line: None)
    assert previous["crashed"] is False and isinstance(previous["stopped_at"], int)


def test_a_stack_still_starting_is_not_taken_for_a_crashed_one(tmp_path: Path) -> None:
    import fcntl

    settings = Settings.from_env({"JOURNEY_HOME": str(tmp_path)})
    with open(tmp_path / "starting.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another `journey up` is half way through
        with pytest.raises(JourneyError, match="starting .* right now"):
            stack.start(settings, [], echo=lambda _line: None)
