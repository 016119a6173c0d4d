"""The `journey` command line: one app, commands registered from small modules.

Each module under `infra.cli` exposes `register(app)`; `main()` turns every `JourneyError`
or configuration error into one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import Any

import click
import typer

from infra.base.config import ConfigError
from infra.base.errors import JourneyError
from infra.base.escaping import terminal

app = typer.Typer(
    name="journey",
    help="Real-time service-journey tracker: touchpoints -> Kafka -> Faust -> incidents -> ClickHouse.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_all() -> None:
    # Imported lazily so `import infra.cli` stays cheap for tests that only need `main`.
    from infra.cli import (
        alert_cmds,
        bench_cmd,
        demo_cmd,
        events_cmds,
        import_cmd,
        report_cmds,
        schemas_cmd,
        stack_cmds,
    )
    from infra.local import services

    services.register()
    for module in (stack_cmds, demo_cmd, events_cmds, import_cmd, alert_cmds, schemas_cmd, report_cmds, bench_cmd):
        module.register(app)
    _reflow_help(app)
    _readable_help_types()


def reflow(text: str) -> str:
    """A docstring as help: paragraphs kept, the line breaks inside each one dropped."""
    return "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(text).split("\n\n"))


def _reflow_help(typer_app: typer.Typer) -> None:
    # typer 0.29 keeps a docstring's line breaks after its first paragraph: help reads as ragged lines.
    for info in typer_app.registered_commands:
        text = info.help or (info.callback.__doc__ if info.callback else None)
        if text:
            info.help = reflow(text)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _reflow_help(group.typer_instance)


def _readable_help_types() -> None:
    """Help shows flags bare and value types in words (typer 0.29 prints `<bool>`, `<str>`, `<list[str]>`)."""
    from typer.core import TyperArgument, TyperOption

    for cls in (TyperOption, TyperArgument):
        if not getattr(cls.display_type_rich, "journey", False):
            cls.display_type_rich = _words_for(cls.display_type_rich)  # type: ignore[method-assign]


_Display = Callable[[Any, click.Context], str | None]


def _words_for(shown_by_typer: _Display) -> _Display:
    def display_type_rich(self: Any, ctx: click.Context) -> str | None:
        if getattr(self, "is_flag", False):
            return None
        shown = shown_by_typer(self, ctx)
        if shown and shown.startswith("<") and shown.endswith(">"):
            inner = shown[1:-1]
            if inner.startswith("list[") and inner.endswith("]"):
                return f"{_WORDS.get(inner[5:-1], inner[5:-1].upper())} (repeatable)"
            return _WORDS.get(inner, inner.upper())
        return shown

    display_type_rich.journey = True  # type: ignore[attr-defined]
    return display_type_rich


_WORDS = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "Path": "PATH", "path": "PATH"}


def table(*headers: str, **options: Any) -> Any:
    """A rich Table whose cells wrap long values instead of cutting them with an ellipsis."""
    from rich.table import Table

    made = Table(*headers, **options)
    for column in made.columns:
        column.overflow = "fold"
    return made


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `journey` console script."""
    _register_all()
    try:
        # standalone_mode=False returns a command's typer.Exit code instead of raising it
        code = app(args=argv, standalone_mode=False)
    except JourneyError as exc:
        typer.echo(f"journey: error: {terminal(str(exc))}", err=True)  # one line, whatever an id held
        sys.exit(exc.exit_code)
    except ConfigError as exc:
        typer.echo(f"journey: configuration error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("journey: interrupted", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("journey: aborted", err=True)
        sys.exit(1)
    except Exception as exc:
        # Usage errors (bad option, unknown command) arrive here in standalone_mode=False;
        # typer carries its own copy of click's exception classes, so match by behaviour.
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    sys.exit(code if isinstance(code, int) else 0)
