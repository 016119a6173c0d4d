"""The stores file (infra/stores.toml): each store's time zone, opening hours and holidays."""

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from streams.domain.business_time import WEEKDAYS, StoreCalendar, parse_interval
from streams.domain.config import RuleConfigError, check_known_keys

DEFAULT_STORES_FILE = Path(__file__).resolve().parents[2] / "infra" / "stores.toml"
STORE_KEYS = ("timezone", "hours", "holidays")


def _hours(raw: Any, where: str, path: Path) -> dict[int, tuple[int, int]] | None:
    if raw is None:
        return None
    try:
        if isinstance(raw, str):  # the same hours every day
            return dict.fromkeys(range(7), parse_interval(raw))
        if isinstance(raw, dict):
            check_known_keys(raw, WEEKDAYS, f"{where}.hours", path)
            return {WEEKDAYS.index(day): parse_interval(str(text)) for day, text in raw.items()}
    except ValueError as exc:
        raise RuleConfigError(f"stores file {path}: {where}.hours: {exc}") from None
    raise RuleConfigError(f"stores file {path}: {where}.hours must be \"10:00-22:00\" or a table of weekdays")


def load_store_calendars(path: Path | None = None) -> dict[str, StoreCalendar]:
    """Store id -> calendar; stores not listed are open around the clock (UTC)."""
    path = path or DEFAULT_STORES_FILE
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise RuleConfigError(f"stores file {path}: {exc.strerror or exc} (JOURNEY_STORES_FILE)") from None
    except tomllib.TOMLDecodeError as exc:
        raise RuleConfigError(f"stores file {path}: {exc} (JOURNEY_STORES_FILE)") from None
    check_known_keys(raw, ("stores",), "", path)
    calendars = {}
    for store, body in raw.get("stores", {}).items():
        where = f"stores.{store!r}"
        check_known_keys(body, STORE_KEYS, where, path)
        zone = str(body.get("timezone", "UTC"))
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise RuleConfigError(f"stores file {path}: {where} has unknown time zone {zone!r}") from None
        try:
            holidays = frozenset(day if isinstance(day, date) else date.fromisoformat(str(day))
                                 for day in body.get("holidays", []))
        except ValueError as exc:
            raise RuleConfigError(f"stores file {path}: {where}.holidays: {exc} (use 2026-12-25)") from None
        calendars[store] = StoreCalendar(zone, _hours(body.get("hours"), where, path), holidays)
    return calendars
