"""`journey alerts`, `ack`, `resolve`, `silence add|list|expire`: on-call from the terminal."""

from __future__ import annotations

import getpass
import json
import time
import urllib.error
import urllib.request
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from infra.config import Settings
from infra.errors import JourneyError
from infra.escaping import terminal
from infra.kafka import require_broker

silence_app = typer.Typer(help="Silences: mute a store and/or rule for a while (recorded, not paged).",
                          no_args_is_help=True)
console = Console()


def alerts(
    from_beginning: bool = typer.Option(False, "--from-beginning", help="Start with the oldest alert."),
    limit: int | None = typer.Option(None, "--limit", "-n", min=1, help="Stop after N alerts."),
    idle_timeout: float | None = typer.Option(None, "--idle-timeout", help="Stop after S seconds without alerts."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines instead of readable lines."),
) -> None:
    """Follow the alerts live (every page, escalation, ack, resolve, suppression)."""
    from streams.topic_reader import follow

    settings = Settings.from_env()
    require_broker(settings)
    for line in follow(settings, settings.topics.alerts, from_beginning, limit, idle_timeout):
        if as_json:
            typer.echo(line)
            continue
        alert = json.loads(line)
        at = str(alert.get("at", ""))[11:19]
        hooks = [c.removeprefix("webhook:") for c in alert.get("channels", []) if c.startswith("webhook:")]
        sent = f"  -> {', '.join(hooks)}" if hooks and alert.get("kind") != "delivery_failed" else ""
        # the message carries ids from outside: their escape sequences must not run in the terminal
        typer.echo(terminal(f"{at}  {alert.get('message', line)}  [{alert.get('incident_id')}]{sent}"))


def _call_oncall_api(settings: Settings, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """The notifier's API with the on-call token; its refusals become one clear line."""
    from infra.secrets import oncall_token

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


def _act(action: str, incident_id: str, by: str | None, note: str | None) -> None:
    settings = Settings.from_env()
    who = by or getpass.getuser() or "cli"
    done = _call_oncall_api(settings, "POST", f"/api/incidents/{incident_id}/{action}", {"by": who, "note": note})
    typer.echo(terminal(f"{done['type']} for {incident_id} by {who} emitted (event {done['event_id']})"))


def ack(
    incident_id: str = typer.Argument(..., help="The incident's id (inc-...)."),
    by: str | None = typer.Option(None, "--by", help="Who acknowledges (default: your user name)."),
    note: str | None = typer.Option(None, "--note", help="A note kept with the incident."),
) -> None:
    """Acknowledge an incident: emits FAILURE_ACKNOWLEDGED (stops its escalation)."""
    _act("ack", incident_id, by, note)


def resolve(
    incident_id: str = typer.Argument(..., help="The incident's id (inc-...)."),
    by: str | None = typer.Option(None, "--by", help="Who resolved it (default: your user name)."),
    note: str | None = typer.Option(None, "--note", help="What was done."),
) -> None:
    """Resolve an incident: emits RECOVERY_RESOLVED."""
    _act("resolve", incident_id, by, note)


def _send_silence(settings: Settings, record: dict[str, Any]) -> None:
    from schemas.codec import encode
    from streams.emitter import make_producer

    producer = make_producer(settings)
    try:
        producer.send(settings.topics.silences, key=record["silence_id"].encode(),
                      value=encode("silence", record)).get(timeout=30)
    finally:
        producer.close(timeout=10)


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
    duration: str = typer.Option("1h", "--for", help="How long: 30m, 2h, 1d."),
    comment: str | None = typer.Option(None, "--comment", help="Why (shown in the alerts it mutes)."),
    by: str | None = typer.Option(None, "--by", help="Who (default: your user name)."),
) -> None:
    """Mute matching incidents from now on for a while: they are recorded, never paged."""
    from consumers.report import parse_duration_s
    from consumers.silences import new_silence, silence_record
    from streams.domain.config import RULES

    if rule is not None and rule not in RULES:
        raise JourneyError(f"--rule {rule!r}: not a rule; use one of {', '.join(RULES)}")
    settings = Settings.from_env()
    require_broker(settings)
    now = int(time.time() * 1000)
    try:
        silence = new_silence(store, rule, now, parse_duration_s(duration, "--for"), by or getpass.getuser(),
                              comment)
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
    table = Table("id", "store", "rule", "until (UTC)", "by", "comment")
    for s in active:
        table.add_row(s.silence_id, s.store_id or "*", s.rule or "*",
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
