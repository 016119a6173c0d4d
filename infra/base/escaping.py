"""Escaping where text leaves the system: Slack mrkdwn, log lines, terminals.

Customer, journey and store ids come from outside (a web shop's page, a POS, a webhook):
anything they contain must reach Slack as text (not `<!channel>` or a link), a log as one line
(no forged records), and a terminal without its control sequences running.
"""

from __future__ import annotations

import logging
import re

from schemas.contract import CONTROL_CHARACTERS as _CONTROL


def _escape_control(match: re.Match[str]) -> str:
    char = match.group()
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char)
    if named:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def control_escaped(text: str) -> str:
    """`text` with control characters (C0, DEL, C1, line/paragraph separators) shown as escapes."""
    return _CONTROL.sub(_escape_control, text)


def one_line(text: object, limit: int | None = None) -> str:
    """`text` for a log record: control characters escaped (one line), optionally cut to `limit`."""
    value = control_escaped(str(text))
    return value if limit is None or len(value) <= limit else value[:limit] + "..."


def terminal(text: str) -> str:
    """`text` safe to print on a terminal: escape sequences and other controls shown escaped."""
    return control_escaped(text)


def slack(text: str) -> str:
    """`text` as literal Slack mrkdwn: `&`, `<`, `>` escaped (Slack's own rule), controls escaped."""
    return control_escaped(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class OneLineFormatter(logging.Formatter):
    """A log formatter that keeps each record's message on one line (tracebacks stay as they are)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        record.message = control_escaped(record.message)
        return super().formatMessage(record)


def escape_log_lines() -> None:
    """Give the root logger's handlers (as `logging.basicConfig` made them) the one-line formatter."""
    for handler in logging.getLogger().handlers:
        old = handler.formatter
        handler.setFormatter(OneLineFormatter(old._fmt if old else None, old.datefmt if old else None))
