"""What the terminal shows: help without type placeholders, every option described, names wrapped not cut,
'-' for missing, alerts history in time order, clear file errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from rich.console import Console

from infra import cli
from infra.base.errors import JourneyError
from infra.cli.alert_cmds import in_time_order
from infra.cli.events_cmds import check_readable_file
from infra.cli.report_cmds import print_customer, print_report


def _commands() -> list[tuple[list[str], object]]:
    cli._register_all()
    found = []

    def walk(command: object, path: list[str]) -> None:
        subs = getattr(command, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, [*path, name])
        else:
            found.append((path, command))

    walk(typer.main.get_command(cli.app), [])
    return found


def test_every_option_and_argument_is_described() -> None:
    commands = _commands()
    assert len(commands) >= 20
    missing = [(" ".join(path), p.name) for path, c in commands for p in c.params  # type: ignore[attr-defined]
               if not getattr(p, "help", None)]
    assert missing == []


@pytest.mark.parametrize("argv", [[], ["report"], ["emit"], ["tail"], ["alerts"], ["silence", "add"], ["bench"],
                                  ["dlq", "list"], ["demo"], ["schemas", "check"]])
def test_help_shows_no_python_type_placeholders(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main([*argv, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "<bool>" not in out and "<str>" not in out and "list[" not in out and "<int>" not in out, out


def _report(rule: str) -> dict[str, object]:
    group = {"customers": 0, "eligible_30d": 0, "returned_30d": 0, "return_rate_30d": None, "eligible_90d": 0,
             "returned_90d": 0, "return_rate_90d": None, "scored": 0, "mean_score": None}
    empty = {"groups": {g: group for g in ("recovered", "not_recovered", "no_failure")}, "by_first_response": [],
             "by_resolve": [], "by_compensation": []}
    return {"total_incidents": 1, "rates": {"journeys": 0, "by_rule": [], "by_store": [], "by_week": []},
            "recovery_paradox": {"overall": empty, "by_store": {}}, "targets": {}, "sla_goal": 0.9, "trend": [],
            "causes": [], "by_local_hour": {h: 0 for h in range(24)},
            "by_rule": [{"rule": rule, "servqual": "reliability", "incidents": 1, "tta_p50_s": None,
                         "ttfr_p50_s": 1163.0, "ttr_p50_s": None, "sla_compliance": 0.263, "share_compensated": 0.0}]}


def test_report_wraps_long_names_and_shows_human_units() -> None:
    wide = Console(width=200, record=True)
    print_report(_report("promise_breach"), "Service recovery", wide)
    assert "19 min 23 s" in wide.export_text()
    console = Console(width=80, record=True)
    print_report(_report("promise_breach_of_the_longest_rule_name"), "Service recovery", console)
    text = console.export_text()
    assert "…" not in text
    first_cells = "".join(line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│"))
    assert "promise_breach_of_the_longest_rule_name" in first_cells  # folded over lines, every letter kept
    assert "26%" in text and "None" not in text and "1163" not in text


def test_alert_history_is_shown_in_time_order() -> None:
    lines = [json.dumps({"at": at, "partition": p, "offset": o}) for at, p, o in
             [("2026-11-30T10:00:02Z", 0, 5), ("2026-11-30T10:00:01Z", 3, 1), ("2026-11-30T10:00:01Z", 1, 9)]]
    assert [(json.loads(line)["partition"]) for line in in_time_order(lines)] == [1, 3, 0]


def test_emit_file_errors_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(JourneyError, match="is a directory, not a file"):
        check_readable_file(tmp_path)
    with pytest.raises(JourneyError, match="no such file"):
        check_readable_file(tmp_path / "missing.jsonl")
    (tmp_path / "ok.jsonl").write_text("{}\n")
    check_readable_file(tmp_path / "ok.jsonl")


def test_customer_shows_dash_and_yes_no_never_python_values() -> None:
    console = Console(width=160, record=True)
    incident = {"failed_at": "2026-11-30 10:00:00", "rule": "promise_breach", "severity": "high", "status": "open",
                "time_to_resolve_s": None, "compensation_kind": None, "compensation_amount": None, "recovered": None}
    resolved = {**incident, "status": "resolved", "time_to_resolve_s": 1163.0, "compensation_kind": "voucher",
                "compensation_amount": 5.0, "recovered": True}
    print_customer({"customer_id": "c-77", "journeys": [{}], "incidents": [incident, resolved]}, console)
    text = console.export_text()
    assert "None" not in text and "True" not in text
    assert "19 min 23 s" in text and "voucher 5" in text and "yes" in text and " - " in text
