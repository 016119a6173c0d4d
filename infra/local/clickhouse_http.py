"""Pure request shaping for the chDB HTTP endpoint: parse what a ClickHouse HTTP client sends.

No I/O here (tested in tests/unit/test_clickhouse_http.py); `infra.local.clickhouse_server` executes.
"""

from __future__ import annotations

import base64
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

VERSION = "26.9.2.1"

# URL parameters that belong to the HTTP interface itself, not to query settings.
TRANSPORT_PARAMS = frozenset({
    "query", "database", "default_format", "user", "password", "quota_key", "query_id",
    "session_id", "session_timeout", "session_check", "compress", "decompress", "buffer_size",
    "wait_end_of_query", "client_protocol_version", "role", "enable_http_compression",
    "send_progress_in_http_headers", "http_headers_progress_interval_ms", "http_zlib_compression_level",
    "readonly",
})

_FORMAT_AT_END = re.compile(r"\bFORMAT\s+([A-Za-z0-9_]+)\s*;?\s*$", re.IGNORECASE)
_INSERT_FORMAT = re.compile(
    r"^\s*INSERT\s+INTO\s+(?P<target>.+?)\s+FORMAT\s+(?P<fmt>[A-Za-z0-9_]+)[ \t]*\r?\n?",
    re.IGNORECASE | re.DOTALL,
)
# `INSERT ... SELECT ... FROM input('structure') ... FORMAT X` reads its data from the body.
_INPUT_CALL = re.compile(r"\binput\s*\(\s*('(?:[^'\\]|\\.)*')\s*\)", re.IGNORECASE)
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# ClickHouse's HTTP status for an exception code (HTTPHandler's exceptionCodeToHTTPStatus).
_STATUS_BY_CODE = {
    194: 401,  # REQUIRED_PASSWORD
    307: 413,  # TOO_MANY_BYTES (request body)
    452: 400, 358: 400, 216: 400, 372: 404, 373: 400,  # setting constraint, outfile, query id, sessions
    497: 403,  # ACCESS_DENIED
    192: 403, 193: 403, 516: 403,  # UNKNOWN_USER, WRONG_PASSWORD, AUTHENTICATION_FAILED
    164: 403,  # READONLY
    27: 400, 62: 400, 26: 400, 38: 400, 6: 400, 41: 400, 69: 400, 72: 400, 117: 400,  # parse/syntax
    53: 400, 43: 400, 44: 400, 36: 400, 42: 400, 35: 400,  # type mismatch, bad arguments
    60: 404, 81: 404, 46: 404, 47: 404, 16: 404, 50: 404,  # unknown table/db/function/column/type
}
_CODE_IN_MESSAGE = re.compile(r"Code:\s*(\d+)")


