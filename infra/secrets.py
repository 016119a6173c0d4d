"""Secrets the tracker makes for itself: the on-call page token when none is configured."""

from __future__ import annotations

import os
import secrets

from infra.config import Settings


def oncall_token(settings: Settings) -> str:
    """JOURNEY_ONCALL_TOKEN, or a random token kept (mode 0600) in `$JOURNEY_HOME/oncall.token`."""
    if settings.oncall_token:
        return settings.oncall_token
    path = settings.home.resolve() / "oncall.token"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    # O_EXCL: two processes racing to create it agree on the first one's token
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(token)
    return token
