"""Escaping where text leaves the system: Slack mrkdwn, log lines, terminals.

Customer, journey and store ids come from outside (a web shop's page, a POS, a webhook):
anything they contain must reach Slack as text (not `<!channel>` or a link), a log as one line
(no forged records), and a terminal without its control sequences running.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


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


def has_control(text: str) -> bool:
    """True when `text` holds a control character (refused in ids)."""
    return _CONTROL.search(text) is not None
