"""Secrets the tracker makes for itself: the on-call page token and the local ClickHouse passwords
when none is configured, each random and kept (mode 0600) under `$JOURNEY_HOME`."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from infra.base.config import Settings


def kept_secret(path: Path) -> str:
    """The secret stored at `path`, or a new random one written there (0600) if there is none."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    value = secrets.token_urlsafe(24)
    # O_EXCL: two processes racing to create it agree on the first one's secret
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value


def oncall_token(settings: Settings) -> str:
    """JOURNEY_ONCALL_TOKEN, or a random token kept (mode 0600) in `$JOURNEY_HOME/oncall.token`."""
    if settings.oncall_token:
        return settings.oncall_token
    return kept_secret(settings.home.resolve() / "oncall.token")
