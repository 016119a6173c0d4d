"""The dependency arrows between our packages point one way (issue #18's infra split).

- infra.base (config, clients, secrets) imports nothing of ours but `schemas` and itself;
- infra.local (dev servers, supervisor) imports no CLI;
- streams, consumers and schemas import neither the local stack nor the CLI;
- every module of infra/ lives in one of its three packages.
Imports are read with `ast`, function-level ones included: a lazy import is still an arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports (relative imports resolved against its package)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from infra import stack`
    return found


def ours(path: Path) -> set[str]:
    return {m for m in imports_of(path) if m.split(".")[0] in ("infra", "streams", "consumers", "schemas")}


def modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def offending(folder: str, allowed: tuple[str, ...] = (), refused: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Modules under `folder` importing outside `allowed` (when given) or anything in `refused`."""
    bad: dict[str, list[str]] = {}
    for path in modules(folder):
        wrong = sorted(m for m in ours(path)
                       if (allowed and not any(m == a or m.startswith(a + ".") for a in allowed))
                       or any(m == r or m.startswith(r + ".") for r in refused))
        if wrong:
            bad[str(path.relative_to(ROOT))] = wrong
    return bad


def test_the_shared_base_imports_nothing_of_ours_but_schemas() -> None:
    assert modules("infra/base")
    assert offending("infra/base", allowed=("schemas", "infra.base")) == {}


def test_the_local_stack_never_imports_the_cli() -> None:
    assert modules("infra/local")
    assert offending("infra/local", refused=("infra.cli",)) == {}


def test_the_pipeline_imports_neither_the_local_stack_nor_the_cli() -> None:
    for folder in ("streams", "consumers", "schemas"):
        assert offending(folder, refused=("infra.local", "infra.cli")) == {}, folder
    assert offending("schemas", refused=("infra",)) == {}


def test_every_infra_module_is_in_one_of_the_three_packages() -> None:
    loose = sorted(p.name for p in (ROOT / "infra").glob("*.py") if p.name != "__init__.py")
    assert loose == []
    assert {p.name for p in (ROOT / "infra").iterdir() if (p / "__init__.py").is_file()} == {"base", "local", "cli"}
