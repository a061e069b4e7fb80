"""Least privilege: the worker runs as ``claire_user`` with only the grants it needs.

A real worker batch goes through ``PostgresStore`` logged in as a member of claire_user (orders,
fills, positions, stats, offsets, the ledger, what 004 adds, and 006's shard leases); so do a
replay into an empty database and a prune (issue 22.2); then every kind of statement the runtime
role must NOT be able to run is tried, and PostgreSQL must refuse it. After each tool ran, its
fills must be out of the runtime role's reach: no DELETE (008 revoked it), no delete through the
ON DELETE CASCADE of an order (008's trigger), no lock that would stop the worker.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import errors, sql
from pydantic import SecretStr

from consumer import migrations, replay, retention
from consumer.leases import ShardRunner
from consumer.settings import Settings
from consumer.shards import all_shard_streams, shard_key, shard_of
from tests.support.pipeline import publish, rows, run_until_idle
from tests.support.roles import runtime_login

PASSWORD = "rt-pw-not-a-real-one"  # noqa: S105 - a test password; trust auth ignores it


# The ledger of fills: what the runtime role may read and append to, nothing else.
FILLS_OUT_OF_REACH = [
    "DELETE FROM paper_fills",
    "DELETE FROM paper_fills WHERE fill_id = 'f1'",
    # ON DELETE CASCADE runs as the table's owner: 008's trigger refuses it for claire_user
    "DELETE FROM paper_orders WHERE order_id IN (SELECT order_id FROM paper_fills)",
    "DELETE FROM paper_orders",
    "LOCK TABLE paper_fills IN ACCESS EXCLUSIVE MODE",
    "LOCK TABLE paper_fills IN EXCLUSIVE MODE",
    "LOCK TABLE paper_fills IN SHARE MODE",
    "SELECT * FROM paper_fills FOR UPDATE",
    "UPDATE paper_fills SET quantity = quantity",
    "TRUNCATE paper_fills",
]


def assert_fills_out_of_reach(runtime_url: str, db_url: str) -> None:
    """Every statement of ``FILLS_OUT_OF_REACH`` fails for the runtime role; no fill moved."""
    before = rows(db_url, "SELECT * FROM paper_fills ORDER BY fill_id")
    assert before, "no fill to protect"
    for statement in FILLS_OUT_OF_REACH:
        with psycopg.connect(runtime_url) as conn, pytest.raises(errors.InsufficientPrivilege):
            conn.execute(statement)
    assert rows(db_url, "SELECT * FROM paper_fills ORDER BY fill_id") == before


@pytest.fixture
def runtime_url(pg_server_url, db_url):
    with runtime_login(pg_server_url, db_url, PASSWORD) as url:
        yield url


def _publish_a_day_of_trading(client, names):
    orders, fills, marks = names["orders_stream"], names["fills_stream"], names["marks_stream"]
    publish(client, orders, {"order_id": "o1", "symbol": "BTCUSDT", "side": "BUY",
                             "quantity": "2", "status": "SUBMITTED"})  # fmt: skip
    publish(client, fills, {"fill_id": "f1", "order_id": "o1", "symbol": "BTCUSDT",
                            "side": "BUY", "quantity": "2", "price": "100"})  # fmt: skip
    publish(client, marks, {"symbol": "BTCUSDT", "price": "110"})
    publish(client, orders, {"order_id": "o2", "symbol": "BTCUSDT", "side": "SELL",
                             "quantity": "1", "status": "SUBMITTED"})  # fmt: skip
    publish(client, fills, {"fill_id": "f2", "order_id": "o2", "symbol": "BTCUSDT",
                            "side": "SELL", "quantity": "1", "price": "120"})  # fmt: skip
    publish(client, fills, {"fill_id": "bad", "quantity": "x"})


def test_a_sharded_worker_works_as_claire_user(runtime_url, db_url, settings, redis_client):
    sharded = settings.model_copy(
        update={"database_url": SecretStr(runtime_url), "shards": 2, "lease_ttl_s": 1.0}
    )
    fills = shard_key(settings.fills_stream, shard_of("BTCUSDT", 2))
    publish(redis_client, fills, {"fill_id": "f1", "order_id": "o1", "symbol": "BTCUSDT",
                                  "side": "BUY", "quantity": "2", "price": "100"})  # fmt: skip
    try:
        assert ShardRunner(sharded).run(until_idle=True) == 0
    finally:
        redis_client.delete(*all_shard_streams(sharded))
    assert rows(db_url, "SELECT fill_id FROM paper_fills") == [{"fill_id": "f1"}]
    leases = rows(db_url, "SELECT shard, owner, epoch FROM paper_shard_leases ORDER BY shard")
    assert leases == [
        {"shard": 0, "owner": None, "epoch": 1},
        {"shard": 1, "owner": None, "epoch": 1},
    ]


def test_the_worker_write_path_works_as_claire_user(
    runtime_url, db_url, settings: Settings, redis_client, stream_names
):
    migrations.verify(runtime_url)  # the worker's start-up check, as the runtime role
    _publish_a_day_of_trading(redis_client, stream_names)
    as_runtime = settings.model_copy(update={"database_url": SecretStr(runtime_url)})

    worker = run_until_idle(as_runtime, archive=True)

    assert (worker.totals.fills, worker.totals.dead_lettered) == (2, 1)
    counts = rows(
        db_url,
        "SELECT (SELECT count(*) FROM paper_orders) AS orders,"
        " (SELECT count(*) FROM paper_fills) AS fills,"
        " (SELECT count(*) FROM paper_positions) AS positions,"
        " (SELECT count(*) FROM paper_trading_stats) AS stats,"
        " (SELECT count(*) FROM paper_consumer_offsets) AS offsets,"
        " (SELECT count(*) FROM paper_event_ledger) AS ledger",
    )[0]
    assert counts == {
        "orders": 2, "fills": 2, "positions": 1, "stats": 1, "offsets": 3, "ledger": 5,
    }  # fmt: skip
    (position,) = rows(db_url, "SELECT quantity, realized_pnl_usdt FROM paper_positions")
    assert position["quantity"] == 1
    assert position["realized_pnl_usdt"] == 20
    # The read side the bot and `status` use works too.
    with psycopg.connect(runtime_url) as conn:
        conn.execute("SELECT get_paper_total_pnl(), get_paper_fill_rate('BTCUSDT', 7)")
        conn.execute("SELECT * FROM v_paper_active_positions, v_paper_daily_summary")
        conn.execute("SELECT * FROM v_paper_recent_orders")
    assert_fills_out_of_reach(runtime_url, db_url)


@pytest.mark.parametrize("engine", replay.ENGINES)
def test_a_replay_into_an_empty_database_works_as_claire_user(
    runtime_url, db_url, settings: Settings, redis_client, stream_names, *, engine: replay.Engine
):
    """Replay writes with the worker's own statements; only --reset (TRUNCATE) needs the
    owner."""
    _publish_a_day_of_trading(redis_client, stream_names)

    summary = replay.replay(
        settings, replay.SourceSpec(kind="redis"), target_dsn=runtime_url, engine=engine
    )

    assert (summary.fill_events, summary.dead_lettered) == (2, 1)
    assert rows(db_url, "SELECT fill_id FROM paper_fills ORDER BY 1") == [
        {"fill_id": "f1"},
        {"fill_id": "f2"},
    ]
    assert_fills_out_of_reach(runtime_url, db_url)
    with pytest.raises(errors.InsufficientPrivilege):
        replay.replay(settings, replay.SourceSpec(kind="redis"), target_dsn=runtime_url, reset=True)
    assert len(rows(db_url, "SELECT fill_id FROM paper_fills")) == 2


def test_prune_works_as_claire_user_and_keeps_every_fill(runtime_url, db_url):
    old = datetime.now(UTC) - timedelta(days=100)
    with psycopg.connect(db_url, autocommit=True) as conn:  # the owner writes old history
        for order_id, status in (("o-dead", "CANCELLED"), ("o-filled", "CANCELLED")):
            conn.execute(
                "INSERT INTO paper_orders (order_id, symbol, side, quantity, status, created_at)"
                " VALUES (%s, 'BTCUSDT', 'BUY', 2, %s, %s)",
                (order_id, status, old),
            )
        conn.execute(
            "INSERT INTO paper_fills (fill_id, order_id, symbol, quantity, price, filled_at)"
            " VALUES ('f1', 'o-filled', 'BTCUSDT', 1, 100, %s)",
            (old,),
        )
        conn.execute(
            "INSERT INTO paper_pnl_snapshots (snapshot_time, snapshot_type, total_pnl_usdt,"
            " realized_pnl_usdt, unrealized_pnl_usdt) VALUES (%s, 'HOURLY', 0, 0, 0)",
            (old,),
        )

    done = retention.prune(runtime_url, datetime.now(UTC) - timedelta(days=90))

    assert done.rows == {"hourly_snapshots": 1, "orders_without_fills": 1, "snapshot_parts": 0}
    assert rows(db_url, "SELECT order_id FROM paper_orders") == [{"order_id": "o-filled"}]
    assert_fills_out_of_reach(runtime_url, db_url)


def test_the_owner_still_deletes_fills_and_cascades(db_url):
    """008 refuses only the runtime role: the owner's own cleanup still works."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO paper_orders (order_id, symbol, side, quantity, status)"
            " VALUES ('o1', 'BTCUSDT', 'BUY', 1, 'FILLED'), ('o2', 'BTCUSDT', 'BUY', 1, 'FILLED')"
        )
        conn.execute(
            "INSERT INTO paper_fills (fill_id, order_id, symbol, quantity, price)"
            " VALUES ('f1', 'o1', 'BTCUSDT', 1, 100), ('f2', 'o2', 'BTCUSDT', 1, 100)"
        )
        conn.execute("DELETE FROM paper_orders WHERE order_id = 'o1'")
        conn.execute("DELETE FROM paper_fills WHERE fill_id = 'f2'")
    assert rows(db_url, "SELECT fill_id FROM paper_fills") == []


