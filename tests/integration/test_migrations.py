"""The migration runner against a real PostgreSQL: ledger, checksums, locking, down/up, verify."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import pytest

from consumer import db, migrations
from consumer.errors import MigrationChangedError, MigrationError, SchemaNotReadyError
from consumer.events import FillEvent
from consumer.records import EntryKey, ParsedEntry, RawEntry


def _ledger(dsn: str) -> list[tuple[int, str]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT version, checksum FROM paper_schema_migrations ORDER BY version"
        ).fetchall()


def _public_objects(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' UNION ALL "
            "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'public'"
        ).fetchall()
    return {r[0] for r in rows}


def test_upgrade_records_every_migration_with_its_checksum(empty_db_url):
    applied = migrations.upgrade(empty_db_url)
    known = migrations.load_migrations()
    assert [m.version for m in applied] == [m.version for m in known]
    assert _ledger(empty_db_url) == [(m.version, m.checksum) for m in known]
    assert migrations.upgrade(empty_db_url) == []  # idempotent
    migrations.verify(empty_db_url)


def test_status_lists_applied_and_pending(empty_db_url):
    migrations.upgrade(empty_db_url, to=1)
    current = migrations.status(empty_db_url)
    assert [a.version for a in current.applied] == [1]
    assert [m.version for m in current.pending] == [2, 3, 4, 5, 6, 7, 8]
    with pytest.raises(SchemaNotReadyError, match=r"002_core_tables\.sql"):
        migrations.verify(empty_db_url)


def test_down_to_zero_leaves_nothing_and_up_works_again(empty_db_url):
    before = _public_objects(empty_db_url)
    migrations.upgrade(empty_db_url)
    assert len(_public_objects(empty_db_url)) > 20
    rolled = migrations.downgrade(empty_db_url, to=0)
    assert [m.version for m in rolled] == [8, 7, 6, 5, 4, 3, 2, 1]
    assert _public_objects(empty_db_url) == before
    migrations.upgrade(empty_db_url)
    migrations.verify(empty_db_url)


def test_down_to_a_version_keeps_the_ones_below(empty_db_url):
    migrations.upgrade(empty_db_url)
    migrations.downgrade(empty_db_url, to=2)
    assert [v for v, _ in _ledger(empty_db_url)] == [1, 2]
    assert "paper_orders" not in _public_objects(empty_db_url)
    assert "paper_consumer_offsets" in _public_objects(empty_db_url)


def test_an_edited_applied_migration_is_refused_naming_the_file(empty_db_url, monkeypatch):
    migrations.upgrade(empty_db_url)
    edited = [
        replace(m, up_sql=m.up_sql + "\n-- edited after release\n") if m.version == 2 else m
        for m in migrations.load_migrations()
    ]
    monkeypatch.setattr(migrations, "load_migrations", lambda: edited)
    for command in (migrations.upgrade, migrations.status, migrations.verify):
        with pytest.raises(MigrationChangedError, match=r"002_core_tables\.sql"):
            command(empty_db_url)


def test_a_failing_migration_is_rolled_back_and_named(empty_db_url, monkeypatch):
    broken = [
        replace(m, up_sql=m.up_sql.replace("COMMIT;", "SELECT 1/0;\nCOMMIT;"))
        if m.version == 3
        else m
        for m in migrations.load_migrations()
    ]
    monkeypatch.setattr(migrations, "load_migrations", lambda: broken)
    with pytest.raises(MigrationError, match=r"003_paper_trading_schema\.sql.*division by zero"):
        migrations.upgrade(empty_db_url)
    assert [v for v, _ in _ledger(empty_db_url)] == [1, 2]
    assert "paper_orders" not in _public_objects(empty_db_url)


def test_concurrent_upgrades_apply_each_migration_once(empty_db_url):
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append([m.version for m in migrations.upgrade(empty_db_url)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert sorted(results, key=len) == [[], [], [], [1, 2, 3, 4, 5, 6, 7, 8]]
    assert [v for v, _ in _ledger(empty_db_url)] == [1, 2, 3, 4, 5, 6, 7, 8]


def test_unreachable_database_gives_a_clear_error_without_password():
    dsn = "postgresql://someone:s3cret-pw@127.0.0.1:1/nowhere?connect_timeout=2"
    with pytest.raises(MigrationError, match="cannot connect to PostgreSQL") as info:
        migrations.upgrade(dsn)
    assert "s3cret-pw" not in str(info.value)


def test_every_migration_has_a_framed_rollback():
    for migration in migrations.load_migrations():
        assert migrations.strip_transaction_frame(migration.up_sql, migration.filename)
        assert migrations.strip_transaction_frame(migration.down_sql, migration.filename)


def test_007_back_fills_symbol_clocks_and_never_recomputes_old_rows(empty_db_url):
    migrations.upgrade(empty_db_url, to=6)
    clock = datetime(2026, 11, 20, 10, 30, tzinfo=UTC)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO paper_positions (symbol, quantity, avg_entry_price, cost_basis_usdt, "
            "market_value_usdt, opened_at) VALUES ('AAAUSDT', 0, 100, 0, 0, now())"
        )
        conn.execute("INSERT INTO paper_pnl_clock (clock_id, event_time) VALUES (1, %s)", [clock])
        conn.execute(
            "INSERT INTO paper_pnl_snapshots (snapshot_time, snapshot_type, total_pnl_usdt, "
            "realized_pnl_usdt, unrealized_pnl_usdt) VALUES ('2026-11-20 10:00+00', 'HOURLY', "
            "7, 7, 0)"
        )
    migrations.upgrade(empty_db_url)
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT symbol, event_time FROM paper_symbol_clocks").fetchall() == [
            ("AAAUSDT", clock)
        ]
        assert conn.execute("SELECT parts_since FROM paper_pnl_clock").fetchone() == (clock,)
    # A new symbol's first event at 09:05 changes every row after 09:05 — but 10:00 is final.
    event = FillEvent(fill_id="f1", order_id="o1", symbol="BBBUSDT", side="BUY",
                      quantity=Decimal(1), price=Decimal(100),
                      timestamp=datetime(2026, 11, 20, 9, 5, tzinfo=UTC))  # fmt: skip
    target = db.PostgresStore(empty_db_url, group="g")
    target.open()
    try:
        target.write_batch([ParsedEntry(RawEntry(EntryKey("fills", "1-0"), {}), event)])
    finally:
        target.close()
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT total_pnl_usdt FROM paper_pnl_snapshots").fetchall() == [(7,)]
    migrations.downgrade(empty_db_url, to=6)
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT event_time FROM paper_pnl_clock").fetchone() == (clock,)


def _fills_guard(dsn: str) -> tuple[bool, list[str]]:
    with psycopg.connect(dsn) as conn:
        (may_delete,) = conn.execute(
            "SELECT has_table_privilege('claire_user', 'paper_fills', 'DELETE')"
        ).fetchone()
        triggers = conn.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'paper_fills'::regclass "
            "AND NOT tgisinternal"
        ).fetchall()
    return may_delete, [name for (name,) in triggers]


def test_008_takes_fills_out_of_the_runtime_roles_reach_and_rolls_back(empty_db_url):
    migrations.upgrade(empty_db_url, to=7)
    assert _fills_guard(empty_db_url) == (True, [])
    migrations.upgrade(empty_db_url)
    assert _fills_guard(empty_db_url) == (False, ["paper_fills_kept"])
    migrations.downgrade(empty_db_url, to=7)
    assert _fills_guard(empty_db_url) == (True, [])
    migrations.upgrade(empty_db_url)
    assert _fills_guard(empty_db_url) == (False, ["paper_fills_kept"])
