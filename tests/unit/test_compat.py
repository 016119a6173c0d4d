"""Schema compatibility verdicts, and `journey schemas check` on candidate files."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from infra.cli import schemas_cmd
from schemas.compat import check_compatibility
from schemas.registry import SCHEMA_DIR

TOUCHPOINT = json.loads((SCHEMA_DIR / "touchpoint.avsc").read_text())


def _with_field(field: dict) -> dict:
    schema = copy.deepcopy(TOUCHPOINT)
    schema["fields"].append(field)
    return schema


def test_optional_field_with_default_is_compatible_both_ways() -> None:
    optional = {"name": "device", "type": ["null", "string"], "default": None}
    result = check_compatibility(TOUCHPOINT, _with_field(optional))
    assert (result.backward, result.forward, result.problems) == (True, True, [])


def test_required_field_without_default_breaks_backward() -> None:
    result = check_compatibility(TOUCHPOINT, _with_field({"name": "device", "type": "string"}))
    assert not result.backward and result.forward
    assert "device" in result.problems[0]


def test_removing_a_field_without_default_breaks_forward() -> None:
    new = copy.deepcopy(TOUCHPOINT)
    new["fields"] = [f for f in new["fields"] if f["name"] != "journey_id"]
    result = check_compatibility(TOUCHPOINT, new)
    assert result.backward and not result.forward


def test_type_change_breaks_both() -> None:
    new = copy.deepcopy(TOUCHPOINT)
    next(f for f in new["fields"] if f["name"] == "event_id")["type"] = "int"
    result = check_compatibility(TOUCHPOINT, new)
    assert not result.backward and not result.forward


def _app() -> typer.Typer:
    app = typer.Typer()
    schemas_cmd.register(app)

    @app.callback()
    def _root() -> None:
        pass

    return app


def test_cli_check_candidate_files(tmp_path: Path) -> None:
    ok = tmp_path / "ok.avsc"
    ok.write_text(json.dumps(_with_field({"name": "device", "type": ["null", "string"], "default": None})))
    bad = tmp_path / "bad.avsc"
    bad.write_text(json.dumps(_with_field({"name": "device", "type": "string"})))
    runner = CliRunner()
    assert runner.invoke(_app(), ["schemas", "check", str(ok)]).exit_code == 0
    result = runner.invoke(_app(), ["schemas", "check", str(bad), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["touchpoint"]["backward"] is False
    assert runner.invoke(_app(), ["schemas", "check"]).exit_code == 0
