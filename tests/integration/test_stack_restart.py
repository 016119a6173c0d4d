"""The embedded stack survives a restart (`journey down` / `up -d`) and a power cut (every process
SIGKILLed, then `journey up -d`): open journeys, pending promises, open and acknowledged incidents
and silences come back from ClickHouse; nothing is paged twice, no id changes (issue #23)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from infra.base.clickhouse import get_client
from infra.base.config import CLICKHOUSE_PASSWORD_FILE
from infra.local import processes
from tests.integration.own_stack import own_stack_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LATE_S = 6.0  # how late a deadline may fire on a busy two-core machine (tick 0.2 s, sink 0.5 s)


class Stack:
    """A `journey` stack of its own, driven through the CLI as a user would."""

    def __init__(self, home: Path) -> None:
        self.env = own_stack_env(home)
        self.home = home
        self.client: Any = None

    def journey(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-c", "from infra.cli import main; main()", *args], input=stdin,
                              capture_output=True, text=True, env=self.env, timeout=240)
        if check:
            assert done.returncode == 0, f"journey {' '.join(args)}: {done.stdout}\n{done.stderr}"
        return done

    def up(self) -> tuple[int, int, dict[str, Any]]:
        """`journey up -d`: (wall ms before, wall ms after, the restart record of `status --json`)."""
        before = _now()
        self.journey("up", "-d")
        after = _now()
        password = (Path(self.env["JOURNEY_HOME"]) / CLICKHOUSE_PASSWORD_FILE).read_text().strip()  # generated
        self.client = get_client(f"http://127.0.0.1:{self.env['JOURNEY_CLICKHOUSE_PORT']}", password=password)
        status = json.loads(self.journey("status", "--json").stdout)
        return before, after, status["restart"]

    def emit(self, *events: dict[str, Any]) -> None:
        self.journey("emit", stdin="".join(json.dumps(e) + "\n" for e in events))

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return list(self.client.query(sql).result_rows)

    def incidents(self) -> dict[str, dict[str, Any]]:
        """journey id -> its incident (latest version), from ClickHouse."""
        result = self.client.query(
            "SELECT journey_id, incident_id, version, status, rule, failed_at, detected_at, time_to_acknowledge_s, "
            "time_to_resolve_s FROM journey.incidents FINAL").named_results()
        return {row["journey_id"]: row for row in result}

    def wait(self, what: str, check: Any, timeout_s: float = 60) -> None:
        assert processes.wait_until(check, timeout_s, 0.3), f"timed out waiting for {what}"

    def alerts(self) -> list[dict[str, Any]]:
        """Every record of the alerts topic (re-seeded history first), as JSON."""
        out = self.journey("alerts", "--from-beginning", "--json", "--idle-timeout", "2").stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def power_cut(self) -> None:
        """SIGKILL every process of the stack (and their children) at once: nothing runs its shutdown."""
        for tracked in processes.tracked(self.home / "pids"):
            try:
                os.killpg(tracked.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        assert processes.wait_until(lambda: not any(p.alive() for p in processes.tracked(self.home / "pids")), 10)


def _now() -> int:
    return int(time.time() * 1000)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def touchpoint(journey: str, kind: str, at: int, store: str = "seoul-01", **extra: Any) -> dict[str, Any]:
    return {"event_id": f"{journey}-{kind.lower()}", "journey_id": journey, "customer_id": f"c-{journey}",
            "type": kind, "channel": "pos", "occurred_at": _iso(at), "store_id": store, **extra}


def assert_paged_once(alerts: list[dict[str, Any]], restarted_at: int, old_incidents: set[str]) -> None:
    """No alert id twice, and no incident raised (paged or recorded) again after the restart."""
    ids = Counter(a["alert_id"] for a in alerts)
    assert [i for i, n in ids.items() if n > 1] == []
    again = [a for a in alerts if a["incident_id"] in old_incidents and a["kind"] in ("triggered", "suppressed")
             and _alert_ms(a["at"]) >= restarted_at]
    assert again == [], f"raised again after the restart: {again}"
    firsts = Counter(a["incident_id"] for a in alerts if a["kind"] in ("triggered", "suppressed"))
    assert [i for i, n in firsts.items() if n > 1] == []


def _alert_ms(value: Any) -> int:
    return value if isinstance(value, int) else _ms(datetime.fromisoformat(value.replace("Z", "+00:00")))


def assert_fired_at_deadline(incident: dict[str, Any], deadline: int) -> None:
    assert _ms(incident["failed_at"]) == deadline
    lag = (_ms(incident["detected_at"]) - deadline) / 1000
    assert 0 <= lag <= LATE_S, f"{incident['incident_id']} detected {lag:.1f} s after its deadline"


def ack_and_resolve(stack: Stack, incident_id: str, ack: bool = True) -> None:
    if ack:
        stack.journey("ack", incident_id, "--by", "s-7", "--note", "on it")
    stack.journey("resolve", incident_id, "--by", "s-7", "--note", "fixed")


@pytest.mark.timeout(900)
def test_restart_and_power_cut_lose_nothing_and_page_nobody_twice(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "home")
    stack.up()
    try:
        # ---- first life: incidents open, acknowledged, silenced; then two pending promises ---------
        t0 = _now()
        stack.journey("silence", "add", "--store", "busan-01", "--for", "1h", "--comment", "remodel")
        stack.emit(touchpoint("j-open", "COMPLAINT_FILED", t0), touchpoint("j-acked", "COMPLAINT_FILED", t0),
                   touchpoint("j-muted", "COMPLAINT_FILED", t0, store="busan-01"))
        stack.wait("three complaints in ClickHouse", lambda: len(stack.incidents()) == 3)
        acked_id = stack.incidents()["j-acked"]["incident_id"]
        stack.journey("ack", acked_id, "--by", "s-1")
        stack.wait("the acknowledgement", lambda: stack.incidents()["j-acked"]["status"] == "acknowledged")
        requested = _now()
        due_while_down, due_after = requested + 40_000, requested + 80_000
        stack.emit(touchpoint("j-spoon", "ITEM_REQUESTED", requested, request_id="spoon", promised_within_s=40),
                   touchpoint("j-fork", "ITEM_REQUESTED", requested, request_id="fork", promised_within_s=80))
        stack.wait("the requests in ClickHouse", lambda: stack.rows(
            "SELECT count() FROM journey.touchpoints WHERE type = 'ITEM_REQUESTED'") == [(2,)], 20)
        before = stack.incidents()
        stack.wait("the complaints' alerts in ClickHouse", lambda: stack.rows(
            "SELECT count() FROM journey.alerts FINAL WHERE kind IN ('triggered', 'suppressed', 'acknowledged')")
            == [(4,)], 20)
        stack.journey("down")
        assert _now() < due_while_down, "the stack took too long to stop: the promise fired before it"
        time.sleep(max(0.0, (due_while_down - _now()) / 1000 + 1))  # it falls due while nothing runs

        # ---- second life, after `journey down` --------------------------------------------------
        restarted, up_at, restart = stack.up()
        assert restart["after"] == "journey down" and restart["reseeded"]
        assert restart["restored"]["journeys"] == 5 and restart["restored"]["open_incidents"] == 3
        assert restart["restored"]["silences"] == 1
        # the promise that fell due while the stack was down fires once, at the restart
        stack.wait("the promise due while down", lambda: "j-spoon" in stack.incidents(), 30)
        spoon = stack.incidents()["j-spoon"]
        assert _ms(spoon["failed_at"]) == due_while_down
        assert restarted <= _ms(spoon["detected_at"]) <= up_at + LATE_S * 1000
        # the one due after the restart fires at its deadline
        stack.wait("the later promise", lambda: "j-fork" in stack.incidents(), (due_after - _now()) / 1000 + 30)
        assert_fired_at_deadline(stack.incidents()["j-fork"], due_after)
        # the incidents opened before can be acknowledged and resolved: metrics complete
        ack_and_resolve(stack, before["j-open"]["incident_id"])
        ack_and_resolve(stack, acked_id, ack=False)
        stack.wait("both resolved", lambda: all(stack.incidents()[j]["status"] == "resolved"
                                                for j in ("j-open", "j-acked")))
        after = stack.incidents()
        for journey in ("j-open", "j-acked", "j-muted"):
            assert after[journey]["incident_id"] == before[journey]["incident_id"]
            assert after[journey]["detected_at"] == before[journey]["detected_at"], "first detection kept"
        for journey in ("j-open", "j-acked"):
            assert after[journey]["time_to_acknowledge_s"] is not None
            assert after[journey]["time_to_resolve_s"] is not None
        # the silence still holds
        stack.emit(touchpoint("j-muted-2", "COMPLAINT_FILED", _now(), store="busan-01"))
        stack.wait("the silenced complaint", lambda: "j-muted-2" in stack.incidents())
        stack.wait("its alert", lambda: any(a["journey_id"] == "j-muted-2" for a in stack.alerts()), 20)
        alerts = stack.alerts()
        assert [(a["kind"], a["paged"]) for a in alerts if a["journey_id"] == "j-muted-2"] == [("suppressed", False)]
        assert_paged_once(alerts, restarted, {i["incident_id"] for i in before.values()})
        # nothing written to ClickHouse twice, no clock event stored
        assert stack.rows("SELECT count() = uniqExact(event_id), countIf(source = 'journey-restore') "
                          "FROM journey.touchpoints") == [(True, 0)]

        # ---- third life, after a power cut --------------------------------------------------------
        requested = _now()
        due_after_cut = requested + 50_000
        stack.emit(touchpoint("j-knife", "ITEM_REQUESTED", requested, request_id="knife", promised_within_s=50),
                   touchpoint("j-open-2", "COMPLAINT_FILED", requested))
        stack.wait("the second complaint", lambda: "j-open-2" in stack.incidents())
        stack.wait("its alert in ClickHouse", lambda: stack.rows(
            "SELECT count() FROM journey.alerts WHERE journey_id = 'j-open-2'") == [(1,)], 20)
        before_cut = stack.incidents()
        stack.power_cut()
        restarted, _, restart = stack.up()
        assert restart["after"] == "crash" and restart["reseeded"]
        stack.wait("the promise after the power cut", lambda: "j-knife" in stack.incidents(),
                   (due_after_cut - _now()) / 1000 + 30)
        assert_fired_at_deadline(stack.incidents()["j-knife"], due_after_cut)
        ack_and_resolve(stack, before_cut["j-open-2"]["incident_id"])
        stack.wait("resolved after the power cut", lambda: stack.incidents()["j-open-2"]["status"] == "resolved")
        stack.emit(touchpoint("j-muted-3", "COMPLAINT_FILED", _now(), store="busan-01"))
        stack.wait("the third silenced complaint's alert",
                   lambda: any(a["journey_id"] == "j-muted-3" for a in stack.alerts()), 30)
        alerts = stack.alerts()
        assert [(a["kind"], a["paged"]) for a in alerts if a["journey_id"] == "j-muted-3"] == [("suppressed", False)]
        assert_paged_once(alerts, restarted, {i["incident_id"] for i in before_cut.values()})
        final = stack.incidents()
        for journey, incident in before_cut.items():
            assert final[journey]["incident_id"] == incident["incident_id"]
            assert final[journey]["detected_at"] == incident["detected_at"]
        assert stack.rows("SELECT count() = uniqExact(event_id), countIf(source = 'journey-restore') "
                          "FROM journey.touchpoints") == [(True, 0)]
    finally:
        stack.journey("down", check=False)
