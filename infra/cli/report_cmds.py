"""`journey report` and `journey customer`: what ClickHouse knows, for store managers and staff."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from consumers.html_report import render_html
from consumers.report import RULE_COLUMNS, customer_history, parse_since, recovery_report, store_timezones
from infra.clickhouse import get_client, ping
from infra.config import Settings
from infra.errors import JourneyError


def _client(settings: Settings):  # type: ignore[no-untyped-def]
    if not ping(settings.clickhouse_url):
        raise JourneyError(f"ClickHouse unreachable at {settings.clickhouse_url}: run `journey up -d` "
                           "or set CLICKHOUSE_URL")
    return get_client(settings.clickhouse_url, settings.clickhouse_user, settings.clickhouse_password)


def report(
    since: str = typer.Option("7d", "--since", help="How far back: 30m, 24h, 7d, 2w."),
    store: str | None = typer.Option(None, "--store", help="Only this store."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object."),
    html_file: Path | None = typer.Option(None, "--html", help="Also write an HTML report with charts here."),
) -> None:
    """The recovery picture: incidents by rule and SERVQUAL, latencies, SLA, compensation, worst stores."""
    settings = Settings.from_env()
    zones = store_timezones(settings.stores_file)
    data = recovery_report(_client(settings), parse_since(since), store, zones)
    title = f"Service recovery, last {since}" + (f", store {store}" if store else "")
    if html_file is not None:
        html_file.write_text(render_html(data, title), encoding="utf-8")
        typer.echo(f"wrote {html_file}", err=True)
    if as_json:
        typer.echo(json.dumps(data, default=str))
        return
    console = Console() if Console().is_terminal else Console(width=160)  # pipes/logs: no width to fit
    table = Table(*RULE_COLUMNS, title=title)
    for row in data["by_rule"]:
        table.add_row(*("-" if row[c] is None or row[c] != row[c] else str(row[c]) for c in RULE_COLUMNS))
    console.print(table)
    console.print("SERVQUAL: " + ", ".join(f"{k} {v}" for k, v in data["by_servqual"].items()))
    worst = Table("store", "incidents", "sla_compliance", "ttr_p50_s", title="Stores with the most incidents")
    for row in data["worst_stores"]:
        worst.add_row(str(row["store"]), str(row["incidents"]), str(row["sla_compliance"]), str(row["ttr_p50_s"]))
    console.print(worst)
    hours = " ".join(f"{h:02d}h:{n}" for h, n in sorted(data["by_local_hour"].items()) if n)
    console.print(f"incidents by store-local hour: {hours or 'none'}")


def customer(customer_id: str = typer.Argument(...), as_json: bool = typer.Option(False, "--json")) -> None:
    """One customer's journeys and incidents: remember your customers."""
    from consumers.customer_profile import customer_profile

    settings = Settings.from_env()
    client = _client(settings)
    data = customer_history(client, customer_id)
    data["profile"] = customer_profile(client, customer_id)
    if as_json:
        typer.echo(json.dumps(data, default=str))
        return
    console = Console()
    profile = data["profile"]
    if profile is not None:
        console.print(f"first seen {profile['first_seen']}, last visit {profile['last_visit']}: "
                      f"{profile['journeys']} journeys, {profile['incidents']} incidents, {profile['recovered']} "
                      f"recovered{', a regular' if profile['regular'] else ''}")
    table = Table("failed_at", "rule", "severity", "status", "ttr_s", "compensation", "recovered",
                  title=f"Customer {customer_id}: {len(data['journeys'])} journeys, {len(data['incidents'])} incidents")
    for inc in data["incidents"]:
        comp = f"{inc['compensation_kind']} {inc['compensation_amount']}" if inc["compensation_kind"] else "-"
        table.add_row(str(inc["failed_at"]), inc["rule"], inc["severity"], inc["status"],
                      str(inc["time_to_resolve_s"] or "-"), comp, str(inc["recovered"]))
    console.print(table)


def forget(
    customer_id: str = typer.Argument(..., help="The customer whose data ClickHouse should drop."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object."),
) -> None:
    """Remove one customer's touchpoints, incidents and alerts from ClickHouse (says what stays in Kafka)."""
    from consumers.forget import forget_customer

    if not customer_id.strip():
        raise JourneyError("forget: give a customer id (the customer_id of their events)")
    settings = Settings.from_env()
    done = forget_customer(_client(settings), settings, customer_id)
    if as_json:
        typer.echo(json.dumps(done.as_json()))
        return
    removed = ", ".join(f"{n} {table}" for table, n in done.removed.items())
    typer.echo(f"removed customer {customer_id} from ClickHouse: {removed} rows")
    if any(done.left.values()):
        typer.echo(f"written again meanwhile (run forget again): {done.left}", err=True)
    typer.echo("still in Kafka until the topics' retention expires (a replay into ClickHouse would bring them "
               f"back): {', '.join(done.still_in_kafka)}; open journeys stay in the workers' state until they "
               "expire (2 days, 30 with an incident)")


def register(app: typer.Typer) -> None:
    app.command()(report)
    app.command()(customer)
    app.command()(forget)
