"""The README's shell examples, run as written against a fresh default stack.

The rule (apply it to every README section):

- Every fenced block opened with ```bash runs, in the order of the README, each in its own
  `bash -e -o pipefail` from the repository root, with the project's venv first on PATH and a
  fresh `JOURNEY_HOME` and free `JOURNEY_*_PORT`s (so examples must use `$JOURNEY_HOME` and the
  port variables, e.g. `${JOURNEY_WEB_PORT:-8088}`, not `.journey/` or fixed ports).
- A block that runs `journey up` starts (and should stop) its own stack in a home of its own;
  any other block runs against one stack this test starts for them and stops at the end.
- A block whose first line starts with `# not run in tests:` followed by the reason is skipped
  (the demo, the test suite itself, examples that need outside services or secrets).
- Other fences (```sh, ```console, ```html, ```sql) are not run: use ```bash for what should.

A block passes when it exits 0 within BLOCK_TIMEOUT_S; a failure shows its output.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.own_stack import own_stack_env

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SKIP_MARK = "# not run in tests:"
BLOCK_TIMEOUT_S = 180
_FENCE = re.compile(r"^```bash[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)


def readme_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, body) of each ```bash block the rule says to run."""
    blocks = []
    for match in _FENCE.finditer(text):
        body = match.group(1)
        if body.lstrip().startswith(SKIP_MARK):
            continue
        blocks.append((text.count("\n", 0, match.start()) + 1, body))
    return blocks


def test_the_rule_finds_and_skips_blocks() -> None:
    text = ("intro\n```bash\necho one\n```\n```bash\n# not run in tests: needs a webhook\ncurl x\n```\n"
            "```sql\nSELECT 1\n```\n```bash\necho two\n```\n")
    assert readme_blocks(text) == [(2, "echo one\n"), (12, "echo two\n")]


def _env(home: Path) -> dict[str, str]:
    env = own_stack_env(home)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("VIRTUAL_ENV", None)
    return env


def _journey(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from infra.cli import main; main()", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def shared_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], dict[str, str]]]:
    """A fresh default stack (every service) for the blocks that do not start their own, started on first use."""
    env = _env(tmp_path_factory.mktemp("readme-shared"))
    started: list[bool] = []

    def ensure() -> dict[str, str]:
        if not started:
            up = _journey(env, "up", "-d")
            assert up.returncode == 0, up.stdout + up.stderr
            started.append(True)
        return env

    yield ensure
    if started:
        _journey(env, "down")


BLOCKS = readme_blocks((ROOT / "README.md").read_text(encoding="utf-8"))


@pytest.mark.parametrize(("line", "body"), BLOCKS, ids=[f"README.md:{line}" for line, _ in BLOCKS])
def test_readme_block_runs(line: int, body: str, shared_stack: Callable[[], dict[str, str]], tmp_path: Path) -> None:
    assert (ROOT / ".venv" / "bin" / "activate").exists() or "source .venv" not in body, \
        "the README's examples assume the venv at .venv (bash infra/dev.sh creates it)"
    own_stack = re.search(r"\bjourney up\b", body) is not None
    env = _env(tmp_path / "home") if own_stack else shared_stack()
    try:
        done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", body], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=BLOCK_TIMEOUT_S)
    finally:
        if own_stack:
            _journey(env, "down")  # also when the block failed before its own `journey down`
    output = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"README.md:{line} exited {done.returncode}\n{output}"
