"""The notifier: incident changes in, alerts out (topic, webhooks, on-call page), pipeline watched.

    python -m consumers.notifier          (started by `journey up`)

On start it restores the alert state from the alerts already published, then reads the
silences and incidents topics from the beginning: incidents it already paged are recognised
(`AlertBook.restore`), so a restart pages nobody twice and forgets no escalation. Alerts go to
the alerts topic first (acks=all), then to the webhooks their route names. The same process
serves the live on-call page and watches the pipeline (heartbeats, watermarks, lags).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections import Counter, deque
from dataclasses import asdict
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from consumers.alert_book import Alert, AlertBook, delivery_failed_alert
from consumers.alert_policy import load_alert_policy
from consumers.dashboard import add_dashboard
from consumers.oncall_page import create_web_app
from consumers.pipeline_health import StallDetector, probe
from consumers.recovery_actions import ActionRefused, check_action, recovery_event
from consumers.webhooks import WebhookDispatcher
from infra.base.config import Settings
from infra.base.escaping import escape_log_lines
from infra.base.heartbeat import write_heartbeat
from infra.base.kafka_clients import client_args
from infra.base.quarantine import publish as publish_quarantined
from infra.base.schema_registry import connect as connect_schema_registry
from infra.base.secrets import oncall_token
from schemas.codec import DecodeError, decode, encode
from schemas.contract import check_contract
from streams.domain.config import load_detection_config

log = logging.getLogger("journey.notifier")

TICK_S = 0.5
HEALTH_EVERY_S = 2.0
RECENT_ALERTS = 30
FETCH_WAIT_MS = 20
ACT_SEND_TIMEOUT_S = 8.0  # below the CLI's 15 s: the person acking hears why, not "no answer"


def _now_ms() -> int:
    return int(time.time() * 1000)


class Notifier:
    """Ties the alert book to Kafka, the webhooks and the on-call page."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        connect_schema_registry(settings)
        policy = load_alert_policy(settings.rules_file)
        detection = load_detection_config(settings.rules_file, settings.stores_file)
        self.book = AlertBook(policy, detection, list(settings.webhooks))
        self.stalls = StallDetector(policy.stall_after_s, policy.sink_lag_alert)
        self.token = oncall_token(settings)
        self.recent: deque[Alert] = deque(maxlen=RECENT_ALERTS)
        self.counts: Counter[str] = Counter()
        self.health: dict[str, Any] = {}
        self.problems: dict[str, str | None] = {}
        self.restored = 0
        self.webhooks = WebhookDispatcher(dict(settings.webhooks), on_gave_up=self._delivery_failed)
        self._stop = asyncio.Event()

    # ---- the on-call page's backend --------------------------------------------------------------

    def page_state(self) -> dict[str, Any]:
        now = _now_ms()
        silences = [{"silence_id": s.silence_id, "describe": s.describe(), "ends_at": s.ends_at,
                     "comment": s.comment} for s in self.book.silences.active(now)]
        return {"now": now, "incidents": self.book.open_incidents(now), "pipeline": self.problems,
                "recent_alerts": list(reversed(self.recent)), "silences": silences}

    def incident_state(self, incident_id: str) -> dict[str, Any]:
        if self.book.is_closed(incident_id):
            raise ActionRefused(f"incident {incident_id} is already resolved (or withdrawn)", 409)
        tracked = self.book.open.get(incident_id)
        if tracked is None or "version" not in tracked.incident:
            raise ActionRefused(f"unknown incident {incident_id}: no open incident has this id "
                                "(`journey alerts` or the on-call page list them)", 404)
        return tracked.incident

    async def act(self, action: str, incident_id: str, by: str, note: str | None) -> dict[str, Any]:
        """Acknowledge or resolve: emit the recovery event to the touchpoints topic (acks=all)."""
        closed = self.book.is_closed(incident_id)
        tracked = self.book.open.get(incident_id)
        state = tracked.incident if tracked is not None and "version" in tracked.incident else None
        check_action(action, incident_id, state, closed)
        assert state is not None
        event = recovery_event(state, action, by, note, _now_ms())
        check_contract(event)
        try:
            await asyncio.wait_for(self.producer.send_and_wait(
                self.settings.topics.touchpoints, encode("touchpoint", event), key=event["journey_id"].encode()),
                ACT_SEND_TIMEOUT_S)
        except (KafkaError, TimeoutError):
            raise ActionRefused(
                f"the Kafka broker did not take the {event['type']} event within {ACT_SEND_TIMEOUT_S:.0f} s "
                f"(not reachable at {self.settings.bootstrap_servers}?); it may still arrive once the broker is "
                "back, and a repeated ack is refused, so trying again is safe", 503) from None
        log.info("%s of %s by %s emitted as %s", action, incident_id, by, event["event_id"])
        return {"incident_id": incident_id, "event_id": event["event_id"], "type": event["type"]}

    async def act_group(self, action: str, group_key: str, by: str, note: str | None) -> dict[str, Any]:
        """Acknowledge or resolve every open incident of a group (one recovery event each)."""
        members = self.book.group_members(group_key, action)
        if not members:
            raise ActionRefused(f"no open incident in group {group_key!r} to {action} (`journey alerts` or the "
                                "on-call page name the groups, e.g. busan-01/promise_breach)", 404)
        done, refused = [], []
        for incident_id in members:
            try:
                done.append(await self.act(action, incident_id, by, note))
            except ActionRefused as exc:
                if exc.status == 503:
                    raise  # the broker is gone: the rest would fail the same way
                refused.append({"incident_id": incident_id, "error": str(exc)})
        return {"group": group_key, "done": done, "refused": refused}

    # ---- running -------------------------------------------------------------------------------

    async def run(self) -> None:
        s = self.settings
        # No idempotence: Tansu answers aiokafka's InitProducerId with an unknown error. A retried
        # send can repeat an alert; its deterministic alert_id collapses it in ClickHouse.
        self.producer = AIOKafkaProducer(**client_args(s, producer=True), acks="all", linger_ms=0)
        await self.producer.start()
        await self.webhooks.start()
        app = add_dashboard(create_web_app(self), s, self.token)  # the managers' dashboard beside the on-call page
        runner = web.AppRunner(app, access_log=None)  # no access log: no tokens in logs
        await runner.setup()
        await web.TCPSite(runner, s.host, s.web_port).start()
        try:
            await self._restore()
            # A short fetch wait: the broker answers an empty fetch after it, and a new incident
            # waits for the next fetch (Tansu does not cut the wait short when data arrives).
            reader = AIOKafkaConsumer(s.topics.silences, s.topics.incidents, **client_args(s),
                                      group_id=None, auto_offset_reset="earliest", enable_auto_commit=False,
                                      fetch_max_wait_ms=FETCH_WAIT_MS)
            await reader.start()
            try:
                await asyncio.gather(self._consume(reader), self._clock(), self._watch_pipeline())
            finally:
                await reader.stop()
        finally:
            await self.webhooks.stop()
            await runner.cleanup()
            await self.producer.stop()

    def stop(self) -> None:
        self._stop.set()

    async def _restore(self) -> None:
        """Rebuild the alert state from the alerts topic (read to its end)."""
        s = self.settings
        reader = AIOKafkaConsumer(s.topics.alerts, **client_args(s), group_id=None,
                                  auto_offset_reset="earliest", enable_auto_commit=False)
        await reader.start()
        try:
            while not reader.assignment():
                await reader.getmany(timeout_ms=100)
            parts = list(reader.assignment())
            ends = await reader.end_offsets(parts)
            # position >= the reported end means the last batch arrived (Tansu reports base offset + 1)
            while [p for p in parts if await reader.position(p) < ends[p]]:
                for messages in (await reader.getmany(timeout_ms=500)).values():
                    for message in messages:
                        try:
                            self.book.restore(decode(message.value, "alert"))
                            self.restored += 1
                        except DecodeError as exc:
                            log.warning("alerts topic: skipping an unreadable record (%s)", exc)
        finally:
            await reader.stop()
        log.info("restored alert state from %d published alerts (%d incidents open)", self.restored,
                 len(self.book.open))

    async def _consume(self, reader: AIOKafkaConsumer) -> None:
        topics = self.settings.topics
        while not self._stop.is_set():
            batch = await reader.getmany(timeout_ms=200, max_records=2000)
            alerts: list[Alert] = []
            for messages in batch.values():
                for message in messages:
                    try:
                        if message.topic == topics.silences:
                            self.book.silences.apply(decode(message.value, "silence"))
                        else:
                            alerts += self.book.on_incident(decode(message.value, "incident"), _now_ms())
                    except DecodeError as exc:
                        log.warning("%s: skipping an unreadable record at offset %d (%s)", message.topic,
                                    message.offset, exc)
            await self._publish(alerts)
            await publish_quarantined(self.settings, self.producer)

    async def _clock(self) -> None:
        while not self._stop.is_set():
            await self._publish(self.book.tick(_now_ms()))
            self._beat()
            await asyncio.sleep(TICK_S)

    async def _watch_pipeline(self) -> None:
        while not self._stop.is_set():
            try:
                snapshot = await asyncio.to_thread(probe, self.settings, _now_ms())
            except Exception:  # a failed probe must not stop alerting: log it, try again
                log.exception("pipeline probe failed")
            else:
                self.problems = self.stalls.assess(snapshot)
                self.health = {**snapshot, "dead_letters_per_min": self.stalls.dead_letters_per_min,
                               "problems": self.problems, "busy": dict(self.stalls.busy)}
                alerts: list[Alert] = []
                for component, problem in self.problems.items():
                    alerts += self.book.on_pipeline(component, problem, snapshot["at"])
                await self._publish(alerts)
            try:
                await asyncio.wait_for(self._stop.wait(), HEALTH_EVERY_S)
            except TimeoutError:
                pass

    async def _publish(self, alerts: list[Alert]) -> None:
        """Alerts to the topic (retrying until the broker has them), then to their webhooks."""
        if not alerts:
            return
        delay = 0.2
        while True:
            try:
                sent = [await self.producer.send(self.settings.topics.alerts, encode("alert", a),
                                                 key=a["incident_id"].encode()) for a in alerts]
                await asyncio.gather(*sent)
                break
            except KafkaError as exc:
                log.warning("could not publish %d alerts (%s); retrying in %.1f s", len(alerts), exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        for alert in alerts:
            self.counts[alert["kind"]] += 1
            self.counts["paged"] += alert["paged"] and alert["kind"] == "triggered"
            self.recent.append(alert)
            log.info("%s", alert["message"])
            if alert["paged"]:
                self.webhooks.submit(alert)

    async def _delivery_failed(self, alert: Alert, webhook: str, error: str, attempts: int) -> None:
        await self._publish([delivery_failed_alert(alert, webhook, error, attempts, _now_ms())])

    def _beat(self) -> None:
        write_heartbeat(self.settings, "notifier", {
            "open_incidents": len(self.book.open), "alerts": dict(self.counts), "restored": self.restored,
            "webhooks": asdict(self.webhooks.stats), "web": f"http://{self.settings.host}:{self.settings.web_port}/",
            "silences": len(self.book.silences.active(_now_ms())), "health": self.health,
        })


def main() -> None:
    """Run the notifier until SIGTERM."""
    settings = Settings.from_env()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    escape_log_lines()  # one line per record, whatever an id holds
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    loop = asyncio.new_event_loop()
    notifier = Notifier(settings)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, notifier.stop)
    loop.run_until_complete(notifier.run())


if __name__ == "__main__":
    main()
