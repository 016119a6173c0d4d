"""Webhook delivery: Slack-compatible JSON, one queue per webhook, retries with backoff.

Each webhook has its own queue and task, so a slow or failing receiver never delays the
others. A delivery is retried with exponential backoff; when it gives up, `on_gave_up` is told
(the notifier records it on the alerts topic). URLs are secrets: logs name the webhook only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from infra.base.escaping import slack

log = logging.getLogger("journey.webhooks")

SEVERITY_COLOR = {"low": "#439FE0", "medium": "warning", "high": "danger", "critical": "#8B0000"}


def slack_payload(alert: dict[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message for an alert (also fine for most chat/webhook receivers)."""
    # Ids and the message carry text from outside (a customer id from a web page): Slack must
    # show it, not read `<!channel>` or `<https://...|link>` in it as mrkdwn.
    shown = ("severity", "rule", "store_id", "journey_id", "customer_id", "level")
    fields = [{"title": k.replace("_", " "), "value": slack(str(alert[k])), "short": True}
              for k in shown if alert.get(k) is not None]
    return {
        "text": slack(alert["message"]),
        "attachments": [{"color": SEVERITY_COLOR.get(alert["severity"], "warning"), "fields": fields,
                         "footer": slack(f"journey {alert['kind']} {alert['alert_id']}")}],
        "alert": {k: alert[k] for k in ("alert_id", "incident_id", "journey_id", "store_id", "kind", "level",
                                        "severity", "rule", "at")},
    }


@dataclass
class DeliveryStats:
    delivered: int = 0
    retries: int = 0
    gave_up: int = 0
    pending: int = 0


@dataclass
class WebhookDispatcher:
    """Delivers alerts to the webhooks named in their `channels` (`webhook:<name>`)."""

    urls: dict[str, str]
    on_gave_up: Callable[[dict[str, Any], str, str, int], Awaitable[None]]
    max_attempts: int = 6
    first_delay_s: float = 0.5
    max_delay_s: float = 30.0
    timeout_s: float = 5.0
    stats: DeliveryStats = field(default_factory=DeliveryStats)
    _queues: dict[str, asyncio.Queue[dict[str, Any]]] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        for name in self.urls:
            self._queues[name] = asyncio.Queue()
            self._tasks.append(asyncio.create_task(self._deliver_all(name), name=f"webhook-{name}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._session.close()

    def submit(self, alert: dict[str, Any]) -> None:
        """Queue `alert` for each webhook its channels name (returns at once)."""
        for channel in alert["channels"]:
            name = channel.removeprefix("webhook:")
            if channel.startswith("webhook:") and name in self._queues:
                self._queues[name].put_nowait(alert)
                self.stats.pending += 1

    async def _deliver_all(self, name: str) -> None:
        queue = self._queues[name]
        while True:
            alert = await queue.get()
            try:
                await self._deliver(name, alert)
            finally:
                self.stats.pending -= 1

    async def _deliver(self, name: str, alert: dict[str, Any]) -> None:
        delay = self.first_delay_s
        error = ""
        for attempt in range(1, self.max_attempts + 1):
            error = await self._post(name, alert)
            if not error:
                self.stats.delivered += 1
                return
            if attempt == self.max_attempts:
                break
            self.stats.retries += 1
            log.warning("webhook %s: %s (attempt %d/%d for %s); retrying in %.1f s",
                        name, error, attempt, self.max_attempts, alert["alert_id"], delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_delay_s)
        self.stats.gave_up += 1
        log.error("webhook %s: %s; gave up on %s after %d attempts", name, error, alert["alert_id"],
                  self.max_attempts)
        await self.on_gave_up(alert, name, error, self.max_attempts)

    async def _post(self, name: str, alert: dict[str, Any]) -> str:
        """'' when the receiver took it, else a short reason (never the URL: it is a secret)."""
        try:
            async with self._session.post(self.urls[name], json=slack_payload(alert)) as response:
                if 200 <= response.status < 300:
                    return ""
                return f"HTTP {response.status}"
        except TimeoutError:
            return f"no answer within {self.timeout_s:.0f} s"
        except aiohttp.ClientError as exc:
            return f"connection failed ({type(exc).__name__})"
