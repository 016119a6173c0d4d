"""Crash, rebalance and outage during a simulated run: ClickHouse ends equal to the ground truth.

Each scenario sends a simulated day (JOURNEY_CRASH_EVENTS touchpoints, see `faults.py`) through
real worker and sink processes on the real broker and ClickHouse endpoint, injects its fault,
then requires: the incidents in `journey.incidents FINAL` are exactly the injected failures
(none missed, none false, none counted twice, every recovery figure equal), every touchpoint is
in `journey.touchpoints FINAL` once, and after a merge no duplicate row is left at all.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver import Client

from infra.base.config import Settings
from infra.base.migrations import apply_migrations
from infra.local import processes, stack
from tests.integration.faults import (
    KILLS,
    Run,
    Service,
    assert_exact,
    assert_merges_leave_no_duplicate,
    client_for,
    kill_schedule,
    pause_until,
    read_outcome,
    sink_component,
    timeout_s,
    wait_for_outcome,
    worker_component,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OUTAGE_S = 30  # the ClickHouse outage


@pytest.fixture
def run_settings(unique_topics: Settings, tmp_path: Path) -> Iterator[Settings]:
    """Own topics, consumer groups and JOURNEY_HOME; every process started under it is stopped after."""
    settings = unique_topics.with_(home=tmp_path / "home", app_id=f"jt-{uuid.uuid4().hex[:8]}")
    settings.home.mkdir(parents=True)
    try:
        yield settings
    finally:
        stack.stop(settings)


def finish(settings: Settings, run: Run, services: list[Service], context: str) -> None:
    """Wait for the run to land in ClickHouse, then hold it to the truth."""
    run.join()
    for service in services:
        service.wait_ready()
    outcome = wait_for_outcome(settings, run, timeout=240 + run.events / 500)
    elapsed = time.monotonic() - run.started
    print(f"\n{context}: {len(run.sim.events)} events, {len(run.sim.truth)} incidents injected, "
          f"{elapsed:.0f} s; raw rows before merges: touchpoints {outcome.raw_touchpoint_rows} "
          f"(unique {outcome.touchpoints_unique}), incident versions {outcome.raw_incident_rows}")
    assert_exact(outcome, run, context + "\n" + "\n".join(f"--- {s.name}\n{s.log_tail(1500)}" for s in services))
    assert_merges_leave_no_duplicate(settings, run)


@pytest.mark.timeout(timeout_s())
def test_worker_kill9_at_random_moments_loses_and_doubles_nothing(run_settings: Settings) -> None:
    rng = random.Random(os.environ.get("JOURNEY_CRASH_SEED", "kill9-worker"))
    sink = Service(run_settings, sink_component(run_settings)).start()
    worker = Service(run_settings, worker_component(run_settings, 0)).start()
    run = Run(run_settings).start()
    kills = []
    for n, wait in enumerate(kill_schedule(rng, run, KILLS)):
        pause_until(wait)
        kills.append(f"{time.monotonic() - run.started:.1f}s:{worker.kill9()}")
        # every other restart is not waited for: the next kill may land while it rejoins the
        # group and recovers its table from the changelog
        worker.start(wait=n % 2 == 1)
    finish(run_settings, run, [worker, sink], f"worker kill -9 x{KILLS} at {kills}")


@pytest.mark.timeout(timeout_s(kills=4))
@pytest.mark.parametrize("store", ["shared", "own"])
def test_second_worker_joins_and_leaves_mid_run(run_settings: Settings, store: str) -> None:
    """`shared`: both workers keep RocksDB under one JOURNEY_HOME, as `journey up` with
    JOURNEY_WORKERS=2 runs them. `own`: the second one has its own, like another machine, so a
    partition it takes over is rebuilt from the changelog alone, and one that comes back to the
    first worker resumes from that worker's older RocksDB.

    Regression (both, mostly `own`, on a loaded machine): after a rebalance the worker applied
    records fetched before Faust's seek to the committed offsets first, then the ones from the
    committed offset: 69-158 false alarms, up to 94 incidents counted twice."""
    sink = Service(run_settings, sink_component(run_settings)).start()
    first = Service(run_settings, worker_component(run_settings, 0)).start()
    second_settings = run_settings if store == "shared" else run_settings.with_(home=run_settings.home / "second")
    second = Service(second_settings, worker_component(second_settings, 1))
    run = Run(run_settings, min_send_s=60).start()
    steps = []
    pause_until(run.send_s / 6)
    second.start()  # joins: the partitions are shared out, tables recover on the new owner
    steps.append(f"{time.monotonic() - run.started:.0f}s join")
    pause_until(run.send_s / 6)
    second.stop()  # leaves gracefully: everything moves back to the first worker
    steps.append(f"{time.monotonic() - run.started:.0f}s leave (SIGTERM)")
    pause_until(run.send_s / 6)
    second.start()
    steps.append(f"{time.monotonic() - run.started:.0f}s join")
    pause_until(run.send_s / 6)
    second.kill9()  # leaves without a word: the group notices after the session timeout
    steps.append(f"{time.monotonic() - run.started:.0f}s leave (kill -9)")
    finish(run_settings, run, [first, sink], f"second worker ({store} RocksDB): {steps}")


@pytest.mark.timeout(timeout_s())
def test_sink_kill9_mid_batch_loses_and_doubles_nothing(run_settings: Settings) -> None:
    rng = random.Random(os.environ.get("JOURNEY_CRASH_SEED", "kill9-sink"))
    worker = Service(run_settings, worker_component(run_settings, 0)).start()
    sink = Service(run_settings, sink_component(run_settings)).start()
    run = Run(run_settings).start()
    client = client_for(run_settings)
    kills = []
    for wait in kill_schedule(rng, run, KILLS):
        pause_until(wait)
        # kill as a batch lands: its touchpoints are in, its incidents or its offset commit not yet
        before = read_rows(client, run.prefix)
        processes.wait_until(lambda b=before: read_rows(client, run.prefix) > b, 30, interval_s=0.005)
        kills.append(f"{time.monotonic() - run.started:.1f}s:{sink.kill9()}")
        sink.start()
    finish(run_settings, run, [worker, sink], f"sink kill -9 x{KILLS} at {kills}")


def read_rows(client: Client, prefix: str) -> int:
    """Raw touchpoint rows of a run (before merges: a redelivered batch counts again)."""
    return int(client.query(
        "SELECT count() FROM journey.touchpoints WHERE startsWith(event_id, {p:String})",
        parameters={"p": prefix}).result_rows[0][0])


@pytest.mark.timeout(timeout_s() + OUTAGE_S)
def test_clickhouse_down_30s_mid_run_loses_and_doubles_nothing(run_settings: Settings) -> None:
    # its own endpoint, to stop and start
    settings = run_settings.with_(clickhouse_port=processes.free_port(), external_clickhouse=None)
    endpoint = Service(settings, stack.clickhouse_component(settings))
    endpoint.start()
    apply_migrations(client_for(settings), settings.retention_days)  # as `journey up` does
    worker = Service(settings, worker_component(settings, 0)).start()
    sink = Service(settings, sink_component(settings)).start()
    run = Run(settings, min_send_s=OUTAGE_S * 2).start()
    pause_until(run.send_s / 4)
    before = read_outcome(client_for(settings), run)
    endpoint.kill9()  # mid-insert perhaps: an insert ClickHouse took but never acknowledged is sent again
    down_at = time.monotonic()
    pause_until(OUTAGE_S)
    endpoint.start()
    outage = time.monotonic() - down_at
    finish(settings, run, [worker, sink, endpoint],
           f"ClickHouse down {outage:.0f} s after {before.touchpoints_final} touchpoints")
    log = sink.log_tail(10**7)
    assert "ClickHouse unavailable" in log and "ClickHouse is back" in log
    assert 0 < before.touchpoints_final < len(run.sim.events)  # the outage fell inside the run


@pytest.mark.timeout(600)
def test_regression_consistency_error_restarting_on_tansu(run_settings: Settings) -> None:
    """Bug: a restarted worker died with Faust's ConsistencyError ("persisted offset ... is higher
    than the last offset in that topic"): its RocksDB held the last changelog record, Tansu
    reported the end of the log as the start of that record's batch. Pinned by a clean restart
    after a run whose last changelog writes were batched (the 64 closing visits)."""
    sink = Service(run_settings, sink_component(run_settings)).start()
    worker = Service(run_settings, worker_component(run_settings, 0)).start()
    run = Run(run_settings, events=2000, min_send_s=5).start()
    run.join()
    assert wait_for_outcome(run_settings, run, timeout=240).complete
    worker.stop()  # clean: RocksDB holds every changelog offset the worker wrote
    worker.start()
    # the same events again (a replay into the restarted worker): nothing new, nothing lost
    run.start().join()
    finish(run_settings, run, [worker, sink], "clean restart on Tansu")
