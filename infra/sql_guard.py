"""What a SQL text does, for the chDB endpoint's access rules: one statement, its kind, risky calls.

Why the endpoint needs this at all: chDB runs ClickHouse in-process, so ClickHouse's own guards
do not all apply. chDB executes every statement of `SELECT 1; DROP TABLE t` (ClickHouse's HTTP
interface refuses multi-statements), it has no `user_files_path`, so `file('/etc/passwd')` reads
any file, and even with `readonly=1` it runs `INTO OUTFILE` and the `file()` function. The
tokenizer follows ClickHouse's lexer where it matters for safety (quotes with backslash or
doubled escapes, `--`, `# `/`#!` and nested `/* */` comments, `$tag$` heredocs): a text it
cannot read the same way ClickHouse does is refused, never let through.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

READ_KINDS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN"})
WRITE_KINDS = frozenset({
    "INSERT", "CREATE", "DROP", "ALTER", "TRUNCATE", "RENAME", "OPTIMIZE", "SYSTEM", "KILL",
    "GRANT", "REVOKE", "ATTACH", "DETACH", "DELETE", "UPDATE", "EXCHANGE", "UNDROP", "BACKUP",
    "RESTORE", "MOVE", "SET", "USE",
})
# Functions (table or scalar) that reach outside the database: files, network, other servers,
# programs, the host's Python. A read-only user may call none of them.
OUTSIDE_FUNCTIONS = frozenset(name.lower() for name in (
    "file", "fileCluster", "url", "urlCluster", "s3", "s3Cluster", "gcs", "oss", "cosn",
    "azureBlobStorage", "azureBlobStorageCluster", "hdfs", "hdfsCluster", "remote", "remoteSecure",
    "cluster", "clusterAllReplicas", "mysql", "postgresql", "sqlite", "odbc", "jdbc", "mongodb",
    "redis", "executable", "python", "input", "iceberg", "icebergS3", "icebergAzure", "icebergHDFS",
    "icebergLocal", "icebergCluster", "icebergS3Cluster", "deltaLake", "deltaLakeCluster", "deltaLakeLocal",
    "hudi", "hudiCluster", "paimon", "ytsaurus", "arrowFlight", "arrowflight", "dictionary", "loop",
))

# What matters for safety, found by one C-level search each (fast on megabytes of VALUES):
# quotes (backslash or doubled escapes), comments (`--`, `# `, `#!`, nested `/* */`), heredocs,
# words, `(` and `;`. Whatever lies between (spaces, numbers, operators) is skipped unread,
# except an unmatched quote, which makes the text unreadable.
_TOKEN = re.compile(r"""
    (?P<line>(?:--|\#[ !])[^\n]*)
  | (?P<block>/\*)
  | (?P<string>'(?:[^'\\]|\\.|'')*')
  | (?P<quoted>"(?:[^"\\]|\\.|"")*"|`(?:[^`\\]|\\.|``)*`)
  | (?P<heredoc>\$[A-Za-z0-9_]*\$)
  | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
  | (?P<punct>[(;])
""", re.DOTALL | re.VERBOSE)
_QUOTE = re.compile(r"['\"`]")
_COMMENT_MARK = re.compile(r"/\*|\*/")


@dataclass(frozen=True)
class Token:
    kind: str  # "word" (bare identifier or keyword), "quoted" (`x` or "x"), "string", "punct" (`(` or `;`)
    text: str


class UnreadableSql(ValueError):
    """The text is not one the guard reads the same way ClickHouse would (refuse it)."""


def _comment_end(sql: str, start: int) -> int:
    """Index after the (possibly nested, as in ClickHouse) /* ... */ comment starting at `start`."""
    depth = 0
    for mark in _COMMENT_MARK.finditer(sql, start):
        depth += 1 if mark.group() == "/*" else -1
        if depth == 0:
            return mark.end()
    raise UnreadableSql("unterminated comment")


def tokens(sql: str) -> Iterator[Token]:
    """The tokens of `sql` that matter for safety (comments, spaces, numbers, operators dropped)."""
    i = 0
    while (match := _TOKEN.search(sql, i)) is not None:
        if _QUOTE.search(sql, i, match.start()):  # a quote that never closes
            raise UnreadableSql("unterminated quoted text")
        kind, text = match.lastgroup or "other", match.group()
        i = match.end()
        if kind == "line":
            continue
        if kind == "block":
            i = _comment_end(sql, match.start())
        elif kind == "heredoc":
            close = sql.find(text, i)
            if close < 0:
                raise UnreadableSql("unterminated heredoc")
            yield Token("string", sql[i:close])
            i = close + len(text)
        elif kind in ("string", "quoted"):
            yield Token(kind, text[1:-1])
        else:
            yield Token(kind, text)
    if _QUOTE.search(sql, i):
        raise UnreadableSql("unterminated quoted text")


@dataclass(frozen=True)
class Statement:
    """What the guard knows about a SQL text."""

    kind: str  # first keyword, upper case ("" when none)
    statements: int
    writes_files: bool
    outside_calls: tuple[str, ...]

    @property
    def reads_only(self) -> bool:
        """Safe for a read-only user: one read statement, no files written, nothing outside reached."""
        return (self.statements == 1 and self.kind in READ_KINDS and not self.writes_files
                and not self.outside_calls)

    @property
    def writes(self) -> bool:
        return self.kind in WRITE_KINDS or self.writes_files or self.statements > 1


def inspect_sql(sql: str) -> Statement:
    """Statement count, kind, INTO OUTFILE and calls of outside-reaching functions; UnreadableSql."""
    toks = list(tokens(sql))
    statements, current = 0, 0
    semicolon, paren = Token("punct", ";"), Token("punct", "(")
    for tok in toks:
        if tok == semicolon:
            statements += current > 0
            current = 0
        else:
            current += 1
    statements += current > 0
    first = next((t for t in toks if t != paren), None)
    kind = first.text.upper() if first is not None and first.kind == "word" else ""
    words = [t.text.upper() if t.kind == "word" else "" for t in toks]
    writes_files = any(a == "INTO" and b == "OUTFILE" for a, b in zip(words, words[1:], strict=False))
    calls = tuple(
        t.text for t, nxt in zip(toks, toks[1:], strict=False)
        if t.kind in ("word", "quoted") and nxt == paren and t.text.lower() in OUTSIDE_FUNCTIONS
    )
    return Statement(kind, statements, writes_files, calls)
