"""Outbox rows are kept for their window and no longer; inbox rows outlive that window."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from choreo.outbox import deadletter, inbox
from choreo.outbox.delivery import Delivery
from choreo.outbox.errors import ConfigError
from choreo.outbox.runner import pruning_jobs
from choreo.outbox.settings import ServiceSettings
from choreo.outbox.writer import prune
from tests.support import WRITER


@pytest.mark.postgres
def test_prune_deletes_only_what_left_the_window(probe_database: str) -> None:
    key = f"ret-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(probe_database) as conn:
        old = WRITER.emit(conn, "OrderConfirmed", key, {"order_id": key, "total_cents": 1})
        new = WRITER.emit(conn, "OrderConfirmed", key, {"order_id": key, "total_cents": 2})
        conn.execute("UPDATE outbox SET created_at = now() - interval '20 minutes'"
                     " WHERE id = %s", (old,))
        inbox.claim(conn, "retention-test", old)
        conn.execute("UPDATE inbox SET handled_at = now() - interval '8 days'"
                     " WHERE event_id = %s", (old,))
        inbox.claim(conn, "retention-test", new)
        conn.commit()
        assert prune(conn, retention_s=900) >= 1
        assert inbox.prune(conn, retention_s=7 * 24 * 3600) >= 1
        conn.commit()
        kept = {row[0] for row in conn.execute(
            "SELECT id FROM outbox WHERE aggregateid = %s", (key,))}
        handled = {row[0] for row in conn.execute(
            "SELECT event_id FROM inbox WHERE consumer = 'retention-test'")}
    assert kept == {new}
    assert new in handled and old not in handled


def test_inbox_must_outlive_the_outbox_window() -> None:
    env = {"CHOREO_DATABASE_URL": "postgresql://x@127.0.0.1:1/x",
           "CHOREO_OUTBOX_RETENTION_S": "3600", "CHOREO_INBOX_RETENTION_S": "600"}
    with pytest.raises(ConfigError, match="CHOREO_INBOX_RETENTION_S"):
        ServiceSettings.from_env("test", env)


@pytest.mark.postgres
def test_settled_dead_letters_are_pruned_and_active_ones_kept(probe_database: str) -> None:
    consumer = f"prune-{uuid.uuid4().hex[:8]}"
    statuses = ("dead", "parked", "replay", "discard", "replayed", "discarded")
    with psycopg.connect(probe_database) as conn:
        for age_days in (40, 1):
            for status in statuses:
                delivery = Delivery("order.events", 0, 0, f"{status}-{age_days}", b"x",
                                    {"ce_id": str(uuid.uuid4()), "ce_type": "OrderConfirmed"})
                deadletter.record(conn, consumer, delivery, status=status, reason="test",
                                  attempts=1)
        conn.execute("UPDATE dead_letters SET updated_at = now() - interval '40 days'"
                     " WHERE consumer = %s AND aggregate_key LIKE '%%-40'", (consumer,))
        conn.commit()
        assert deadletter.prune(conn, retention_s=30 * 24 * 3600) == 2
        conn.commit()
        kept = {row[0] for row in conn.execute(
            "SELECT aggregate_key FROM dead_letters WHERE consumer = %s", (consumer,))}
    assert kept == {f"{status}-{age}" for status in statuses for age in (40, 1)} \
        - {"replayed-40", "discarded-40"}


@pytest.mark.postgres
def test_one_pruning_round_keeps_up_with_more_than_a_batch(probe_database: str) -> None:
    """Finding 7: a round deleted at most 5,000 rows (every 30 s for the outbox), which an
    outbox writing over ~170 rows/s outgrows for ever. A round now deletes batch after
    batch, each committed on its own, until a batch comes back short."""
    key = f"bulk-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(probe_database) as conn:
        WRITER.emit(conn, "OrderConfirmed", key, {"order_id": key, "total_cents": 1})
        conn.execute(
            "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload, dataschema,"
            " source, occurred_at, created_at)"
            " SELECT gen_random_uuid(), aggregatetype, aggregateid, type, payload, dataschema,"
            " source, occurred_at, now() - interval '20 minutes'"
            " FROM outbox, generate_series(1, 12000) WHERE aggregateid = %s", (key,))
        conn.commit()
        job = next(job for job in pruning_jobs(ServiceSettings.from_env(
            "test", {"CHOREO_DATABASE_URL": probe_database})) if job.name == "prune-outbox")
        job.run(conn, WRITER)
        conn.commit()
        left = conn.execute("SELECT count(*) FROM outbox WHERE aggregateid = %s",
                            (key,)).fetchone()
    assert left == (1,)
