"""User-facing errors: one line that says what went wrong and what to do."""

from __future__ import annotations


class JourneyError(Exception):
    """An error the CLI prints as one line (no traceback) before exiting non-zero."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
