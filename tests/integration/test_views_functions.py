"""Exact numbers from the views, the functions and the generated columns, on hand-made rows.

Covers get_paper_fill_rate (empty, rounding to 4 places inside the function, the p_days window
edges), v_paper_recent_orders (24 h edges, newest first), v_paper_daily_summary (30-day edges,
UTC dates whatever the session time zone, counts and volume), v_paper_active_positions (open only,
highest total P&L first), get_paper_total_pnl (realized P&L of closed positions included) and
the generated columns fill_ratio, total_pnl_usdt, win_rate and fill_rate. Times are relative to
the database's now(), with a minute of margin at each edge.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

MARGIN = timedelta(minutes=1)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def db_now(conn) -> datetime:
    (now,) = conn.execute("SELECT now()").fetchone()
    return now


def _order(
    conn: psycopg.Connection[Any],
    order_id: str,
    created_at: datetime,
    *,
    symbol: str = "BTCUSDT",
    status: str = "FILLED",
    quantity: str = "1",
    filled_quantity: str = "0",
    filled_price: str | None = None,
    fees_usdt: str = "0",
    slippage_pct: str | None = None,
) -> None:
    conn.execute(
        """
        INSERT INTO paper_orders (order_id, symbol, side, quantity, status, filled_quantity,
                                  filled_price, fees_usdt, slippage_pct, created_at)
        VALUES (%s, %s, 'BUY', %s, %s, %s, %s, %s, %s, %s)
        """,
        (
            order_id,
            symbol,
            Decimal(quantity),
            status,
            Decimal(filled_quantity),
            None if filled_price is None else Decimal(filled_price),
            Decimal(fees_usdt),
            None if slippage_pct is None else Decimal(slippage_pct),
            created_at,
        ),
    )


def _position(
    conn: psycopg.Connection[Any],
    symbol: str,
    *,
    realized: str,
    unrealized: str,
    closed: bool = False,
) -> None:
    opened = datetime(2026, 1, 1, tzinfo=UTC)
    conn.execute(
        """
        INSERT INTO paper_positions (symbol, quantity, avg_entry_price, cost_basis_usdt,
                                     realized_pnl_usdt, unrealized_pnl_usdt, opened_at, closed_at)
        VALUES (%s, %s, 100, 100, %s, %s, %s, %s)
        """,
        (
            symbol,
            0 if closed else 1,
            Decimal(realized),
            Decimal(unrealized),
            opened,
            opened + timedelta(hours=1) if closed else None,
        ),
    )


def _fill_rate(conn: psycopg.Connection[Any], *args: object) -> Decimal:
    placeholders = ", ".join(["%s"] * len(args))
    (value,) = conn.execute(f"SELECT get_paper_fill_rate({placeholders})", args).fetchone()
    return value


# --- get_paper_fill_rate ----------------------------------------------------------------------


def test_fill_rate_without_orders_is_zero(conn):
    assert _fill_rate(conn, "BTCUSDT") == 0


def test_fill_rate_is_rounded_to_four_places_inside_the_function(conn, db_now):
    _order(conn, "o1", db_now, status="FILLED")
    _order(conn, "o2", db_now, status="PARTIAL")
    _order(conn, "o3", db_now, status="REJECTED")
    value = _fill_rate(conn, "BTCUSDT")
    assert value == Decimal("0.6667")
    assert str(value) == "0.6667"


def test_fill_rate_counts_partially_filled_and_ignores_other_symbols(conn, db_now):
    _order(conn, "o1", db_now, status="PARTIALLY_FILLED")
    _order(conn, "o2", db_now, status="CANCELLED")
    _order(conn, "o3", db_now, status="FILLED", symbol="ETHUSDT")
    assert _fill_rate(conn, "BTCUSDT") == Decimal("0.5")
    assert _fill_rate(conn, "ETHUSDT") == Decimal("1")


def test_fill_rate_window_edges(conn, db_now):
    _order(conn, "inside", db_now - timedelta(days=3) + MARGIN, status="FILLED")
    _order(conn, "outside", db_now - timedelta(days=3) - MARGIN, status="REJECTED")
    assert _fill_rate(conn, "BTCUSDT", 3) == Decimal("1")
    assert _fill_rate(conn, "BTCUSDT", 4) == Decimal("0.5")


def test_fill_rate_default_window_is_seven_days(conn, db_now):
    _order(conn, "inside", db_now - timedelta(days=7) + MARGIN, status="FILLED")
    _order(conn, "outside", db_now - timedelta(days=7) - MARGIN, status="REJECTED")
    assert _fill_rate(conn, "BTCUSDT") == Decimal("1")


# --- v_paper_recent_orders --------------------------------------------------------------------


def test_recent_orders_window_edges_newest_first(conn, db_now):
    _order(conn, "just-inside", db_now - timedelta(hours=24) + MARGIN)
    _order(conn, "just-outside", db_now - timedelta(hours=24) - MARGIN)
    _order(conn, "newest", db_now - MARGIN)
    rows = conn.execute("SELECT order_id FROM v_paper_recent_orders").fetchall()
    assert rows == [("newest",), ("just-inside",)]


# --- v_paper_daily_summary --------------------------------------------------------------------


def test_daily_summary_window_edges(conn, db_now):
    _order(conn, "inside", db_now - timedelta(days=30) + MARGIN, symbol="INUSDT")
    _order(conn, "outside", db_now - timedelta(days=30) - MARGIN, symbol="OUTUSDT")
    rows = conn.execute("SELECT symbol, total_orders FROM v_paper_daily_summary").fetchall()
    assert rows == [("INUSDT", 1)]


def test_daily_summary_groups_by_utc_date_whatever_the_session_time_zone(conn, db_now):
    day = (db_now.astimezone(UTC) - timedelta(days=2)).date()
    late = datetime(day.year, day.month, day.day, 23, 30, tzinfo=UTC)
    _order(conn, "late", late)
    _order(conn, "early-next-day", late + timedelta(hours=1))
    conn.execute("SET TIME ZONE 'America/New_York'")  # both are the same New York date
    rows = conn.execute("SELECT trade_date, total_orders FROM v_paper_daily_summary").fetchall()
    assert rows == [(day + timedelta(days=1), 1), (day, 1)]


def test_daily_summary_counts_and_volume(conn, db_now):
    at = db_now - timedelta(hours=1)
    _order(
        conn,
        "a",
        at,
        quantity="0.5",
        filled_quantity="0.5",
        filled_price="30000",
        fees_usdt="15",
        slippage_pct="0.01",
    )
    _order(
        conn,
        "b",
        at,
        quantity="0.25",
        filled_quantity="0.25",
        filled_price="31500.5",
        fees_usdt="7.875125",
        slippage_pct="0.03",
    )
    _order(
        conn,
        "c",
        at,
        status="PARTIALLY_FILLED",
        quantity="1",
        filled_quantity="0.1",
        filled_price="30000",
        fees_usdt="3",
    )
    _order(conn, "d", at, status="REJECTED")
    _order(conn, "e", at, symbol="ETHUSDT", status="REJECTED")
    rows = conn.execute(
        """
        SELECT trade_date, symbol, total_orders, filled_orders, rejected_orders,
               total_volume_usdt, total_fees_usdt, avg_slippage_pct
        FROM v_paper_daily_summary
        """
    ).fetchall()
    trade_date = at.astimezone(UTC).date()
    assert rows == [
        # filled_orders is FILLED only (the view's definition); volume includes the partial fill.
        (
            trade_date,
            "BTCUSDT",
            4,
            2,
            1,
            Decimal("25875.125"),
            Decimal("25.875125"),
            Decimal("0.02"),
        ),
        (trade_date, "ETHUSDT", 1, 0, 1, Decimal("0"), Decimal("0"), None),
    ]


def test_daily_summary_newest_date_first_then_symbol(conn, db_now):
    today = db_now - timedelta(minutes=5)
    yesterday = today - timedelta(days=1)
    _order(conn, "1", yesterday, symbol="AAAUSDT")
    _order(conn, "2", today, symbol="ZZZUSDT")
    _order(conn, "3", today, symbol="BBBUSDT")
    rows = conn.execute("SELECT trade_date, symbol FROM v_paper_daily_summary").fetchall()
    assert [symbol for _, symbol in rows] == ["BBBUSDT", "ZZZUSDT", "AAAUSDT"]
    assert rows[0][0] > rows[2][0]


# --- positions: v_paper_active_positions and get_paper_total_pnl --------------------------------


def test_active_positions_exclude_closed_and_order_by_total_pnl(conn):
    _position(conn, "AAAUSDT", realized="10", unrealized="40")
    _position(conn, "BBBUSDT", realized="100", unrealized="50")
    _position(conn, "CCCUSDT", realized="500", unrealized="0", closed=True)
    rows = conn.execute("SELECT symbol, total_pnl_usdt FROM v_paper_active_positions").fetchall()
    assert rows == [("BBBUSDT", Decimal("150")), ("AAAUSDT", Decimal("50"))]


def test_total_pnl_is_zero_without_positions(conn):
    assert conn.execute("SELECT get_paper_total_pnl()").fetchone() == (Decimal(0),)


def test_total_pnl_includes_realized_pnl_of_closed_positions(conn):
    _position(conn, "AAAUSDT", realized="10.5", unrealized="5.25")
    # A closed position's stale unrealized P&L is not counted; its realized P&L is (flaw 1).
    _position(conn, "CCCUSDT", realized="100.12345678", unrealized="7", closed=True)
    (value,) = conn.execute("SELECT get_paper_total_pnl()").fetchone()
    assert value == Decimal("115.87345678")
    assert str(value) == "115.87345678"


def test_closing_a_winning_position_keeps_total_pnl(conn):
    _position(conn, "AAAUSDT", realized="0", unrealized="20")
    (before,) = conn.execute("SELECT get_paper_total_pnl()").fetchone()
    conn.execute(
        "UPDATE paper_positions SET quantity = 0, realized_pnl_usdt = 20, "
        "unrealized_pnl_usdt = 0, closed_at = now() WHERE symbol = 'AAAUSDT'"
    )
    (after,) = conn.execute("SELECT get_paper_total_pnl()").fetchone()
    assert before == after == Decimal("20")


# --- generated columns ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantity", "filled", "ratio"),
    [("1", "0.25", "0.2500"), ("3", "1", "0.3333"), ("2", "2", "1.0000"), ("1", "0", "0.0000")],
)
def test_fill_ratio(conn, db_now, quantity, filled, ratio):
    _order(conn, "o1", db_now, quantity=quantity, filled_quantity=filled)
    (value,) = conn.execute("SELECT fill_ratio FROM paper_orders").fetchone()
    assert str(value) == ratio


def test_total_pnl_usdt_is_realized_plus_unrealized(conn):
    _position(conn, "AAAUSDT", realized="-12.5", unrealized="2.25")
    (value,) = conn.execute("SELECT total_pnl_usdt FROM paper_positions").fetchone()
    assert value == Decimal("-10.25")


@pytest.mark.parametrize(
    ("total", "winning", "losing", "rate"),
    [(4, 3, 1, "0.7500"), (3, 2, 1, "0.6667"), (0, 0, 0, "0.0000")],
)
def test_win_rate(conn, total, winning, losing, rate):
    conn.execute(
        """
        INSERT INTO paper_pnl_snapshots (snapshot_time, snapshot_type, total_pnl_usdt,
            realized_pnl_usdt, unrealized_pnl_usdt, total_trades, winning_trades, losing_trades)
        VALUES (now(), 'MANUAL', 0, 0, 0, %s, %s, %s)
        """,
        (total, winning, losing),
    )
    (value,) = conn.execute("SELECT win_rate FROM paper_pnl_snapshots").fetchone()
    assert str(value) == rate


@pytest.mark.parametrize(
    ("total", "filled", "rate"), [(3, 2, "0.6667"), (8, 8, "1.0000"), (0, 0, "0.0000")]
)
def test_stats_fill_rate(conn, total, filled, rate):
    conn.execute(
        "INSERT INTO paper_trading_stats (stat_date, total_orders, filled_orders) "
        "VALUES (%s, %s, %s)",
        (date(2026, 1, 2), total, filled),
    )
    (value,) = conn.execute("SELECT fill_rate FROM paper_trading_stats").fetchone()
    assert str(value) == rate
