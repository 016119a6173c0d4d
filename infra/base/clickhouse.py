"""Thin clickhouse-connect adapters: a client for the configured endpoint, readiness probes."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver import Client
from clickhouse_connect.driver.exceptions import OperationalError

from infra.base.config import Settings
from infra.base.errors import JourneyError


def get_client(url: str, user: str = "default", password: str = "", database: str | None = None, **kw: Any) -> Client:
    """A clickhouse-connect client for `url` (http://host:port); one clear error when unreachable."""
    parsed = urlparse(url)
    try:
        return clickhouse_connect.get_client(
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or (8443 if parsed.scheme == "https" else 8123),
            interface=parsed.scheme or "http",
            username=user,
            password=password,
            database=database or "",
            **kw,
        )
    except OperationalError as exc:
        raise JourneyError(
            f"ClickHouse unreachable at {url} ({exc.__class__.__name__}): start the stack with "
            "`journey up -d` or set CLICKHOUSE_URL to a running server"
        ) from None


def admin_client(settings: Settings, **kw: Any) -> Client:
    """A client for the configured ClickHouse as the configured user (its password, generated or set)."""
    return get_client(settings.clickhouse_url, settings.clickhouse_user, settings.clickhouse_password, **kw)


def ping(url: str, timeout_s: float = 1.0) -> bool:
    """True when GET /ping answers 'Ok.' (ClickHouse's health check)."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/ping", timeout=timeout_s) as resp:  # noqa: S310
            return bool(resp.read().startswith(b"Ok."))
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_ready(url: str, timeout_s: float) -> None:
    """Block until the endpoint answers /ping; TimeoutError with the URL otherwise."""
    deadline = time.monotonic() + timeout_s
    while not ping(url):
        if time.monotonic() > deadline:
            raise TimeoutError(f"ClickHouse at {url} did not answer /ping within {timeout_s}s")
        time.sleep(0.1)