DENIED = [
    # no DDL: nothing created ...
    "CREATE TABLE paper_evil (id int)",
    "CREATE VIEW paper_evil AS SELECT 1 AS one",
    "CREATE FUNCTION paper_evil() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "CREATE SCHEMA paper_evil",
    "CREATE INDEX paper_evil ON paper_orders (symbol)",
    "CREATE SEQUENCE paper_evil",
    # ... altered ...
    "ALTER TABLE paper_orders ADD COLUMN evil int",
    "ALTER TABLE paper_fills DROP CONSTRAINT paper_fills_fee_type_check",
    "ALTER VIEW v_paper_active_positions RENAME TO evil",
    "ALTER FUNCTION get_paper_total_pnl() VOLATILE",
    "ALTER ROLE claire_user CREATEDB",
    "COMMENT ON TABLE paper_orders IS 'evil'",
    # ... or dropped
    "DROP TABLE paper_fills",
    "DROP VIEW v_paper_active_positions",
    "DROP FUNCTION get_paper_total_pnl()",
    "DROP TABLE paper_schema_migrations",
    # no TRUNCATE anywhere
    "TRUNCATE paper_orders CASCADE",
    "TRUNCATE paper_fills",
    "TRUNCATE paper_positions",
    "TRUNCATE paper_pnl_snapshots",
    "TRUNCATE paper_trading_stats",
    "TRUNCATE paper_stats_sums",
    "TRUNCATE paper_consumer_offsets",
    "TRUNCATE paper_event_ledger",
    # history the worker only appends to or re-aggregates: no DELETE / rewrite
    "DELETE FROM paper_trading_stats",
    "DELETE FROM paper_stats_sums",
    "DELETE FROM paper_consumer_offsets",
    "DELETE FROM paper_event_ledger",
    "DELETE FROM paper_round_trips",
    "DELETE FROM paper_fill_pnl",
    "UPDATE paper_fills SET price = 1",
    "DELETE FROM paper_fills",  # 008: fills are the ledger (prune never deleted any)
    "LOCK TABLE paper_fills IN ACCESS EXCLUSIVE MODE",
    "LOCK TABLE paper_event_ledger IN ACCESS EXCLUSIVE MODE",
    "LOCK TABLE paper_round_trips IN ACCESS EXCLUSIVE MODE",
    "LOCK TABLE paper_fill_pnl IN ACCESS EXCLUSIVE MODE",
    "UPDATE paper_event_ledger SET fields = '{}'",
    "UPDATE paper_round_trips SET symbol = 'EVIL'",
    # it recomputes snapshot values (007) but cannot move a snapshot or relabel it
    "UPDATE paper_pnl_snapshots SET snapshot_time = now()",
    "UPDATE paper_pnl_snapshots SET metadata = '{}'",
    # the migration ledger is read-only to it
    "INSERT INTO paper_schema_migrations (version, name, checksum, duration_ms)"
    " VALUES (999, 'evil', 'x', 0)",
    "DELETE FROM paper_schema_migrations",
    # other applications' tables in the same database
    "SELECT * FROM other_app_accounts",
    "SELECT * FROM other_app.ledger",
    "INSERT INTO other_app_accounts VALUES ('evil')",
]


