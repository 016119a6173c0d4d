"""Versioned ClickHouse DDL, applied at start: each file once, in order, recorded in a table.

Files are `infra/migrations/NNNN_name.sql`: statements separated by a `;` at a line's end.
`{ttl_<table>}` placeholders become a TTL clause when JOURNEY_RETENTION_DAYS is set (empty
otherwise). Applying twice is a no-op, and every statement is itself `IF NOT EXISTS` or guarded
by a `-- skip-if: SELECT ...` line (skipped when that query answers non-zero: a copy or a swap
done before), so a half-applied run can be repeated.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from clickhouse_connect.driver import Client

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"  # the SQL stays in infra/migrations/
_TTL_COLUMN = {"touchpoints": "occurred_at", "incidents": "failed_at", "alerts": "at"}


def migration_files() -> list[Path]:
    return sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql"))


def render(sql: str, retention_days: int | None) -> str:
    """Fill the TTL placeholders."""
    def ttl(match: re.Match[str]) -> str:
        table = match.group(1)
        if not retention_days:
            return ""
        return f"TTL toDateTime({_TTL_COLUMN[table]}) + INTERVAL {int(retention_days)} DAY"
    return re.sub(r"\{ttl_(\w+)\}", ttl, sql)


def statements(sql: str) -> list[str]:
    """The statements of a migration file (split at a `;` that ends a line)."""
    return [part for part in re.split(r";\s*\n", sql) if part.strip() and not _only_comments(part)]


def _only_comments(part: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in part.splitlines())


def apply_sql(client: Client, sql: str) -> None:
    """Run one migration's statements, skipping those whose `-- skip-if:` query answers non-zero."""
    for statement in statements(sql):
        guard = re.match(r"\s*-- skip-if: (.+)\n", statement)
        if guard and client.command(guard.group(1)) not in (0, "0", None):
            continue
        client.command(statement)


def apply_migrations(client: Client, retention_days: int | None = None) -> list[str]:
    """Apply pending migrations; returns the names applied now."""
    client.command("CREATE DATABASE IF NOT EXISTS journey")
    client.command(
        "CREATE TABLE IF NOT EXISTS journey.schema_migrations "
        "(version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    done = {row[0] for row in client.query("SELECT version FROM journey.schema_migrations FINAL").result_rows}
    applied = []
    for path in migration_files():
        version = int(path.name[:4])
        if version in done:
            continue
        apply_sql(client, render(path.read_text(), retention_days))
        client.insert("journey.schema_migrations", [[version, path.stem]], column_names=["version", "name"])
        applied.append(path.stem)
        log.info("applied migration %s", path.stem)
    return applied