class RequestError(Exception):
    """A ClickHouse-style error: exception code plus message (without the 'Code:' prefix)."""

    def __init__(self, code: int, name: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.name = name


@dataclass
class ParsedRequest:
    """What to run: SQL text, optional insert payload, settings, params, output format."""

    sql: str
    user: str
    password: str
    database: str
    output_format: str
    settings: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    insert_target: str | None = None
    insert_format: str | None = None
    insert_data: bytes = b""
    readonly: bool = False
    database_given: bool = False  # named by the request (else a session's USE applies)


def credentials(headers: Mapping[str, str], query: Mapping[str, str]) -> tuple[str, str]:
    """User and password from Basic auth, X-ClickHouse-User/Key headers, or URL params."""
    auth = headers.get("Authorization", "")
    if auth.startswith("Basic "):
        try:
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            return user or "default", password
        except (ValueError, UnicodeDecodeError):
            raise RequestError(516, "AUTHENTICATION_FAILED", "Malformed Authorization header") from None
    user = headers.get("X-ClickHouse-User") or query.get("user") or "default"
    password = headers.get("X-ClickHouse-Key") or query.get("password") or ""
    return user, password


_MAGIC = {"zstd": b"\x28\xb5\x2f\xfd", "gzip": b"\x1f\x8b", "x-gzip": b"\x1f\x8b"}


def decompress_body(body: bytes, encoding: str, limit: int = 1024**3) -> bytes:
    """Undo the request's Content-Encoding (clickhouse-connect uses lz4 frames or zstd), refusing
    output beyond `limit` bytes before producing it (a small bomb never inflates in memory).

    aiohttp already inflates some encodings itself (gzip, deflate, br, zstd): a body that does
    not start with the format's magic bytes has been decoded upstream and is returned as is.
    """
    encoding = encoding.strip().lower()
    if not encoding or encoding == "identity" or not body:
        return body
    magic = _MAGIC.get(encoding)
    if magic is not None and not body.startswith(magic):
        return body
    try:
        if encoding == "lz4":
            import lz4.frame

            return _all_frames(body, lz4.frame.LZ4FrameDecompressor, limit)
        if encoding == "zstd":
            from backports import zstd  # clickhouse-connect's own zstd dependency

            return _all_frames(body, zstd.ZstdDecompressor, limit)
        if encoding in ("gzip", "x-gzip"):
            return _all_frames(body, lambda: zlib.decompressobj(16 + zlib.MAX_WBITS), limit)
        if encoding in ("deflate", "br"):
            return body  # aiohttp's parser inflates these before we see them
    except RequestError:
        raise
    except Exception as exc:  # any codec failure is the client's malformed body
        raise RequestError(
            354, "CANNOT_DECOMPRESS", f"Cannot decompress request body ({encoding}): {exc}"
        ) from None
    raise RequestError(628, "UNKNOWN_COMPRESSION_METHOD", f"Unknown Content-Encoding: {encoding}")


def _all_frames(body: bytes, new_decompressor: Any, limit: int) -> bytes:
    """Decompress a body of concatenated frames (clickhouse-connect compresses each block alone),
    never more than `limit` bytes in all."""
    out, size = [], 0
    while body:
        decompressor = new_decompressor()
        chunk = decompressor.decompress(body, limit - size + 1)
        size += len(chunk)
        if size > limit:
            raise RequestError(307, "TOO_MANY_BYTES", f"Decompressed request body exceeds {limit} bytes")
        out.append(chunk)
        if not _finished(decompressor):
            raise RequestError(354, "CANNOT_DECOMPRESS", "Cannot decompress request body: truncated frame")
        body = decompressor.unused_data
    return b"".join(out)


def _finished(decompressor: Any) -> bool:
    """True when the decompressor reached its frame's end (lz4/zstd: `eof`; zlib: `eof` too)."""
    return bool(getattr(decompressor, "eof", True))


def parse_request(
    query: Mapping[str, str], headers: Mapping[str, str], body: bytes
) -> ParsedRequest:
    """Combine the `query` URL parameter and the body as ClickHouse does, split insert data off."""
    user, password = credentials(headers, query)
    text_part = query.get("query", "")
    insert_data = b""
    if text_part:
        # The URL holds the statement; the body (if any) is its data or its continuation.
        match = _INSERT_FORMAT.match(text_part + "\n")
        if match:
            insert_data = body
            sql = text_part
        else:
            sql = text_part + (" " + body.decode("utf-8", "replace") if body else "")
    else:
        match = _INSERT_FORMAT.match(body[:65536].decode("latin-1")) if body else None
        if match:
            head_len = match.end()
            sql = body[:head_len].decode("utf-8").strip()
            insert_data = body[head_len:]
        else:
            sql = body.decode("utf-8", "replace")
    sql = sql.strip()
    if not sql:
        raise RequestError(62, "SYNTAX_ERROR", "Empty query")
    settings = {k: v for k, v in query.items() if k not in TRANSPORT_PARAMS and not k.startswith("param_")}
    for name in settings:
        if not _SETTING_NAME.match(name):
            raise RequestError(115, "UNKNOWN_SETTING", f"Setting {name!r} is not a valid setting name")
    params = {k[len("param_"):]: v for k, v in query.items() if k.startswith("param_")}
    fmt = headers.get("X-ClickHouse-Format") or query.get("default_format") or "TabSeparated"
    parsed = ParsedRequest(
        sql=sql, user=user, password=password,
        database=headers.get("X-ClickHouse-Database") or query.get("database") or "default",
        database_given=bool(headers.get("X-ClickHouse-Database") or query.get("database")),
        output_format=fmt, settings=settings, params=params,
        readonly=query.get("readonly", "0") not in ("", "0"),
    )
    insert = _INSERT_FORMAT.match(sql + "\n")
    if insert:
        parsed.insert_target = insert.group("target").strip()
        parsed.insert_format = insert.group("fmt")
        parsed.insert_data = insert_data
    return parsed


def insert_statement(target: str, path: str, fmt: str) -> str:
    """The chDB statement that inserts a request's data, saved at `path`, into `target`.

    chDB has no request body: `INSERT INTO t (cols) FORMAT X` becomes `INSERT INTO t (cols)
    SELECT * FROM file(path, X)` (columns matched by name, as ClickHouse does), and `INSERT
    INTO t SELECT ... FROM input('structure') ...` reads `file(path, X, 'structure')` instead.
    """
    source = f"file({quote_literal(path)}, {quote_literal(fmt)}"
    if _INPUT_CALL.search(target):
        return "INSERT INTO " + _INPUT_CALL.sub(lambda m: f"{source}, {m.group(1)})", target, count=1)
    return f"INSERT INTO {target} SELECT * FROM {source})"


def result_format(sql: str, default: str) -> str:
    """The format the result is in: an explicit trailing FORMAT clause wins."""
    match = _FORMAT_AT_END.search(sql)
    return match.group(1) if match else default


GET_IS_READONLY = (
    "Cannot execute query in readonly mode. For queries over HTTP, method GET implies readonly. "
    "You should use method POST for modifying queries. (READONLY)"
)


def quote_literal(value: str) -> str:
    """A ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def error_body(code: int, message: str) -> str:
    """The text ClickHouse sends for an exception."""
    return f"Code: {code}. DB::Exception: {message} (version {VERSION})\n"


def split_engine_error(text: str) -> tuple[int, str]:
    """(code, message) from a chDB error text 'Code: N. DB::Exception: msg'."""
    match = _CODE_IN_MESSAGE.search(text)
    code = int(match.group(1)) if match else 1000
    message = text.split("DB::Exception:", 1)[1].strip() if "DB::Exception:" in text else text.strip()
    return code, message


def http_status(code: int) -> int:
    """HTTP status ClickHouse uses for an exception code."""
    return _STATUS_BY_CODE.get(code, 500)
