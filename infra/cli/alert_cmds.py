"""`journey alerts`, `ack`, `resolve`, `silence add|list|expire`: on-call from the terminal."""

from __future__ import annotations

import getpass
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import typer
from rich.console import Console

from infra.base.config import Settings
from infra.base.errors import JourneyError
from infra.base.escaping import terminal
from infra.base.kafka import require_broker
from infra.cli import table as cli_table

silence_app = typer.Typer(help="Silences: mute a store and/or rule for a while (recorded, not paged).",
                          no_args_is_help=True)
console = Console()


def alerts(
    from_beginning: bool = typer.Option(False, "--from-beginning",
                                        help="Start with the oldest alert: the history in time order, then live."),
    limit: int | None = typer.Option(None, "--limit", "-n", min=1, help="Stop after N alerts."),
    idle_timeout: float | None = typer.Option(None, "--idle-timeout", help="Stop after S seconds without alerts."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines instead of readable lines."),
) -> None:
    """Follow the alerts live (every page, escalation, ack, resolve, suppression)."""
    from streams.topic_reader import follow

    settings = Settings.from_env()
    require_broker(settings)
    lines = (history_then_live(settings, limit, idle_timeout) if from_beginning
             else follow(settings, settings.topics.alerts, False, limit, idle_timeout))
    for line in lines:
        if as_json:
            typer.echo(line)
            continue
        alert = json.loads(line)
        at = str(alert.get("at", ""))[11:19]
        hooks = [c.removeprefix("webhook:") for c in alert.get("channels", []) if c.startswith("webhook:")]
        sent = f"  -> {', '.join(hooks)}" if hooks and alert.get("kind") != "delivery_failed" else ""
        # the message carries ids from outside: their escape sequences must not run in the terminal
        typer.echo(terminal(f"{at}  {alert.get('message', line)}  [{alert.get('incident_id')}]{sent}"))


def in_time_order(lines: list[str]) -> list[str]:
    """Rendered alerts sorted by their time (partitions interleave otherwise), then topic order."""
    def key(line: str) -> tuple[str, int, int]:
        alert = json.loads(line)
        return str(alert.get("at", "")), alert.get("partition", 0), alert.get("offset", 0)
    return sorted(lines, key=key)


def history_then_live(settings: Settings, limit: int | None, idle_timeout_s: float | None) -> Iterator[str]:
    """Every alert so far in time order, then new ones as they come (each partition in its own order).

    The history ends at the first empty poll (Tansu's end offsets are not record counts).
    """
    from streams.topic_reader import assigned_consumer, follow_reader, render

    topic = settings.topics.alerts
    reader = assigned_consumer(settings, topic, from_beginning=True)
    try:
        history: list[str] = []
        while batch := reader.poll(timeout_ms=1000):
            history += [render(settings, topic, m) for records in batch.values() for m in records]
        shown = in_time_order(history)[:limit]
        yield from shown
        if limit is None or len(shown) < limit:
            yield from follow_reader(settings, topic, reader, None if limit is None else limit - len(shown),
                                     idle_timeout_s)
    finally:
        reader.close()


def _call_oncall_api(settings: Settings, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """The notifier's API with the on-call token; its refusals become one clear line."""
    from infra.base.secrets import oncall_token

    url = f"http://{settings.host}:{settings.web_port}{path}"
    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Authorization": f"Bearer {oncall_token(settings)}",
                                              "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310 (our own loopback API)
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            reason = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            reason = exc.reason
        raise JourneyError(str(reason)) from None
    except (urllib.error.URLError, TimeoutError, ConnectionError):
        raise JourneyError(f"the notifier is not answering at http://{settings.host}:{settings.web_port}: start "
                           "the stack with `journey up -d` (or set JOURNEY_WEB_PORT to where it runs)") from None


def _act(action: str, incident_id: str | None, group: str | None, by: str | None, note: str | None) -> None:
    if (incident_id is None) == (group is None):
        raise JourneyError(f"name an incident (journey {action} inc-...) or a group (journey {action} --group "
                           "STORE/RULE), not both")
    settings = Settings.from_env()
    who = by or getpass.getuser() or "cli"
    if group is not None:
        done = _call_oncall_api(settings, "POST", f"/api/groups/{action}", {"group": group, "by": who, "note": note})
        for item in done["done"]:
            typer.echo(f"{item['type']} for {item['incident_id']} by {who} emitted (event {item['event_id']})")
        for item in done["refused"]:
            typer.echo(f"skipped {item['incident_id']}: {item['error']}")
        typer.echo(f"group {group}: {len(done['done'])} done, {len(done['refused'])} skipped")
        return
    done = _call_oncall_api(settings, "POST", f"/api/incidents/{incident_id}/{action}", {"by": who, "note": note})
    typer.echo(terminal(f"{done['type']} for {incident_id} by {who} emitted (event {done['event_id']})"))


GROUP_HELP = "Every open incident of this group instead (e.g. busan-01/promise_breach; the page names groups)."


def ack(
    incident_id: str | None = typer.Argument(None, help="The incident's id (inc-...)."),
    group: str | None = typer.Option(None, "--group", help=GROUP_HELP),
    by: str | None = typer.Option(None, "--by", help="Who acknowledges (default: your user name)."),
    note: str | None = typer.Option(None, "--note", help="A note kept with the incident."),
) -> None:
    """Acknowledge an incident or a group: emits FAILURE_ACKNOWLEDGED (stops its escalation)."""
    _act("ack", incident_id, group, by, note)


def resolve(
    incident_id: str | None = typer.Argument(None, help="The incident's id (inc-...)."),
    group: str | None = typer.Option(None, "--group", help=GROUP_HELP),
    by: str | None = typer.Option(None, "--by", help="Who resolved it (default: your user name)."),
    note: str | None = typer.Option(None, "--note", help="What was done."),
) -> None:
    """Resolve an incident or a group: emits RECOVERY_RESOLVED."""
    _act("resolve", incident_id, group, by, note)


def _send_silence(settings: Settings, record: dict[str, Any]) -> None:
    from schemas.codec import encode
    from streams.emitter import make_producer

    producer = make_producer(settings)
    try:
        producer.send(settings.topics.silences, key=record["silence_id"].encode(),
                      value=encode("silence", record)).get(timeout=30)
    finally:
        producer.close(timeout=10)
    _archive_silence(settings, record)


def _archive_silence(settings: Settings, record: dict[str, Any]) -> None:
    """The silence also goes to ClickHouse, so a restart of the embedded broker keeps it."""
    from clickhouse_connect.driver.exceptions import ClickHouseError

    from infra.local.restore import archive_silence

    try:
        archive_silence(settings, record)
    except (ClickHouseError, JourneyError, OSError) as exc:
        typer.echo(f"warning: silence in force, but not kept in ClickHouse at {settings.clickhouse_url} "
                   f"({str(exc)[:200]}): a restart of the local stack forgets it", err=True)


def _silence_book(settings: Settings) -> Any:
    from consumers.silences import SilenceBook
    from schemas.codec import decode
    from streams.topic_reader import assigned_consumer

    book = SilenceBook()
    reader = assigned_consumer(settings, settings.topics.silences, from_beginning=True)
    try:
        while batch := reader.poll(timeout_ms=1000):
            for message in (m for records in batch.values() for m in records):
                book.apply(decode(message.value, "silence"))
    finally:
        reader.close()
    return book


@silence_app.command("add")
def silence_add(
    store: str | None = typer.Option(None, "--store", help="Mute this store's incidents."),
    rule: str | None = typer.Option(None, "--rule", help="Mute this rule's incidents."),
    duration: str | None = typer.Option(None, "--for", help="How long: 30m, 2h, 1d (default 1h; recurring: 365d)."),
    comment: str | None = typer.Option(None, "--comment", help="Why (shown in the alerts it mutes)."),
    by: str | None = typer.Option(None, "--by", help="Who (default: your user name)."),
    weekdays: str | None = typer.Option(None, "--weekdays", help="Recurring: only these days (mon-fri, sat,sun)."),
    between: str | None = typer.Option(None, "--between",
                                       help="Recurring: only between these local times (02:00-04:00, the store's "
                                            "time zone)."),
) -> None:
    """Mute matching incidents from now on for a while: they are recorded, not paged; those still open and
    unacknowledged when the silence ends page then. --weekdays/--between make it a maintenance window."""
    from consumers.report import parse_duration_s
    from consumers.silences import new_silence, silence_record
    from streams.domain.config import RULES

    if rule is not None and rule not in RULES:
        raise JourneyError(f"--rule {rule!r}: not a rule; use one of {', '.join(RULES)}")
    settings = Settings.from_env()
    require_broker(settings)
    now = int(time.time() * 1000)
    try:
        length = duration or ("365d" if weekdays or between else "1h")
        silence = new_silence(store, rule, now, parse_duration_s(length, "--for"), by or getpass.getuser(),
                              comment, weekdays, between)
    except ValueError as exc:
        raise JourneyError(str(exc)) from None
    _send_silence(settings, silence_record(silence, "create", now))
    until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(silence.ends_at / 1000))
    typer.echo(f"silence {silence.describe()} until {until}")


@silence_app.command("list")
def silence_list(as_json: bool = typer.Option(False, "--json", help="JSON lines.")) -> None:
    """The silences in force now and later."""
    settings = Settings.from_env()
    require_broker(settings)
    active = _silence_book(settings).active(int(time.time() * 1000))
    if as_json:
        for s in active:
            typer.echo(json.dumps(s.__dict__))
        return
    table = cli_table("id", "store", "rule", "when", "until (UTC)", "by", "comment")
    for s in active:
        when = f"{','.join(s.weekdays) or 'daily'} {s.daily_from or '00:00'}-{s.daily_to or '24:00'}" \
            if s.recurring else "always"
        table.add_row(s.silence_id, s.store_id or "*", s.rule or "*", when,
                      time.strftime("%Y-%m-%d %H:%M", time.gmtime(s.ends_at / 1000)), s.created_by, s.comment or "")
    console.print(table if active else "no silences in force")


@silence_app.command("expire")
def silence_expire(silence_id: str = typer.Argument(..., help="The silence's id (sil-...).")) -> None:
    """End a silence now."""
    from consumers.silences import silence_record

    settings = Settings.from_env()
    require_broker(settings)
    now = int(time.time() * 1000)
    known = _silence_book(settings).silences.get(silence_id)
    if known is None or known.ends_at <= now:
        raise JourneyError(f"no silence {silence_id} in force; `journey silence list` shows them")
    _send_silence(settings, silence_record(known, "expire", now))
    typer.echo(f"silence {silence_id} expired")


def register(app: typer.Typer) -> None:
    app.command()(alerts)
    app.command()(ack)
    app.command()(resolve)
    app.add_typer(silence_app, name="silence")
