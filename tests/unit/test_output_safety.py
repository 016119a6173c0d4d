"""Text from outside leaves as text (Slack, logs, terminals); staff actions only from staff; child environments."""

from __future__ import annotations

import io
import logging

import pytest

from consumers.webhooks import slack_payload
from infra.base.escaping import OneLineFormatter, slack, terminal
from infra.local.processes import child_environment
from schemas.contract import ContractError, validate_event
from schemas.event_types import RECOVERY_TYPES
from streams.collector.intake import check_events

HOSTILE = "<!channel> <https://evil.example|click> & \x1b[2J\x1b]0;owned\x07\nFAKE 00:00 resolved"


def test_slack_sees_text_not_mrkdwn() -> None:
    alert = {"message": f"complaint from {HOSTILE}", "severity": "high", "rule": "complaint", "store_id": "s-1",
             "journey_id": "j-1", "customer_id": HOSTILE, "level": 1, "kind": "triggered", "alert_id": "a-1",
             "incident_id": "i-1", "at": "2026-11-30T12:00:00Z"}
    payload = slack_payload(alert)
    texts = [payload["text"], payload["attachments"][0]["footer"]] + \
        [f["value"] for f in payload["attachments"][0]["fields"]]
    for text in texts:
        assert "<" not in text and ">" not in text and "\x1b" not in text and "\n" not in text
    assert "&lt;!channel&gt; &lt;https://evil.example|click&gt; &amp;" in payload["text"]
    assert slack("a & b") == "a &amp; b"


def test_terminals_and_logs_get_one_escaped_line() -> None:
    shown = terminal(HOSTILE)
    assert "\x1b" not in shown and "\x07" not in shown and "\n" not in shown
    assert "\\x1b[2J" in shown and "\\n" in shown
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(OneLineFormatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("test.one_line")
    logger.addHandler(handler)
    logger.propagate = False
    logger.warning("ack of %s", "c-1\n2026-11-30 INFO journey.notifier resolved everything\u2028x")
    assert stream.getvalue().count("\n") == 1 and "\\n2026-11-30" in stream.getvalue()


@pytest.mark.parametrize("value", ["c-1\nforged", "c-\x1b[31m", "c\u2028x", "c\x00", "c\x85x"])
def test_control_characters_are_refused_in_ids(value: str) -> None:
    event = {"event_id": "e-1", "journey_id": "j-1", "customer_id": value, "type": "VISIT", "channel": "web",
             "occurred_at": "2026-11-30T12:00:00Z"}
    with pytest.raises(ContractError, match="customer_id.*control character"):
        validate_event(event)
    event["customer_id"] = "고객-7 ü"  # printable text of any script stays fine
    assert validate_event(event)["customer_id"] == "고객-7 ü"


def test_recovery_events_only_from_staff_sources() -> None:
    events = [{"event_id": f"e-{t}", "journey_id": "j-1", "type": t, "channel": "staff",
               "occurred_at": "2026-11-30T12:00:00Z"} for t in sorted(RECOVERY_TYPES)]
    visit = {"event_id": "e-v", "journey_id": "j-1", "type": "VISIT", "channel": "web",
             "occurred_at": "2026-11-30T12:00:00Z"}
    public = check_events([*events, visit], "web")
    assert [c.valid for c in public] == [False] * len(events) + [True]  # refused one by one, the rest goes in
    assert all("staff action" in (c.reason or "") and "JOURNEY_COLLECTOR_STAFF_SOURCES" in (c.reason or "")
               for c in public[:-1])
    assert all(c.valid for c in check_events(events, "pos-seoul", staff=True))


def test_a_child_gets_the_stack_s_configuration_and_only_its_own_secrets() -> None:
    environ = {"PATH": "/bin", "HOME": "/root", "JOURNEY_HOME": "/h", "KAFKA_BOOTSTRAP_SERVERS": "k:9092",
               "CLICKHOUSE_USER": "default", "CLICKHOUSE_PASSWORD": "pw", "JOURNEY_ONCALL_TOKEN": "tok",
               "JOURNEY_WEBHOOKS": "ops=http://hook", "JOURNEY_COLLECTOR_KEYS": "web=k", "AWS_SECRET_ACCESS_KEY": "x",
               "CLICKHOUSE_READONLY_PASSWORD": "ro"}
    sink = child_environment(environ, ("CLICKHOUSE_PASSWORD",))
    assert sink == {"PATH": "/bin", "HOME": "/root", "JOURNEY_HOME": "/h", "KAFKA_BOOTSTRAP_SERVERS": "k:9092",
                    "CLICKHOUSE_USER": "default", "CLICKHOUSE_PASSWORD": "pw"}
    assert child_environment(environ, (), with_config=False) == {"PATH": "/bin", "HOME": "/root"}
    with pytest.raises(ValueError, match="not secret variables"):
        child_environment(environ, ("PATH",))
