"""The `journey` command line: one app, commands registered from small modules.

Each module under `infra.cli` exposes `register(app)`; `main()` turns every `JourneyError`
or configuration error into one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import sys

import typer

from infra.config import ConfigError
from infra.errors import JourneyError
from infra.escaping import terminal

app = typer.Typer(
    name="journey",
    help="Real-time service-journey tracker: touchpoints -> Kafka -> Faust -> incidents -> ClickHouse.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_all() -> None:
    # Imported lazily so `import infra.cli` stays cheap for tests that only need `main`.
    from infra import services
    from infra.cli import alert_cmds, bench_cmd, demo_cmd, events_cmds, report_cmds, schemas_cmd, stack_cmds

    services.register()
    for module in (stack_cmds, demo_cmd, events_cmds, alert_cmds, schemas_cmd, report_cmds, bench_cmd):
        module.register(app)


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