@pytest.fixture
def other_apps_tables(db_url):
    """Tables of another application in the same database, created by the owner."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE other_app_accounts (secret text)")
        conn.execute("INSERT INTO other_app_accounts VALUES ('s3cr3t')")
        conn.execute("CREATE SCHEMA other_app")
        conn.execute("CREATE TABLE other_app.ledger (amount numeric)")


@pytest.mark.usefixtures("other_apps_tables")
@pytest.mark.parametrize("statement", DENIED)
def test_the_runtime_role_is_refused(runtime_url, statement):
    with psycopg.connect(runtime_url) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(statement)


def test_the_runtime_role_has_no_privilege_of_its_own(runtime_url, db_url):
    """Everything it may do comes from claire_user: no ownership, no direct grant."""
    with psycopg.connect(runtime_url) as conn:
        (me,) = conn.execute("SELECT current_user").fetchone()
    (owned,) = rows(
        db_url,
        "SELECT count(*) AS n FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
        "WHERE r.rolname = %(me)s",
        {"me": me},
    )
    assert owned["n"] == 0
    grants = rows(
        db_url,
        "SELECT table_name, privilege_type FROM information_schema.role_table_grants "
        "WHERE grantee = 'claire_user' AND privilege_type IN ('TRUNCATE', 'REFERENCES', "
        "'TRIGGER') ORDER BY 1, 2",
    )
    assert grants == []
    with psycopg.connect(db_url) as conn:
        attributes = conn.execute(
            sql.SQL(
                "SELECT rolsuper, rolcreatedb, rolcreaterole, rolbypassrls FROM pg_roles "
                "WHERE rolname IN ({}, 'claire_user')"
            ).format(sql.Literal(me))
        ).fetchall()
    assert all(not any(row) for row in attributes)
