"""`journey report` and `journey customer`: what ClickHouse knows, for store managers and staff."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from consumers import human
from consumers.html_report import day, render_html
from consumers.insight_queries import newest_ms, stores_in
from consumers.report import customer_history, recovery_report, report_window, store_timezones
from infra.base.clickhouse import get_client, ping
from infra.base.config import Settings
from infra.base.errors import JourneyError
from infra.cli import table as cli_table


def _client(settings: Settings):  # type: ignore[no-untyped-def]
    if not ping(settings.clickhouse_url):
        raise JourneyError(f"ClickHouse unreachable at {settings.clickhouse_url}: run `journey up -d` "
                           "or set CLICKHOUSE_URL")
    return get_client(settings.clickhouse_url, settings.clickhouse_user, settings.clickhouse_password)


GROUP_NAMES = {"recovered": "failure recovered (resolved)", "not_recovered": "failure not recovered",
               "no_failure": "no failure"}


def _table(title: str, rows: list[dict[str, Any]], columns: list[tuple[str, Callable[[dict[str, Any]], Any]]]) -> Any:
    """A rich table that wraps long names (never cuts them) and shows '-' for missing values."""
    table = cli_table(*(header for header, _ in columns), title=title, title_justify="left")
    for row in rows:
        table.add_row(*(human.text(get(row)) for _, get in columns))
    return table


def _returns(label: str) -> list[tuple[str, Callable[[dict[str, Any]], Any]]]:
    return [(label, lambda r: r.get("bucket") or GROUP_NAMES.get(r.get("group", ""), r.get("group"))),
            ("customers", lambda r: r["customers"]),
            ("came back within 30 days", lambda r: f"{human.percent(r['return_rate_30d'])} of {r['eligible_30d']}"),
            ("within 90 days", lambda r: f"{human.percent(r['return_rate_90d'])} of {r['eligible_90d']}"),
            ("mean score (1-5)", lambda r: r.get("mean_score"))]


def print_report(data: dict[str, Any], title: str, console: Console) -> None:
    """The report for a terminal: human units, full names, '-' for missing."""
    withdrawn = f" ({data['withdrawn']} withdrawn: fulfilled on time, reported late)" if data.get("withdrawn") else ""
    console.print(f"[bold]{title}[/bold]: {data['total_incidents']} incidents{withdrawn}, "
                  f"{data['rates']['journeys']} journeys")
    overall = data["recovery_paradox"]["overall"]
    groups = [{"group": g, **v} for g, v in overall["groups"].items()]
    console.print(_table("Do customers come back? (first failure in the range, or first journey if none)",
                         groups, _returns("customers whose")))
    console.print(_table("By time to first response", overall["by_first_response"], _returns("first response")))
    console.print(_table("By time to resolve", overall["by_resolve"], _returns("resolved")))
    console.print(_table("By compensation, as a share of the order value", overall["by_compensation"],
                         _returns("compensation")))
    targets = data["targets"]
    per_100 = {r["rule"]: r["per_100_journeys"] for r in data["rates"]["by_rule"]}

    def timed(metric: str, target: str) -> Callable[[dict[str, Any]], str]:
        def cell(r: dict[str, Any]) -> str:
            goal = targets.get(r["rule"], {}).get(target)
            return f"{human.duration(r[metric])} (target {human.duration(goal)})" if goal else human.duration(r[metric])
        return cell

    console.print(_table("By rule (medians; SLA met = every target of the rule met)", data["by_rule"], [
        ("rule", lambda r: r["rule"]), ("dimension", lambda r: r["servqual"]), ("incidents", lambda r: r["incidents"]),
        ("per 100 journeys", lambda r: per_100.get(r["rule"])),
        ("to acknowledge", timed("tta_p50_s", "acknowledge_s")),
        ("to first response", timed("ttfr_p50_s", "first_response_s")),
        ("to resolve", timed("ttr_p50_s", "resolve_s")),
        ("SLA met", lambda r: human.percent(r["sla_compliance"])),
        ("compensated", lambda r: human.percent(r["share_compensated"]))]))
    console.print(_table("Stores by incidents per 100 journeys", data["rates"]["by_store"], [
        ("store", lambda r: r["store"] or "(none)"), ("journeys", lambda r: r["journeys"]),
        ("incidents", lambda r: r["incidents"]), ("per 100 journeys", lambda r: r["per_100_journeys"])]))
    goal = human.percent(data["sla_goal"])
    console.print(_table(f"Week by week (SLA goal {goal} of incidents within target)", data["trend"], [
        ("week of", lambda r: r["week"]), ("incidents", lambda r: r["incidents"]),
        ("SLA met", lambda r: human.percent(r["sla_all"])),
        ("median to acknowledge", lambda r: human.duration(r["median_acknowledge_s"])),
        ("to first response", lambda r: human.duration(r["median_first_response_s"])),
        ("to resolve", lambda r: human.duration(r["median_resolve_s"]))]))
    console.print(_table("Most frequent failure causes", data["causes"][:10], [
        ("rule", lambda r: r["rule"]), ("cause", lambda r: r["cause"]), ("store", lambda r: r["store"] or "(none)"),
        ("incidents", lambda r: r["incidents"]),
        ("busiest local hour", lambda r: f"{r['peak_local_hour']:02d}:00 ({r['peak_incidents']})")]))
    hours = " ".join(f"{h:02d}h:{n}" for h, n in sorted(data["by_local_hour"].items()))
    console.print(f"incidents by store-local hour: {hours if data['total_incidents'] else 'none'}")


def report(
    since: str = typer.Option("7d", "--since", metavar="DURATION",
                              help="How far back from now (or from the newest data, --at-newest): 30m, 24h, 7d, 2w."),
    date_from: str | None = typer.Option(None, "--from", metavar="DATE",
                                         help="Start date (UTC): 2018-03-01 or 2018-03-01T12:00; wins over --since."),
    date_to: str | None = typer.Option(None, "--to", metavar="DATE",
                                       help="End date (UTC), the whole day included; default now."),
    at_newest: bool = typer.Option(False, "--at-newest",
                                   help="Count --since back from the newest touchpoint instead of now "
                                        "(for data loaded by a backfill)."),
    store: str | None = typer.Option(None, "--store", metavar="STORE", help="Only this store."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
    html_file: Path | None = typer.Option(None, "--html", metavar="FILE",
                                          help="Also write the dashboard as one HTML file (charts work offline)."),
) -> None:
    """The recovery picture: do customers come back, and how recovery speed and compensation matter.

    Also incidents per 100 journeys, the weekly trend against the SLA targets and the most frequent
    causes. --html writes the dashboard (with each store's figures for its drill-down).
    """
    settings = Settings.from_env()
    zones = store_timezones(settings.stores_file)
    client = _client(settings)
    window = report_window(since, date_from, date_to, store, newest_ms(client), at_newest)
    data = recovery_report(client, window, zones, settings.rules_file, settings.sla_goal)
    title = f"Service recovery, {window.describe()}"
    newest = data["newest_data_ms"]
    if newest is not None and newest < window.since_ms and not data["total_incidents"]:
        typer.echo(f"journey: nothing in this range; the newest data is from {day(newest)} (a backfill?): "
                   "add --at-newest to count --since back from it, or give --from/--to dates", err=True)
    if html_file is not None:
        stores = {} if store else {
            s: recovery_report(client, replace(window, store=s), zones, settings.rules_file, settings.sla_goal)
            for s in stores_in(client, window.params())}
        try:
            html_file.write_text(render_html(data, title, stores), encoding="utf-8")
        except OSError as exc:
            raise JourneyError(f"--html {html_file}: cannot write it ({exc.strerror})") from None
        typer.echo(f"wrote {html_file}", err=True)
    if as_json:
        typer.echo(json.dumps(data, default=str))
        return
    console = Console() if Console().is_terminal else Console(width=160)  # pipes/logs: no width to fit
    print_report(data, title, console)


def customer(
    customer_id: str = typer.Argument(..., help="The customer_id their events carry."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """One customer's journeys and incidents: remember your customers."""
    from consumers.customer_profile import customer_profile

    settings = Settings.from_env()
    client = _client(settings)
    data = customer_history(client, customer_id)
    data["profile"] = customer_profile(client, customer_id)
    if as_json:
        typer.echo(json.dumps(data, default=str))
        return
    print_customer(data, Console())


def print_customer(data: dict[str, Any], console: Console) -> None:
    """One customer's incidents for a terminal: human durations, yes/no, '-' for none."""
    profile = data.get("profile")
    if profile is not None:
        console.print(f"first seen {human.text(profile['first_seen'])}, last visit "
                      f"{human.text(profile['last_visit'])}: {profile['journeys']} journeys, "
                      f"{profile['incidents']} incidents, {profile['recovered']} recovered"
                      f"{', a regular' if profile['regular'] else ''}")
    title = f"Customer {data['customer_id']}: {len(data['journeys'])} journeys, {len(data['incidents'])} incidents"
    console.print(_table(title, data["incidents"], [
        ("failed at", lambda i: i["failed_at"]), ("rule", lambda i: i["rule"]), ("severity", lambda i: i["severity"]),
        ("status", lambda i: i["status"]), ("time to resolve", lambda i: human.duration(i["time_to_resolve_s"])),
        ("compensation", lambda i: f"{i['compensation_kind']} {i['compensation_amount']:g}"
         if i["compensation_kind"] else None),
        ("recovered", lambda i: i["recovered"])]))


def forget(
    customer_id: str = typer.Argument(..., help="The customer whose data ClickHouse should drop."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object."),
) -> None:
    """Remove one customer's rows from ClickHouse and their table states from the workers' changelogs
    (tombstones); says what stays in Kafka until retention."""
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
    gone = ", ".join(f"{n} in {topic}" for topic, n in done.tombstoned.items()) or "none (no worker tables yet)"
    typer.echo(f"tombstones in the workers' compacted changelogs: {gone}")
    typer.echo("still in Kafka until the topics' retention expires (a replay into ClickHouse would bring them "
               f"back): {', '.join(done.still_in_kafka)}; open journeys stay in the workers' state until they "
               "expire (2 days, 30 with an incident)")


def register(app: typer.Typer) -> None:
    app.command()(report)
    app.command()(customer)
    app.command()(forget)
