"""The migrated schema, object by object, against sql/schema/paper_trading_erd.md and schema.md.

Covers every table's columns (type with length/precision, nullability, default, generated), the
primary, unique and foreign keys, the named CHECK constraints (and that bad rows fail with exactly
that name), the indexes, the views' columns, the functions' signatures and volatility, and the
grants of the runtime role ``claire_user``. Catalog queries avoid text that differs between
PostgreSQL 15 (CI) and 18 (embedded).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql

TZ = "timestamp with time zone"
MONEY = "numeric(18,8)"
ID = "character varying(100)"
SYMBOL = "character varying(20)"
GEN = "GENERATED"  # marker for a STORED generated column (its expression is checked by value)

# table -> [(column, type, NOT NULL, default or GEN or None)] in column order
COLUMNS: dict[str, list[tuple[str, str, bool, str | None]]] = {
    "paper_shard_leases": [
        ("group_name", "character varying(200)", True, None),
        ("shard", "integer", True, None),
        ("owner", "character varying(200)", False, None),
        ("epoch", "bigint", True, "0"),
        ("acquired_at", TZ, False, None),
        ("heartbeat_at", TZ, False, None),
        ("expires_at", TZ, True, "'-infinity'::timestamp with time zone"),
    ],
    "paper_shard_members": [
        ("group_name", "character varying(200)", True, None),
        ("member", "character varying(200)", True, None),
        ("started_at", TZ, True, "now()"),
        ("heartbeat_at", TZ, True, None),
        ("expires_at", TZ, True, None),
    ],
    "paper_schema_migrations": [
        ("version", "integer", True, None),
        ("name", "character varying(200)", True, None),
        ("checksum", "character(64)", True, None),
        ("applied_at", TZ, True, "now()"),
        ("duration_ms", "integer", True, "0"),
    ],
    "paper_consumer_offsets": [
        ("stream_name", "character varying(200)", True, None),
        ("group_name", "character varying(200)", True, None),
        ("last_entry_id", "character varying(41)", True, None),
        ("entries_committed", "bigint", True, "0"),
        ("updated_at", TZ, True, "now()"),
    ],
    "paper_event_ledger": [
        ("stream_name", "character varying(200)", True, None),
        ("entry_id", "character varying(41)", True, None),
        ("entry_ms", "bigint", True, None),
        ("entry_seq", "bigint", True, None),
        ("fields", "jsonb", True, None),
        ("received_at", TZ, True, "now()"),
    ],
    "paper_orders": [
        ("order_id", ID, True, None),
        ("client_id", ID, False, None),
        ("symbol", SYMBOL, True, None),
        ("side", "character varying(4)", True, None),
        ("order_type", "character varying(20)", False, "'MARKET'::character varying"),
        ("quantity", MONEY, True, None),
        ("price", MONEY, False, None),
        ("filled_quantity", MONEY, False, "0"),
        ("filled_price", MONEY, False, None),
        ("status", "character varying(20)", True, None),
        ("slippage_pct", "numeric(10,6)", False, None),
        ("fees_usdt", MONEY, False, "0"),
        ("fee_type", "character varying(10)", False, None),
        ("created_at", TZ, False, "now()"),
        ("submitted_at", TZ, False, None),
        ("filled_at", TZ, False, None),
        ("updated_at", TZ, False, "now()"),
        ("rejection_reason", "text", False, None),
        ("error_message", "text", False, None),
        ("metadata", "jsonb", False, None),
        ("fill_ratio", "numeric(5,4)", False, GEN),
    ],
    "paper_fills": [
        ("fill_id", ID, True, None),
        ("order_id", ID, True, None),
        ("symbol", SYMBOL, True, None),
        ("quantity", MONEY, True, None),
        ("price", MONEY, True, None),
        ("fees_usdt", MONEY, False, "0"),
        ("fee_type", "character varying(10)", False, None),
        ("filled_at", TZ, False, "now()"),
        ("metadata", "jsonb", False, None),
    ],
    "paper_positions": [
        ("symbol", SYMBOL, True, None),
        ("quantity", MONEY, True, None),
        ("avg_entry_price", MONEY, True, None),
        ("current_price", MONEY, False, None),
        ("unrealized_pnl_usdt", MONEY, False, "0"),
        ("realized_pnl_usdt", MONEY, False, "0"),
        ("total_pnl_usdt", MONEY, False, GEN),
        ("cost_basis_usdt", MONEY, True, None),
        ("market_value_usdt", MONEY, False, None),
        ("entry_trades", "integer", False, "0"),
        ("exit_trades", "integer", False, "0"),
        ("opened_at", TZ, True, None),
        ("updated_at", TZ, False, "now()"),
        ("closed_at", TZ, False, None),
        ("metadata", "jsonb", False, None),
    ],
    "paper_pnl_snapshots": [
        (
            "snapshot_id",
            "integer",
            True,
            "nextval('paper_pnl_snapshots_snapshot_id_seq'::regclass)",
        ),
        ("snapshot_time", TZ, True, None),
        ("snapshot_type", "character varying(10)", True, None),
        ("total_pnl_usdt", MONEY, True, None),
        ("realized_pnl_usdt", MONEY, True, None),
        ("unrealized_pnl_usdt", MONEY, True, None),
        ("balance_usdt", MONEY, False, None),
        ("equity_usdt", MONEY, False, None),
        ("margin_used_usdt", MONEY, False, "0"),
        ("total_trades", "integer", False, "0"),
        ("winning_trades", "integer", False, "0"),
        ("losing_trades", "integer", False, "0"),
        ("win_rate", "numeric(5,4)", False, GEN),
        ("total_volume_usdt", MONEY, False, "0"),
        ("total_fees_usdt", MONEY, False, "0"),
        ("symbol_pnl", "jsonb", False, None),
        ("metadata", "jsonb", False, None),
    ],
    "paper_trading_stats": [
        ("stat_id", "integer", True, "nextval('paper_trading_stats_stat_id_seq'::regclass)"),
        ("stat_date", "date", True, None),
        ("total_orders", "integer", False, "0"),
        ("filled_orders", "integer", False, "0"),
        ("partial_fills", "integer", False, "0"),
        ("rejected_orders", "integer", False, "0"),
        ("cancelled_orders", "integer", False, "0"),
        ("fill_rate", "numeric(5,4)", False, GEN),
        ("avg_slippage_pct", "numeric(10,6)", False, None),
        ("avg_fee_pct", "numeric(10,6)", False, None),
        ("avg_latency_ms", "numeric(10,2)", False, None),
        ("total_volume_usdt", MONEY, False, "0"),
        ("total_fees_usdt", MONEY, False, "0"),
        ("daily_pnl_usdt", MONEY, False, "0"),
        ("cumulative_pnl_usdt", MONEY, False, "0"),
        ("updated_at", TZ, False, "now()"),
    ],
    # 005: exact per-date sums behind paper_trading_stats (unconstrained numeric: no rounding)
    "paper_stats_sums": [
        ("stat_date", "date", True, None),
        ("total_orders", "bigint", True, "0"),
        ("filled_orders", "bigint", True, "0"),
        ("partial_fills", "bigint", True, "0"),
        ("rejected_orders", "bigint", True, "0"),
        ("cancelled_orders", "bigint", True, "0"),
        ("slippage_n", "bigint", True, "0"),
        ("slippage_sum", "numeric", True, "0"),
        ("fee_pct_n", "bigint", True, "0"),
        ("fee_pct_sum", "numeric", True, "0"),
        ("latency_n", "bigint", True, "0"),
        ("latency_sum_ms", "numeric", True, "0"),
        ("volume_usdt", "numeric", True, "0"),
        ("fees_usdt", "numeric", True, "0"),
        ("realized_pnl_usdt", "numeric", True, "0"),
        ("updated_at", TZ, True, "now()"),
    ],
}

PRIMARY_KEYS = {
    "paper_schema_migrations": ["version"],
    "paper_consumer_offsets": ["stream_name", "group_name"],
    "paper_event_ledger": ["stream_name", "entry_id"],
    "paper_orders": ["order_id"],
    "paper_fills": ["fill_id"],
    "paper_positions": ["symbol"],
    "paper_pnl_snapshots": ["snapshot_id"],
    "paper_trading_stats": ["stat_id"],
    "paper_stats_sums": ["stat_date"],
}

CHECKS = {
    "paper_consumer_offsets": {"paper_consumer_offsets_entries_committed_check"},
    "paper_orders": {
        "paper_orders_side_check",
        "paper_orders_order_type_check",
        "paper_orders_quantity_check",
        "paper_orders_filled_quantity_check",
        "paper_orders_status_check",
        "paper_orders_fee_type_check",
        "paper_orders_filled_quantity_le_quantity",
    },
    "paper_fills": {
        "paper_fills_quantity_check",
        "paper_fills_price_check",
        "paper_fills_fee_type_check",
    },
    "paper_positions": {
        "paper_positions_avg_entry_price_check",
        "paper_positions_trade_counts_nonnegative",
    },
    "paper_pnl_snapshots": {
        "paper_pnl_snapshots_snapshot_type_check",
        "paper_pnl_snapshots_trade_counts_nonnegative",
        "paper_pnl_snapshots_trade_counts_consistent",
    },
    "paper_trading_stats": {
        "paper_trading_stats_order_counts_nonnegative",
        "paper_trading_stats_filled_orders_le_total_orders",
    },
    "paper_stats_sums": set(),  # signed deltas are upserted (see migration 005)
}

# Secondary indexes, as pg_indexes prints them with the schema name removed.
INDEXES = {
    "idx_paper_event_ledger_stream_order": "paper_event_ledger (stream_name, entry_ms, entry_seq)",
    "idx_paper_round_trips_symbol_closed": "paper_round_trips (symbol, closed_at DESC)",
    "idx_paper_round_trips_closed": "paper_round_trips (closed_at DESC)",
    "idx_paper_fill_pnl_filled_at": "paper_fill_pnl (filled_at)",
    "idx_paper_orders_symbol": "paper_orders (symbol)",
    "idx_paper_orders_created_at": "paper_orders (created_at DESC)",
    "idx_paper_orders_filled_at": "paper_orders (filled_at DESC) WHERE (filled_at IS NOT NULL)",
    "idx_paper_orders_status": "paper_orders (status)",
    "idx_paper_orders_client_id": "paper_orders (client_id) WHERE (client_id IS NOT NULL)",
    "idx_paper_orders_symbol_status": "paper_orders (symbol, status)",
    "idx_paper_orders_symbol_created": "paper_orders (symbol, created_at DESC)",
    "idx_paper_fills_order_id": "paper_fills (order_id)",
    "idx_paper_fills_symbol": "paper_fills (symbol)",
    "idx_paper_fills_filled_at": "paper_fills (filled_at DESC)",
    "idx_paper_positions_pnl": "paper_positions (total_pnl_usdt DESC)",
    "idx_paper_positions_updated": "paper_positions (updated_at DESC)",
    "idx_paper_positions_open": "paper_positions (closed_at) WHERE (closed_at IS NULL)",
    "idx_paper_pnl_time": "paper_pnl_snapshots (snapshot_time DESC)",
    "idx_paper_pnl_type_time": "paper_pnl_snapshots (snapshot_type, snapshot_time DESC)",
    "idx_paper_stats_date": "paper_trading_stats (stat_date DESC)",
}

VIEWS = {
    "v_paper_recent_orders": [
        "order_id",
        "symbol",
        "side",
        "order_type",
        "quantity",
        "filled_quantity",
        "filled_price",
        "status",
        "slippage_pct",
        "fees_usdt",
        "created_at",
        "filled_at",
    ],
    "v_paper_active_positions": [
        "symbol",
        "quantity",
        "avg_entry_price",
        "current_price",
        "unrealized_pnl_usdt",
        "realized_pnl_usdt",
        "total_pnl_usdt",
        "market_value_usdt",
        "opened_at",
        "updated_at",
    ],
    "v_paper_daily_summary": [
        "trade_date",
        "symbol",
        "total_orders",
        "filled_orders",
        "rejected_orders",
        "total_volume_usdt",
        "total_fees_usdt",
        "avg_slippage_pct",
    ],
}

# relation -> the exact privileges of claire_user on it
GRANTS = {
    "paper_schema_migrations": {"SELECT"},
    "paper_consumer_offsets": {"SELECT", "INSERT", "UPDATE"},
    "paper_event_ledger": {"SELECT", "INSERT"},
    "paper_orders": {"SELECT", "INSERT", "UPDATE", "DELETE"},
    "paper_fills": {"SELECT", "INSERT"},  # no DELETE since 008: the ledger is kept
    "paper_positions": {"SELECT", "INSERT", "UPDATE", "DELETE"},
    "paper_pnl_snapshots": {"SELECT", "INSERT", "DELETE"},
    "paper_trading_stats": {"SELECT", "INSERT", "UPDATE"},
    "paper_pnl_snapshots_snapshot_id_seq": {"USAGE", "SELECT"},
    "paper_trading_stats_stat_id_seq": {"USAGE", "SELECT"},
    "v_paper_recent_orders": {"SELECT"},
    "v_paper_active_positions": {"SELECT"},
    "v_paper_daily_summary": {"SELECT"},
    "paper_round_trips": {"SELECT", "INSERT"},
    "paper_fill_pnl": {"SELECT", "INSERT"},
    "paper_pnl_clock": {"SELECT", "INSERT", "UPDATE"},
    "paper_stats_sums": {"SELECT", "INSERT", "UPDATE"},
    "paper_shard_leases": {"SELECT", "INSERT", "UPDATE"},
    "paper_shard_members": {"SELECT", "INSERT", "UPDATE", "DELETE"},
    "paper_symbol_clocks": {"SELECT", "INSERT", "UPDATE"},
    "paper_pnl_snapshot_parts": {"SELECT", "INSERT", "DELETE"},
}


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db_url, autocommit=True) as connection:
        yield connection


def _insert(conn: psycopg.Connection[Any], table: str, row: dict[str, Any]) -> None:
    query = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, row)),
        sql.SQL(", ").join(sql.Placeholder() * len(row)),
    )
    conn.execute(query, list(row.values()))


@pytest.mark.parametrize("table", sorted(COLUMNS))
def test_columns_types_nullability_defaults(conn, table):
    rows = conn.execute(
        """
        SELECT a.attname,
               format_type(a.atttypid, a.atttypmod),
               a.attnotnull,
               CASE WHEN a.attgenerated = 's' THEN 'GENERATED'
                    ELSE pg_get_expr(d.adbin, d.adrelid) END
        FROM pg_attribute a
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum
        """,
        (table,),
    ).fetchall()
    assert rows == COLUMNS[table]


@pytest.mark.parametrize("table", sorted(PRIMARY_KEYS))
def test_primary_keys(conn, table):
    row = conn.execute(
        """
        SELECT array_agg(a.attname ORDER BY k.ord)
        FROM pg_constraint c
        CROSS JOIN unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
        WHERE c.conrelid = %s::regclass AND c.contype = 'p'
        """,
        (table,),
    ).fetchone()
    assert row == (PRIMARY_KEYS[table],)


def test_unique_constraints(conn):
    rows = conn.execute(
        """
        SELECT c.conrelid::regclass::text, c.conname, array_agg(a.attname ORDER BY k.ord)
        FROM pg_constraint c
        CROSS JOIN unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
        WHERE c.contype = 'u' AND c.connamespace = current_schema()::regnamespace
        GROUP BY 1, 2 ORDER BY 1, 2
        """
    ).fetchall()
    assert rows == [
        (
            "paper_pnl_snapshots",
            "paper_pnl_snapshots_snapshot_time_snapshot_type_key",
            ["snapshot_time", "snapshot_type"],
        ),
        ("paper_trading_stats", "paper_trading_stats_stat_date_key", ["stat_date"]),
    ]


def test_fill_references_its_order_and_cascades(conn):
    rows = conn.execute(
        """
        SELECT conrelid::regclass::text, confrelid::regclass::text, confdeltype
        FROM pg_constraint
        WHERE contype = 'f' AND connamespace = current_schema()::regnamespace
        """
    ).fetchall()
    assert rows == [("paper_fills", "paper_orders", "c")]


@pytest.mark.parametrize("table", sorted(CHECKS))
def test_check_constraint_names(conn, table):
    rows = conn.execute(
        "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'c'",
        (table,),
    ).fetchall()
    assert {name for (name,) in rows} == CHECKS[table]


def test_secondary_indexes(conn):
    rows = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes "
        "WHERE schemaname = current_schema() AND indexname LIKE 'idx%'"
    ).fetchall()
    found = {
        name: re.sub(r"^CREATE INDEX \S+ ON (\w+\.)?(\w+) USING btree ", r"\2 ", definition)
        for name, definition in rows
    }
    assert found == INDEXES


@pytest.mark.parametrize("view", sorted(VIEWS))
def test_view_columns(conn, view):
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
        (view,),
    ).fetchall()
    assert [name for (name,) in rows] == VIEWS[view]


def test_functions_are_stable_sql_with_their_signatures(conn):
    rows = conn.execute(
        """
        SELECT p.proname, pg_get_function_arguments(p.oid), format_type(p.prorettype, NULL),
               p.provolatile, l.lanname
        FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
        WHERE p.pronamespace = current_schema()::regnamespace
        ORDER BY p.proname
        """
    ).fetchall()
    assert rows == [
        (
            "get_paper_fill_rate",
            "p_symbol character varying, p_days integer DEFAULT 7",
            "numeric",
            "s",
            "sql",
        ),
        ("get_paper_total_pnl", "", "numeric", "s", "sql"),
        ("paper_fills_refuse_runtime_delete", "", "trigger", "v", "plpgsql"),  # 008
    ]


def test_runtime_role_exists(conn):
    assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'claire_user'").fetchone()


def test_grants_to_runtime_role_are_exact(conn):
    rows = conn.execute(
        """
        SELECT c.relname, acl.privilege_type
        FROM pg_class c CROSS JOIN aclexplode(c.relacl) AS acl
        WHERE c.relnamespace = current_schema()::regnamespace
          AND acl.grantee = 'claire_user'::regrole
        """
    ).fetchall()
    granted: dict[str, set[str]] = {}
    for relation, privilege in rows:
        granted.setdefault(relation, set()).add(privilege)
    assert {name: granted.get(name, set()) for name in GRANTS} == GRANTS
    assert set(granted) <= set(GRANTS)  # nothing else is granted


def test_column_grants_to_runtime_role_are_exact(conn):
    # 007: HOURLY/DAILY snapshot values are recomputed in place; time, type, metadata are not.
    rows = conn.execute(
        """
        SELECT c.relname, a.attname, acl.privilege_type
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        CROSS JOIN aclexplode(a.attacl) AS acl
        WHERE c.relnamespace = current_schema()::regnamespace
          AND acl.grantee = 'claire_user'::regrole
        """
    ).fetchall()
    assert sorted(rows) == sorted(
        ("paper_pnl_snapshots", column, "UPDATE")
        for column in (
            "total_pnl_usdt", "realized_pnl_usdt", "unrealized_pnl_usdt", "balance_usdt",
            "equity_usdt", "total_trades", "winning_trades", "losing_trades",
            "total_volume_usdt", "total_fees_usdt", "symbol_pnl",
        )
    )  # fmt: skip


def test_runtime_role_has_no_truncate_or_ddl_privileges(conn):
    rows = conn.execute(
        """
        SELECT c.relname, acl.privilege_type
        FROM pg_class c CROSS JOIN aclexplode(c.relacl) AS acl
        WHERE c.relnamespace = current_schema()::regnamespace
          AND acl.grantee = 'claire_user'::regrole
          AND acl.privilege_type NOT IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE', 'USAGE')
        """
    ).fetchall()
    assert rows == []
    assert not conn.execute(
        "SELECT has_schema_privilege('claire_user', current_schema(), 'CREATE')"
    ).fetchone()[0]


def test_runtime_role_can_execute_both_functions_by_explicit_grant(conn):
    rows = conn.execute(
        """
        SELECT p.proname
        FROM pg_proc p CROSS JOIN aclexplode(p.proacl) AS acl
        WHERE p.pronamespace = current_schema()::regnamespace
          AND acl.grantee = 'claire_user'::regrole AND acl.privilege_type = 'EXECUTE'
        ORDER BY 1
        """
    ).fetchall()
    assert rows == [("get_paper_fill_rate",), ("get_paper_total_pnl",)]


# --- bad data fails with the named constraint ------------------------------------------------

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
ORDER = {"order_id": "o-1", "symbol": "BTCUSDT", "side": "BUY", "quantity": 1, "status": "FILLED"}
FILL = {"fill_id": "f-1", "order_id": "o-1", "symbol": "BTCUSDT", "quantity": 1, "price": 100}
POSITION = {
    "symbol": "BTCUSDT",
    "quantity": 1,
    "avg_entry_price": 100,
    "cost_basis_usdt": 100,
    "opened_at": NOW,
}
SNAPSHOT = {
    "snapshot_time": NOW,
    "snapshot_type": "HOURLY",
    "total_pnl_usdt": 0,
    "realized_pnl_usdt": 0,
    "unrealized_pnl_usdt": 0,
}
STATS = {"stat_date": date(2026, 1, 2)}
BASE = {
    "paper_orders": ORDER,
    "paper_fills": FILL,
    "paper_positions": POSITION,
    "paper_pnl_snapshots": SNAPSHOT,
    "paper_trading_stats": STATS,
}

BAD_ROWS = [
    ("paper_orders", {"fee_type": "FOO"}, "paper_orders_fee_type_check"),
    ("paper_orders", {"filled_quantity": 2}, "paper_orders_filled_quantity_le_quantity"),
    ("paper_orders", {"side": "HOLD"}, "paper_orders_side_check"),
    ("paper_orders", {"order_type": "ICEBERG"}, "paper_orders_order_type_check"),
    ("paper_orders", {"quantity": 0}, "paper_orders_quantity_check"),
    ("paper_orders", {"filled_quantity": -1}, "paper_orders_filled_quantity_check"),
    ("paper_orders", {"status": "DONE"}, "paper_orders_status_check"),
    ("paper_fills", {"fee_type": "FOO"}, "paper_fills_fee_type_check"),
    ("paper_fills", {"quantity": 0}, "paper_fills_quantity_check"),
    ("paper_fills", {"price": 0}, "paper_fills_price_check"),
    ("paper_positions", {"avg_entry_price": 0}, "paper_positions_avg_entry_price_check"),
    ("paper_positions", {"exit_trades": -1}, "paper_positions_trade_counts_nonnegative"),
    ("paper_pnl_snapshots", {"snapshot_type": "WEEKLY"}, "paper_pnl_snapshots_snapshot_type_check"),
    (
        "paper_pnl_snapshots",
        {"total_trades": 3, "winning_trades": 2, "losing_trades": 2},
        "paper_pnl_snapshots_trade_counts_consistent",
    ),
    (
        "paper_pnl_snapshots",
        {"total_trades": 1, "losing_trades": -1},
        "paper_pnl_snapshots_trade_counts_nonnegative",
    ),
    (
        "paper_trading_stats",
        {"total_orders": 1, "filled_orders": 2},
        "paper_trading_stats_filled_orders_le_total_orders",
    ),
    (
        "paper_trading_stats",
        {"rejected_orders": -1},
        "paper_trading_stats_order_counts_nonnegative",
    ),
]


@pytest.mark.parametrize(
    ("table", "change", "constraint"), BAD_ROWS, ids=[c for _, _, c in BAD_ROWS]
)
def test_bad_row_fails_with_named_constraint(conn, table, change, constraint):
    if table == "paper_fills":
        _insert(conn, "paper_orders", ORDER)
    with pytest.raises(errors.CheckViolation) as excinfo:
        _insert(conn, table, {**BASE[table], **change})
    assert excinfo.value.diag.constraint_name == constraint


@pytest.mark.parametrize("table", sorted(BASE))
def test_base_rows_are_valid(conn, table):
    """The rows the inverse checks start from are accepted as they are."""
    if table == "paper_fills":
        _insert(conn, "paper_orders", ORDER)
    _insert(conn, table, BASE[table])
    assert conn.execute(
        sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
    ).fetchone() == (1,)


@pytest.mark.parametrize("fee_type", [None, "TAKER", "MAKER"])
def test_fee_type_accepts_null_taker_maker(conn, fee_type):
    _insert(conn, "paper_orders", {**ORDER, "fee_type": fee_type})
    _insert(conn, "paper_fills", {**FILL, "fee_type": fee_type})
    assert conn.execute("SELECT fee_type FROM paper_fills").fetchone() == (fee_type,)


def test_bot_ids_of_54_characters_fit_and_101_do_not(conn):
    long_id = "paper-unwind-SHUTDOWN_" + "a" * 32
    assert len(long_id) == 54
    _insert(conn, "paper_orders", {**ORDER, "order_id": long_id, "client_id": long_id})
    _insert(conn, "paper_fills", {**FILL, "fill_id": long_id, "order_id": long_id})
    with pytest.raises(errors.StringDataRightTruncation):
        _insert(conn, "paper_orders", {**ORDER, "order_id": "x" * 101})


def test_fill_needs_its_order(conn):
    with pytest.raises(errors.ForeignKeyViolation):
        _insert(conn, "paper_fills", FILL)


def test_deleting_an_order_deletes_its_fills(conn):
    _insert(conn, "paper_orders", ORDER)
    _insert(conn, "paper_fills", FILL)
    conn.execute("DELETE FROM paper_orders WHERE order_id = 'o-1'")
    assert conn.execute("SELECT count(*) FROM paper_fills").fetchone() == (0,)


@pytest.mark.parametrize(
    ("table", "constraint"),
    [
        ("paper_pnl_snapshots", "paper_pnl_snapshots_snapshot_time_snapshot_type_key"),
        ("paper_trading_stats", "paper_trading_stats_stat_date_key"),
    ],
)
def test_duplicate_snapshot_or_stat_date_is_rejected(conn, table, constraint):
    _insert(conn, table, BASE[table])
    with pytest.raises(errors.UniqueViolation) as excinfo:
        _insert(conn, table, BASE[table])
    assert excinfo.value.diag.constraint_name == constraint


def test_offsets_reject_negative_entry_count(conn):
    with pytest.raises(errors.CheckViolation) as excinfo:
        _insert(
            conn,
            "paper_consumer_offsets",
            {
                "stream_name": "s",
                "group_name": "g",
                "last_entry_id": "1-0",
                "entries_committed": -1,
            },
        )
    assert excinfo.value.diag.constraint_name == "paper_consumer_offsets_entries_committed_check"
