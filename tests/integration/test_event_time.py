"""Time you can trust (issue 17, clocks and watermarks) against the real broker and ClickHouse."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from infra.base.clickhouse import get_client
from infra.base.config import Settings
from infra.base.migrations import MIGRATIONS_DIR, apply_sql, render

pytestmark = pytest.mark.integration


def _in_database(sql: str, database: str) -> str:
    return sql.replace("journey.", f"{database}.").replace("'journey'", f"'{database}'")


def test_touchpoints_of_an_existing_data_dir_move_to_the_event_id_key_and_a_restamped_retry_is_one_row(
        stack_settings: Settings) -> None:
    """Case 9, on an existing data dir: migration 0008 copies the old table's rows into the new
    layout (deduplicated by event_id alone) and can be run again after a failure at any step."""
    client = get_client(stack_settings.clickhouse_url, stack_settings.clickhouse_user,
                        stack_settings.clickhouse_password)
    database = f"mig_{uuid.uuid4().hex[:8]}"
    client.command(f"CREATE DATABASE {database}")
    try:
        old = _in_database(render((MIGRATIONS_DIR / "0001_touchpoints.sql").read_text(), None), database)
        apply_sql(client, old)
        columns = ("event_id, journey_id, type, stage, channel, occurred_at, attrs, kafka_partition, kafka_offset, "
                   "ingested_at")

        def insert(event_id: str, occurred: str, offset: int) -> None:
            client.command(f"INSERT INTO {database}.touchpoints ({columns}) VALUES ('{event_id}', 'j-1', 'VISIT', "
                           f"'before', 'pos', '{occurred}', map(), 0, {offset}, '2026-11-30 10:00:0{offset}.000')")

        insert("e-1", "2026-11-01 00:00:01.000", 2)  # a retry that re-stamped occurred_at (another month) ...
        insert("e-1", "2026-10-31 23:59:59.000", 1)  # ... stored before the first (ingested_at says which is newer)
        assert client.command(f"SELECT count() FROM {database}.touchpoints FINAL") == 2  # the old key

        new = _in_database(render((MIGRATIONS_DIR / "0008_touchpoint_times_dedupe_by_event.sql").read_text(), None),
                           database)
        apply_sql(client, new)
        apply_sql(client, new)  # a half-applied run repeated: copy and swap are not done twice
        rows: list[Any] = client.query(f"SELECT event_id, kafka_offset, received_at FROM {database}.touchpoints FINAL"
                                       ).result_rows
        assert rows == [("e-1", 2, None)]  # one row per event id: the newest write wins
        client.command(f"INSERT INTO {database}.touchpoints (event_id, journey_id, type, stage, channel, occurred_at, "
                       "attrs, kafka_partition, kafka_offset, sent_at, received_at) VALUES ('e-2', 'j-1', 'VISIT', "
                       "'before', 'web', '2026-11-30 09:00:00.000', map(), 0, 3, '2026-11-30 09:00:01.000', "
                       "'2026-11-30 12:00:01.500')")
        skew = client.command(f"SELECT clock_skew_ms FROM {database}.touchpoints FINAL WHERE event_id = 'e-2'")
        assert skew == 3 * 3_600_000 + 500  # received - sent: the device runs 3 h slow
        flag = client.command(f"SELECT clock_flag FROM {database}.touchpoints FINAL WHERE event_id = 'e-2'")
        assert flag == "skew corrected"
        assert not client.command(f"EXISTS TABLE {database}.touchpoints_by_event")
    finally:
        client.command(f"DROP DATABASE IF EXISTS {database}")
