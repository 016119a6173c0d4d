"""End to end: a short `journey demo` on its own embedded stack, checked against ground truth."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from infra.local import processes
from tests.integration.own_stack import own_stack_env

pytestmark = pytest.mark.integration


def test_short_demo_detects_every_injected_failure(tmp_path: Path) -> None:
    # two workers: the ground truth's severity, repeat_customer and recovered must not depend on
    # which worker holds which journey (issue 16)
    env = own_stack_env(tmp_path / "home", JOURNEY_STARTUP_TIMEOUT_S="90", JOURNEY_WORKERS="2")
    result = subprocess.run(
        [sys.executable, "-c", "from infra.cli import main; main()", "demo", "--duration", "10", "--rate", "150",
         "--speed", "720", "--seed", "11", "--json"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["injected_failures"] > 5
    assert report["detected"] == report["injected_failures"]
    assert (report["missed"], report["false_alarms"], report["metric_mismatches"]) == (0, 0, 0)
    assert report["recovery_metrics"] == report["truth_metrics"]
    assert report["events"] > 500
    # the demo stopped everything it started
    assert not [p for p in processes.tracked(tmp_path / "home" / "pids") if p.alive()]
