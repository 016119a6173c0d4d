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

_BARE = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_HEREDOC = re.compile(r"\$([A-Za-z0-9_]*)\$")


@dataclass(frozen=True)
class Token:
    kind: str  # "word" (bare identifier or keyword), "quoted" (`x` or "x"), "string", "punct", "other"
    text: str


class UnreadableSql(ValueError):
    """The text is not one the guard reads the same way ClickHouse would (refuse it)."""


def _quoted_end(sql: str, start: int) -> int:
    """Index after the closing quote of the quoted run starting at `start` (backslash or doubled escapes)."""
    quote, i = sql[start], start + 1
    while i < len(sql):
        ch = sql[i]
        if ch == "\\":
            i += 2
            continue
        if ch == quote:
            if i + 1 < len(sql) and sql[i + 1] == quote:
                i += 2
                continue
            return i + 1
        i += 1
    raise UnreadableSql("unterminated quoted text")


def _comment_end(sql: str, start: int) -> int:
    """Index after a (possibly nested) /* ... */ comment starting at `start`."""
    depth, i = 0, start
    while i < len(sql):
        if sql.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif sql.startswith("*/", i):
            depth, i = depth - 1, i + 2
            if depth == 0:
                return i
        else:
            i += 1
    raise UnreadableSql("unterminated comment")


def tokens(sql: str) -> Iterator[Token]:
    """The significant tokens of `sql` (comments and whitespace dropped)."""
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch.isspace():
            i += 1
        elif sql.startswith("--", i) or (ch == "#" and sql[i + 1:i + 2] in (" ", "!")):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif sql.startswith("/*", i):
            i = _comment_end(sql, i)
        elif ch in "'\"`":
            end = _quoted_end(sql, i)
            yield Token("string" if ch == "'" else "quoted", sql[i + 1:end - 1])
            i = end
        elif ch == "$" and (match := _HEREDOC.match(sql, i)):
            close = sql.find(match.group(0), match.end())
            if close < 0:
                raise UnreadableSql("unterminated heredoc")
            yield Token("string", sql[match.end():close])
            i = close + len(match.group(0))
        elif match := _BARE.match(sql, i):
            yield Token("word", match.group(0))
            i = match.end()
        elif ch in "();,.":
            yield Token("punct", ch)
            i += 1
        else:
            yield Token("other", ch)
            i += 1


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
    for tok in toks:
        if tok == Token("punct", ";"):
            statements += current > 0
            current = 0
        else:
            current += 1
    statements += current > 0
    first = next((t for t in toks if t != Token("punct", "(")), None)
    kind = first.text.upper() if first is not None and first.kind == "word" else ""
    words = [t.text.upper() if t.kind == "word" else "" for t in toks]
    writes_files = any(a == "INTO" and b == "OUTFILE" for a, b in zip(words, words[1:], strict=False))
    calls = tuple(
        t.text for t, nxt in zip(toks, toks[1:], strict=False)
        if t.kind in ("word", "quoted") and nxt == Token("punct", "(") and t.text.lower() in OUTSIDE_FUNCTIONS
    )
    return Statement(kind, statements, writes_files, calls)
