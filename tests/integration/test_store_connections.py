"""How the store's connections talk to PostgreSQL: statements prepared once, planned each time.

A generic plan, chosen once while the tables are small, grows with the tables (a scan of every
fill or order against a batch's ids); parsing each statement on every batch costs time. The
store prepares every statement on its first run and forces custom plans, on every connection
its pool makes — except the two statements of the statistics step, which read and write only the
per-date tables (a row a day): they keep one generic plan, as planning was most of their cost.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager

import psycopg
import pytest
import redis

from consumer.db import PostgresStore
from consumer.db import connection as connection_module
from consumer.errors import DatabaseUnavailableError, LeaseLostError, RejectedByDatabaseError
from consumer.events import FillEvent
from consumer.publisher import Publisher
from consumer.records import EntryKey, ParsedEntry, RawEntry
from consumer.worker import parse_raw, stream_kinds
from tests.support.pipeline import rows


def _batches(settings, count: int, size: int) -> list[list[ParsedEntry]]:
    publisher = Publisher.for_settings(redis.Redis(), settings, seed=5, malformed_ratio=0.0)
    kinds = stream_kinds(settings)
    items = []
    for i, entry in enumerate(publisher.entries(count * size)):
        raw = RawEntry(EntryKey(entry.stream, f"{i + 1}-0"), entry.fields)
        items.append(ParsedEntry(raw, parse_raw(kinds, raw)))
    return [items[k : k + size] for k in range(0, len(items), size)]


def test_every_store_connection_prepares_and_plans_each_run(db_url, settings):
    store = PostgresStore(db_url, group="g")
    store.open()
    try:
        with store._transaction() as conn:
            assert conn.execute("SHOW plan_cache_mode").fetchone() == {
                "plan_cache_mode": "force_custom_plan"
            }
            assert conn.prepare_threshold == 0
        # Eight real batches on the pool's one connection: past PostgreSQL's five custom
        # plans, a statement left to plan_cache_mode = auto could switch to a generic plan.
        for batch in _batches(settings, count=8, size=40):
            store.write_batch(batch)
        with store._transaction() as conn:
            assert conn.execute("SHOW plan_cache_mode").fetchone() == {
                "plan_cache_mode": "force_custom_plan"  # the batch's SET LOCAL ended with it
            }
            plans = conn.execute(
                "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements "
                "WHERE cardinality(parameter_types) > 0"
            ).fetchall()
    finally:
        store.close()
    stats = [r for r in plans if "paper_stats_sums" in r["statement"]]  # the two of its step
    others = [r for r in plans if r not in stats]
    assert len(stats) == 2, plans
    assert all(r["generic_plans"] >= 1 for r in stats), stats  # batches may use 2 connections
    assert all(r["custom_plans"] == 0 for r in stats), stats
    # A statement without parameters has one plan only, which PostgreSQL counts as generic;
    # every other statement with parameters was planned for its values, every time.
    assert any("paper_orders" in r["statement"] for r in others), others
    assert all(r["generic_plans"] == 0 and r["custom_plans"] > 0 for r in others), others


def _kill_other_connections(db_url: str) -> int:
    """Terminate every other connection to this test's database (the store's); how many."""
    with psycopg.connect(db_url, autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    return int(row[0]) if row else 0


@contextmanager
def _connections_killed_after_a_batch(db_url, settings):
    """A store that committed one batch, after which the server dropped its connections;
    yields it with the next batch and how many fills that batch carries."""
    first, second = _batches(settings, count=2, size=40)
    store = PostgresStore(db_url, group="g")
    store.open()
    try:
        store.write_batch(first)
        assert _kill_other_connections(db_url) >= 1
        yield store, second, sum(isinstance(i.event, FillEvent) for i in second)
    finally:
        store.close()


def test_a_connection_killed_between_batches_fails_one_attempt_then_the_pool_heals(
    db_url, settings
):
    """A connection used a moment ago is handed out without a ping (RECENT_S). If the server
    dropped it meanwhile, the batch fails as unavailable — nothing applied — and the broken
    connection is discarded: the retry commits on a new one."""
    with _connections_killed_after_a_batch(db_url, settings) as (store, second, fills):
        with pytest.raises(DatabaseUnavailableError):
            store.write_batch(second)
        assert store.write_batch(second).fills_inserted == fills
    assert rows(db_url, "SELECT count(*) AS n FROM paper_consumer_offsets")[0]["n"] > 0


def test_a_connection_idle_for_a_while_is_pinged_and_replaced_if_dead(
    db_url, settings, monkeypatch
):
    """Past RECENT_S the pool pings before handing a connection out: a dead one is replaced
    and the batch commits on the first attempt."""
    monkeypatch.setattr(connection_module, "RECENT_S", 0.0)
    with _connections_killed_after_a_batch(db_url, settings) as (store, second, fills):
        assert store.write_batch(second).fills_inserted == fills


# One batch's transaction in pipeline mode sends BEGIN and COMMIT itself (no wait after BEGIN or
# before COMMIT). Whatever ends it early, nothing it wrote stays and the connection is reusable.
_MARK = (
    "INSERT INTO paper_consumer_offsets (group_name, stream_name, last_entry_id) "
    "VALUES ('t', 's', '1-0')"
)
_MARKS = "SELECT count(*) AS n FROM paper_consumer_offsets WHERE group_name = 't'"


def _ends_then_reusable(
    db_url: str, body, expected: type[BaseException], caplog, *, times: int = 1
) -> None:
    """Also: psycopg never had to clean up after us (a pool rolling back a returned
    connection, or a pipeline ended in error, says so at WARNING)."""
    caplog.set_level(logging.WARNING, logger="psycopg")
    store = PostgresStore(db_url, group="g")
    store.open()
    try:
        for _ in range(times):
            with pytest.raises(expected):  # noqa: PT012, SIM117 - the transaction is what raises
                with store._transaction(pipeline=True) as conn:
                    conn.execute(_MARK)
                    body(conn)
        with store._transaction(pipeline=True) as conn:
            assert conn.execute(_MARKS).fetchone() == {"n": 0}
        with store._transaction(pipeline=True) as conn:
            conn.execute(_MARK)
        assert rows(db_url, _MARKS)[0]["n"] == 1
    finally:
        store.close()
    assert [r for r in caplog.records if r.name.startswith("psycopg")] == []


def test_a_refusal_found_only_at_the_final_sync_rolls_the_transaction_back(db_url, caplog):
    # The failing statement's result is never read: the error comes with COMMIT's sync.
    _ends_then_reusable(
        db_url, lambda conn: conn.execute("SELECT 1 / 0"), RejectedByDatabaseError, caplog
    )


def test_a_refusal_read_mid_batch_rolls_the_transaction_back(db_url, caplog):
    def refused_then_more(conn):
        conn.execute("SELECT 1 / 0")  # its result is never read, like a batch's upserts
        conn.execute(_MARKS).fetchall()  # skipped by the server: the error surfaces here

    _ends_then_reusable(db_url, refused_then_more, RejectedByDatabaseError, caplog)


def test_an_error_of_ours_mid_batch_rolls_the_transaction_back(db_url, caplog):
    def fail(conn):
        raise LeaseLostError("fenced")

    _ends_then_reusable(db_url, fail, LeaseLostError, caplog)


def test_a_refusal_already_answered_when_commit_is_sent_rolls_back_cleanly(db_url, caplog):
    """Sending COMMIT reads the answers already in: the refusal then comes from that send.
    Three times, so that the statements are prepared and the answer has arrived."""

    def refused_then_a_pause(conn):
        conn.execute("SELECT 1 / 0")
        conn.execute(_MARKS)
        time.sleep(0.05)

    _ends_then_reusable(db_url, refused_then_a_pause, RejectedByDatabaseError, caplog, times=3)
