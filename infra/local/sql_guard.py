"""What a statement may do, judged on ClickHouse's own parse of it, against allow-lists.

Why the endpoint needs this at all: chDB runs ClickHouse in-process without its access control,
so `readonly` does not stop `file()`, `filesystem()`, `INTO OUTFILE` or settings that read or
write files. The endpoint therefore asks the engine to parse each statement (the JSON AST of
`parseQueryToJSON`, or `EXPLAIN AST` for the few read statements that have no JSON form) and
judges that tree here, never the text:

- everyone: one statement (the parser refuses more), and no `INTO OUTFILE` (ClickHouse's HTTP
  server refuses it too);
- a read-only user: SELECT / SHOW / DESCRIBE / EXISTS / EXPLAIN of a SELECT (and SET / USE of a
  session); table functions from `READONLY_TABLE_FUNCTIONS`; settings (SETTINGS clauses, URL
  parameters, SET) from `READONLY_SETTINGS`, capped by the server (`Caps`) — so no format reads a
  schema or template file (those settings are not on the list); no scalar function that shares
  its name with a refused table function (`file('/etc/passwd')` reads a file as a string) or
  belongs to an engine category that reaches outside (`OUTSIDE_CATEGORIES`); system tables from
  `READONLY_SYSTEM_TABLES` only (the catalog BI tools reflect, not other users' queries);
- the admin (the pipeline: sink, migrations, CLI): the statements, table functions, table and
  database engines, query and table settings the pipeline needs (`ADMIN_*`), and no dictionary
  (its sources read files and URLs) — the admin's password travels to every pipeline process;
- everyone: the ClickHouse dialect only (the guard judges ClickHouse's parse; PRQL is not in this
  build), refused with ClickHouse's own error.

Everything is an allow-list: a table function or setting a new chDB version adds is refused for
read-only users until it is added here. Pure functions over the parser's output (no I/O); the
engine side lives in `infra.local.clickhouse_server`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

# Table functions a read-only user may call: they make rows from their arguments and touch
# nothing else (no file, network, other engine, other table, `eval`).
READONLY_TABLE_FUNCTIONS = frozenset({
    "numbers", "numbers_mt", "zeros", "zeros_mt", "generateSeries", "generate_series", "values",
    "SQLStandardValues", "null", "primes", "generateRandom", "format",
})

# Settings a read-only user may set (URL parameter, SET, SETTINGS clause): output shape, limits,
# query semantics. Nothing that names a file, a URL, a schema, a parser or an experimental feature.
READONLY_SETTINGS = frozenset({
    # limits (those in `Caps` are also capped)
    "max_execution_time", "max_memory_usage", "max_result_rows", "max_result_bytes", "max_threads",
    "result_overflow_mode", "max_rows_to_read", "max_bytes_to_read", "read_overflow_mode",
    "max_rows_to_group_by", "group_by_overflow_mode", "max_rows_to_sort", "max_bytes_to_sort",
    "sort_overflow_mode", "max_rows_in_join", "max_bytes_in_join", "join_overflow_mode",
    "max_rows_in_distinct", "distinct_overflow_mode", "timeout_overflow_mode", "max_block_size",
    # query semantics
    "join_use_nulls", "extremes", "totals_mode", "aggregate_functions_null_for_empty",
    "prefer_column_name_to_alias", "group_by_use_nulls", "union_default_mode", "final",
    "session_timezone", "cast_keep_nullable", "count_distinct_implementation",
    "joined_subquery_requires_alias", "date_time_input_format", "use_query_cache",
    "cast_string_to_dynamic_use_inference",  # clickhouse-connect sends it (with date_time_input_format)
    # output
    "date_time_output_format", "output_format_json_quote_64bit_integers",
    "output_format_json_quote_64bit_floats", "output_format_json_quote_denormals",
    "output_format_json_quote_decimals", "output_format_json_escape_forward_slashes",
    "output_format_json_named_tuples_as_objects", "output_format_json_array_of_rows",
    "output_format_json_validate_utf8", "output_format_write_statistics",
    "output_format_decimal_trailing_zeros", "output_format_arrow_string_as_string",
    "output_format_arrow_fixed_string_as_fixed_byte_array",
    "output_format_arrow_low_cardinality_as_dictionary", "output_format_arrow_compression_method",
    "output_format_parquet_string_as_string", "output_format_parquet_compression_method",
    "output_format_parquet_row_group_size", "output_format_parquet_version",
    "output_format_orc_string_as_string", "output_format_csv_crlf_end_of_line",
    "output_format_tsv_crlf_end_of_line", "output_format_pretty_max_rows",
    "output_format_pretty_max_column_pad_width", "output_format_pretty_max_value_width",
    "output_format_pretty_color", "output_format_pretty_grid_charset",
    "output_format_native_encode_types_in_binary_format", "output_format_native_write_json_as_string",
    "output_format_binary_encode_types_in_binary_format", "output_format_binary_write_json_as_string",
    "format_csv_delimiter", "format_csv_allow_single_quotes", "format_csv_allow_double_quotes",
    "format_tsv_null_representation", "format_csv_null_representation",
    # HTTP transport knobs clients send as settings
    "send_progress_in_http_headers", "http_headers_progress_interval_ms", "enable_http_compression",
    "cancel_http_readonly_queries_on_client_close", "http_zlib_compression_level",
})

# System tables a read-only user may read: the catalog BI tools reflect (clickhouse-connect's
# SQLAlchemy dialect, Superset) and engine facts. Not processes, query logs, mutations (other users'
# statements, customer ids in a DELETE), parts, disks or server settings (paths, configuration).
READONLY_SYSTEM_TABLES = frozenset({
    "one", "numbers", "numbers_mt", "zeros", "zeros_mt", "primes",
    "databases", "tables", "columns", "data_skipping_indices", "functions", "table_functions",
    "aggregate_function_combinators", "data_type_families", "formats", "settings", "time_zones", "collations",
    "keywords", "table_engines", "database_engines", "build_options", "contributors", "licenses",
})

# What the admin login — held by the sink, the migrations and the CLI — may run: statements,
# table functions (`input` carries the sink's fast-path data), engines, settings.
ADMIN_KINDS = frozenset({
    "InsertQuery", "InsertQuery (not plain)", "CreateQuery", "DropQuery", "AlterQuery", "DeleteQuery",
    "UpdateQuery", "OptimizeQuery", "RenameQuery", "SystemQuery", "ShowProcesslistQuery",
    "ShowProcesslistQuery (not plain)",
})
ADMIN_SYSTEM_COMMANDS = frozenset({"STOP_MERGES", "START_MERGES", "FLUSH_LOGS"})
ADMIN_TABLE_FUNCTIONS = READONLY_TABLE_FUNCTIONS | {"input"}
ADMIN_TABLE_ENGINES = frozenset({
    "MergeTree", "ReplacingMergeTree", "SummingMergeTree", "AggregatingMergeTree", "CollapsingMergeTree",
    "VersionedCollapsingMergeTree", "Memory", "Null", "Log", "TinyLog", "StripeLog", "Set", "Join", "Buffer",
})
ADMIN_DATABASE_ENGINES = frozenset({"Atomic", "Memory"})
ADMIN_SETTINGS = READONLY_SETTINGS | {
    "mutations_sync", "lightweight_deletes_sync", "alter_sync", "optimize_throw_if_noop",
    "insert_deduplicate", "insert_deduplication_token", "async_insert", "wait_for_async_insert",
    "max_insert_block_size", "min_insert_block_size_rows", "min_insert_block_size_bytes",
    "max_partitions_per_insert_block", "throw_on_max_partitions_per_insert_block",
    "input_format_null_as_default", "input_format_skip_unknown_fields", "input_format_defaults_for_omitted_fields",
    "input_format_allow_errors_num", "input_format_allow_errors_ratio", "max_query_size", "max_ast_elements",
    "max_expanded_ast_elements", "max_parser_depth", "dialect",  # dialect: ClickHouse's only (check_dialect)
    "lightweight_delete_mode",
}
# Table-level settings of CREATE TABLE / ALTER MODIFY SETTING (MergeTree's): none names a disk, path or host.
ADMIN_TABLE_SETTINGS = frozenset({
    "enable_block_number_column", "enable_block_offset_column",  # lightweight DELETE as patch parts
    "index_granularity", "index_granularity_bytes", "non_replicated_deduplication_window", "ttl_only_drop_parts",
    "merge_with_ttl_timeout", "min_bytes_for_wide_part", "min_rows_for_wide_part", "allow_nullable_key",
    "deduplicate_merge_projection_mode", "lightweight_mutation_projection_mode", "min_age_to_force_merge_seconds",
})

# Engine function categories (system.functions.categories) whose functions reach outside the
# database or load files (LLM calls, model files, the binary's own debug info).
OUTSIDE_CATEGORIES = frozenset({"AI", "Machine Learning", "Introspection"})

READONLY_ROOTS = frozenset({
    "SelectWithUnionQuery", "SelectIntersectExceptQuery", "SelectQuery", "ShowTablesQuery",
    "ShowColumnsQuery", "ShowIndexesQuery", "ExplainQuery", "SetQuery", "UseQuery", "KillQueryQuery",
})
SELECT_ROOTS = frozenset({"SelectWithUnionQuery", "SelectIntersectExceptQuery", "SelectQuery"})

# Read statements whose AST has no JSON form: judged on `EXPLAIN AST`, in their plain shape only
# (a table by name, optionally a FORMAT); anything else in them (a subquery, a function, a
# SETTINGS clause, INTO OUTFILE) makes the text not match and the statement is refused.
_PLAIN_EXPLAIN_AST = re.compile(
    r"(?:DescribeQuery \(children [12]\)\n TableExpression \(children 1\)\n  TableIdentifier [\w.]+\n"
    r"|(?:ExistsTableQuery|ExistsDatabaseQuery|ExistsViewQuery|ExistsDictionaryQuery"
    r"|ShowCreateTableQuery|ShowCreateDatabaseQuery|ShowCreateViewQuery) [\w ]+ \(children [1-3]\)\n"
    r"(?: Identifier \w+\n){1,2})"
    r"(?: Identifier \w+\n)?"
)


class Refused(Exception):
    """A statement or setting the user may not run: ClickHouse's code, name and message."""

    def __init__(self, code: int, name: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.name = name


def readonly_refusal(user: str, what: str) -> Refused:
    return Refused(164, "READONLY", f"{user}: Cannot execute query in readonly mode: {what}. (READONLY)")


@dataclass(frozen=True)
class Caps:
    """Server-side ceilings on a read-only user's resources (ClickHouse's settings constraints)."""

    max_execution_time: int = 60
    max_memory_usage: int = 2 * 1024**3
    max_result_rows: int = 1_000_000
    max_threads: int = 1
    max_cpus: float = 0.5  # the read-only workload's max_cpus (inert without CPU preemption, as in chDB 26.9)

    def as_settings(self) -> dict[str, int]:
        return {"max_execution_time": self.max_execution_time, "max_memory_usage": self.max_memory_usage,
                "max_result_rows": self.max_result_rows, "max_threads": self.max_threads}


@dataclass(frozen=True)
class Catalog:
    """What the engine offers, read from its system tables once at start."""

    table_functions: frozenset[str]  # lower case
    outside_functions: frozenset[str]  # lower case: scalar functions in OUTSIDE_CATEGORIES
    settings: frozenset[str] = field(default_factory=frozenset)

    @property
    def refused_scalar_names(self) -> frozenset[str]:
        allowed = {n.lower() for n in READONLY_TABLE_FUNCTIONS}
        return frozenset(self.table_functions - allowed) | self.outside_functions


CATALOG_QUERIES = {
    "table_functions": "SELECT lower(name) FROM system.table_functions",
    "outside_functions": "SELECT lower(name) FROM system.functions WHERE hasAny(splitByString(', ', categories), "
                         + "[" + ", ".join(f"'{c}'" for c in sorted(OUTSIDE_CATEGORIES)) + "])",
    "settings": "SELECT name FROM system.settings",
}


@dataclass
class Statement:
    """What the parser says a statement contains."""

    kind: str  # the root node's type, e.g. SelectWithUnionQuery, InsertQuery, DescribeQuery
    table_functions: list[str] = field(default_factory=list)
    functions: list[str] = field(default_factory=list)
    settings: list[tuple[str, Any]] = field(default_factory=list)  # every SETTINGS clause / SET
    tables: list[tuple[str, ...]] = field(default_factory=list)  # name parts of every table (or db.x) named
    engines: list[tuple[str, str]] = field(default_factory=list)  # (kind, name): TABLE_ENGINE, DATABASE_ENGINE
    table_settings: list[str] = field(default_factory=list)  # SETTINGS of a CREATE TABLE's storage
    into_outfile: bool = False
    explained_kind: str | None = None  # EXPLAIN: the root type of the statement explained
    ast: dict[str, Any] | None = None


def from_json_ast(text: str) -> Statement:
    """A Statement from `parseQueryToJSON`'s output."""
    tree = json.loads(text)
    found = Statement(kind=str(tree.get("type", "")), ast=tree)
    if found.kind == "ExplainQuery":
        inner = tree.get("query")
        found.explained_kind = inner.get("type") if isinstance(inner, dict) else None
    for key, node in _walk(tree, None):
        kind = node.get("type")
        if kind == "Function" and isinstance(node.get("name"), str):
            if node.get("kind") in ("TABLE_ENGINE", "DATABASE_ENGINE"):
                found.engines.append((node["kind"], node["name"]))
            else:
                (found.table_functions if key == "table_function" else found.functions).append(node["name"])
        elif kind in ("TableIdentifier", "Identifier") and isinstance(node.get("name"), str):
            parts = node.get("name_parts")
            if kind == "TableIdentifier" or (isinstance(parts, list) and len(parts) == 2):
                found.tables.append(tuple(parts) if isinstance(parts, list) else (node["name"],))
        elif kind == "SetQuery" and key == "storage_settings":
            found.table_settings.extend(c.get("name", "") for c in node.get("changes", []))
        elif kind == "SetQuery" and key != "explain_options":
            changes = node.get("changes", [])
            found.settings.extend((c.get("name", ""), (c.get("value") or {}).get("value")) for c in changes)
        if "out_file" in node:
            found.into_outfile = True
    return found


def _walk(node: Any, key: str | None) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """Every dict node of the tree with the key it hangs under (an EXPLAIN's own options marked)."""
    stack: list[tuple[str | None, Any]] = [(key, node)]
    while stack:
        key, node = stack.pop()
        if isinstance(node, dict):
            yield key, node
            # EXPLAIN's `settings` are its options (header=1, indexes=1); a storage's are the table's
            renamed = {"ExplainQuery": "explain_options", "Storage": "storage_settings"}.get(node.get("type", ""))
            for child_key, child in node.items():
                if renamed and child_key == "settings" or child_key == "settings_changes":  # ALTER MODIFY SETTING
                    child_key = renamed or "storage_settings"
                stack.append((child_key, child))
        elif isinstance(node, list):
            stack.extend((key, item) for item in node)


def from_explain_ast(text: str) -> Statement:
    """A Statement from `EXPLAIN AST` text, for read statements without a JSON form.

    Only the plain shapes match (see `_PLAIN_EXPLAIN_AST`); anything else is a statement the
    guard does not understand, and refusing it is the safe answer.
    """
    first = text.split(" ", 1)[0].split("\n", 1)[0]
    plain = _PLAIN_EXPLAIN_AST.fullmatch(text) is not None
    return Statement(kind=first if plain else f"{first} (not plain)")


_OUTPUT_ROOTS = ("SelectWithUnionQuery", "SelectIntersectExceptQuery", "DescribeQuery", "ShowTablesQuery",
                 "Explain", "Exists", "ShowCreate", "ShowProcesslist")


def outfile_in_explain_ast(text: str) -> bool:
    """INTO OUTFILE in `EXPLAIN AST` text: a literal directly under a query-with-output root."""
    lines = text.splitlines()
    return bool(lines) and lines[0].startswith(_OUTPUT_ROOTS) and any(ln.startswith(" Literal ") for ln in lines[1:])


def check_everyone(statement: Statement) -> None:
    """What nobody may run over HTTP: INTO OUTFILE (ClickHouse's HTTP server refuses it too)."""
    if statement.into_outfile:
        raise Refused(358, "INTO_OUTFILE_NOT_ALLOWED",
                      "INTO OUTFILE is not allowed (the server's files are not the client's). "
                      "(INTO_OUTFILE_NOT_ALLOWED)")


def check_readonly(statement: Statement, user: str, catalog: Catalog, caps: Caps) -> None:
    """Raise Refused unless a read-only user may run `statement` (see the module docstring)."""
    check_everyone(statement)
    kind = statement.kind
    if kind not in READONLY_ROOTS and kind not in _PLAIN_KINDS:
        raise readonly_refusal(user, f"{_describe(kind)} is not a read")
    if kind == "ExplainQuery" and statement.explained_kind not in SELECT_ROOTS:
        raise readonly_refusal(user, f"EXPLAIN of {_describe(statement.explained_kind or '')} is not a read")
    for name in statement.table_functions:
        if name not in READONLY_TABLE_FUNCTIONS:
            raise readonly_refusal(user, f"table function {name}() is not allowed for read-only users")
    refused = catalog.refused_scalar_names
    for name in statement.functions:
        if name.lower() in refused:
            raise readonly_refusal(user, f"function {name}() reaches outside the database")
    for parts in statement.tables:
        if len(parts) == 2 and parts[0].lower() == "system" and parts[1] not in READONLY_SYSTEM_TABLES:
            raise readonly_refusal(user, f"table system.{parts[1]} is not open to read-only users")
    if kind == "UseQuery" and str(((statement.ast or {}).get("database") or {}).get("name", "")).lower() == "system":
        raise readonly_refusal(user, "USE system is not open to read-only users (name system tables in full)")
    check_settings(statement.settings, user, caps)


def check_admin(statement: Statement, user: str, catalog: Catalog) -> None:
    """Raise Refused unless the admin (the pipeline's login) may run `statement`."""
    check_everyone(statement)
    kind = statement.kind
    if kind not in READONLY_ROOTS and kind not in READ_KINDS and kind not in ADMIN_KINDS:
        raise admin_refusal(user, f"{_describe(kind)} is not on the pipeline's list of statements")
    tree = statement.ast or {}
    if kind == "SystemQuery" and tree.get("query_type") not in ADMIN_SYSTEM_COMMANDS:
        raise admin_refusal(user, f"SYSTEM {tree.get('query_type')} is not on the pipeline's list of statements")
    if kind == "CreateQuery" and tree.get("is_dictionary"):
        raise admin_refusal(user, "dictionaries are not on the pipeline's list (their sources read files and URLs)")
    for name in statement.table_functions:
        if name not in ADMIN_TABLE_FUNCTIONS:
            raise admin_refusal(user, f"table function {name}() is not on the pipeline's list")
    refused = catalog.refused_scalar_names - {"input"}
    for name in statement.functions:
        if name.lower() in refused:
            raise admin_refusal(user, f"function {name}() reaches outside the database")
    for engine_kind, name in statement.engines:
        allowed = ADMIN_TABLE_ENGINES if engine_kind == "TABLE_ENGINE" else ADMIN_DATABASE_ENGINES
        if name not in allowed:
            raise admin_refusal(user, f"engine {name} is not on the pipeline's list")
    for name in statement.table_settings:
        if name not in ADMIN_TABLE_SETTINGS:
            raise admin_refusal(user, f"table setting {name} is not on the pipeline's list")
    check_admin_settings(statement.settings, user)


def check_admin_settings(settings: list[tuple[str, Any]] | Mapping[str, Any], user: str) -> None:
    """Each setting on the admin's allow-list, and the ClickHouse dialect only."""
    items = list(settings.items() if isinstance(settings, Mapping) else settings)
    for name, _value in items:
        if name not in ADMIN_SETTINGS:
            raise admin_refusal(user, f"setting {name} is not on the pipeline's list")
    check_dialect(items)


def check_dialect(settings: list[tuple[str, Any]]) -> None:
    """Only ClickHouse SQL: the guard judges ClickHouse's parse, and this chDB has no PRQL (no Rust)."""
    for name, value in settings:
        if name == "dialect" and str(value).lower() != "clickhouse":
            what = ("PRQL is not available. Rust code or PRQL itself may be disabled. Use another dialect!"
                    if str(value).lower() == "prql" else
                    f"Dialect {str(value)[:40]!r} is not available here: this endpoint runs ClickHouse SQL only.")
            raise Refused(344, "SUPPORT_IS_DISABLED", f"{what} (SUPPORT_IS_DISABLED)")


def admin_refusal(user: str, what: str) -> Refused:
    return Refused(497, "ACCESS_DENIED", f"{user}: Not enough privileges: {what}. (ACCESS_DENIED)")


_PLAIN_KINDS = frozenset({
    "DescribeQuery", "ExistsTableQuery", "ExistsDatabaseQuery", "ExistsViewQuery", "ExistsDictionaryQuery",
    "ShowCreateTableQuery", "ShowCreateDatabaseQuery", "ShowCreateViewQuery",
})
# What GET may run for anyone (ClickHouse: GET implies readonly): reads, in whatever shape.
READ_KINDS = (READONLY_ROOTS - {"KillQueryQuery"}) | _PLAIN_KINDS | {
    f"{kind} (not plain)" for kind in _PLAIN_KINDS} | {"ShowProcesslistQuery", "ShowProcesslistQuery (not plain)"}


def _describe(kind: str) -> str:
    names = {"InsertQuery": "INSERT", "CreateQuery": "CREATE", "DropQuery": "DROP", "AlterQuery": "ALTER",
             "SystemQuery": "SYSTEM", "OptimizeQuery": "OPTIMIZE", "RenameQuery": "RENAME"}
    return names.get(kind, kind or "this statement")


def check_settings(settings: list[tuple[str, Any]] | Mapping[str, Any], user: str, caps: Caps) -> None:
    """Each setting on the read-only allow-list, and within the server's caps."""
    items = settings.items() if isinstance(settings, Mapping) else settings
    ceilings = caps.as_settings()
    for name, value in items:
        if name not in READONLY_SETTINGS:
            raise readonly_refusal(user, f"setting {name} is not allowed for read-only users")
        if name in ceilings:
            limit = ceilings[name]
            try:
                number = int(str(value))
            except ValueError:
                number = -1
            if not 0 < number <= limit:
                raise Refused(
                    452, "SETTING_CONSTRAINT_VIOLATION",
                    f"Setting {name} shouldn't be greater than {limit} (nor 0, which means no limit). "
                    "(SETTING_CONSTRAINT_VIOLATION)",
                )


def kill_query_ids(statement: Statement) -> list[str] | None:
    """The query ids of `KILL QUERY WHERE query_id = '..'` (or `IN (...)`); None for another WHERE."""
    tree = statement.ast or {}
    where = tree.get("where_expression")
    if statement.kind != "KillQueryQuery" or not isinstance(where, dict) or tree.get("kill_type") != "Query":
        return None
    args = (where.get("arguments") or {}).get("children") or []
    query_id = {"type": "Identifier", "name": "query_id"}
    if where.get("name") not in ("equals", "in") or len(args) != 2 or args[0] != query_id:
        return None
    value = args[1]
    literals = [value] if value.get("type") == "Literal" else \
        ((value.get("arguments") or {}).get("children") or []) if value.get("name") == "tuple" else []
    ids = [lit.get("value", {}).get("value") for lit in literals if lit.get("type") == "Literal"]
    if not ids or not all(isinstance(i, str) for i in ids):
        return None
    return ids
