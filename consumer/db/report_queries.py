"""The queries of ``paper-consumer report`` and the functions that run them (read-only).

It owns the report's SQL: the per-symbol and account lines, the snapshots of the window (the
equity curve, the plot) and the round trips closed in the window. Every query takes the window
as ``%(since)s`` and ``%(until)s`` (either NULL for an open end) and compares each time column
with ``since <= t < until``; nothing here writes. The connection is short-lived and opened by
``connect``; driver errors become the project's own (``DatabaseUnavailableError``,
``SchemaNotReadyError``) here, so ``report.py`` never sees psycopg.

The line queries are the report's earlier ones with an upper bound added; the report reads
only these (``db/reads.py`` keeps the ``status`` and ``snapshot`` queries).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from consumer.errors import DatabaseUnavailableError, SchemaNotReadyError
from consumer.performance import Snapshot, Trip

Connection = psycopg.Connection[dict[str, Any]]


@dataclass(frozen=True)
class Window:
    """``since <= t < until``; None is an open end (all history, up to now and beyond)."""

    since: datetime | None = None
    until: datetime | None = None

    def params(self) -> dict[str, datetime | None]:
        return {"since": self.since, "until": self.until}


def _in_window(column: str) -> str:
    return (
        f"{column} >= coalesce(%(since)s::timestamptz, '-infinity')"
        f" AND {column} < coalesce(%(until)s::timestamptz, 'infinity')"
    )


# Per symbol: P&L now (positions; unrealized of open positions only, as get_paper_total_pnl),
# realized P&L caused by fills in the window, closed round trips in the window, orders created
# in the window (fill rate as get_paper_fill_rate: FILLED, PARTIAL or PARTIALLY_FILLED), and
# volume and fees of the fills in the window.
_LINE_PARTS = f"""
pos AS (
    SELECT {{key}} coalesce(sum(quantity), 0) AS position_quantity,
           coalesce(sum(realized_pnl_usdt), 0) AS realized_pnl_usdt,
           coalesce(sum(unrealized_pnl_usdt) FILTER (WHERE closed_at IS NULL), 0)
               AS unrealized_pnl_usdt
    FROM paper_positions {{group}}),
trips AS (
    SELECT {{key}} count(*) AS trades,
           count(*) FILTER (WHERE realized_pnl_usdt > 0) AS winning_trades,
           count(*) FILTER (WHERE realized_pnl_usdt < 0) AS losing_trades
    FROM paper_round_trips WHERE {_in_window("closed_at")} {{group}}),
pnl AS (
    SELECT {{key}} coalesce(sum(realized_pnl_usdt), 0) AS window_realized_pnl_usdt
    FROM paper_fill_pnl WHERE {_in_window("filled_at")} {{group}}),
orders AS (
    SELECT {{key}} count(*) AS orders,
           count(*) FILTER (WHERE status IN ('FILLED', 'PARTIAL', 'PARTIALLY_FILLED'))
               AS filled_orders,
           round(avg(slippage_pct), 6) AS avg_slippage_pct
    FROM paper_orders WHERE {_in_window("created_at")} {{group}}),
fills AS (
    SELECT {{key}} count(*) AS fills, coalesce(sum(quantity * price), 0) AS volume_usdt,
           coalesce(sum(fees_usdt), 0) AS fees_usdt
    FROM paper_fills WHERE {_in_window("filled_at")} {{group}})
"""

_LINE_COLUMNS = """
       coalesce(pos.position_quantity, 0) AS position_quantity,
       coalesce(pos.realized_pnl_usdt, 0) AS realized_pnl_usdt,
       coalesce(pos.unrealized_pnl_usdt, 0) AS unrealized_pnl_usdt,
       coalesce(pos.realized_pnl_usdt, 0) + coalesce(pos.unrealized_pnl_usdt, 0)
           AS total_pnl_usdt,
       coalesce(pnl.window_realized_pnl_usdt, 0) AS window_realized_pnl_usdt,
       coalesce(trips.trades, 0) AS trades,
       coalesce(trips.winning_trades, 0) AS winning_trades,
       coalesce(trips.losing_trades, 0) AS losing_trades,
       round(trips.winning_trades::numeric / nullif(trips.trades, 0), 4) AS win_rate,
       coalesce(orders.orders, 0) AS orders,
       coalesce(orders.filled_orders, 0) AS filled_orders,
       round(orders.filled_orders::numeric / nullif(orders.orders, 0), 4) AS fill_rate,
       orders.avg_slippage_pct,
       coalesce(fills.fills, 0) AS fills,
       coalesce(fills.volume_usdt, 0) AS volume_usdt,
       coalesce(fills.fees_usdt, 0) AS fees_usdt
"""

LINES_BY_SYMBOL = (
    "WITH "
    + _LINE_PARTS.format(key="symbol,", group="GROUP BY symbol")
    + "SELECT symbol,"
    + _LINE_COLUMNS
    + "FROM pos FULL JOIN trips USING (symbol) FULL JOIN pnl USING (symbol)"
    + " FULL JOIN orders USING (symbol) FULL JOIN fills USING (symbol)\nORDER BY symbol\n"
)

LINE_TOTALS = (
    "WITH "
    + _LINE_PARTS.format(key="", group="")
    + "SELECT get_paper_total_pnl() AS total_pnl_now_usdt,"
    + _LINE_COLUMNS
    + "FROM pos, trips, pnl, orders, fills\n"
)

# One point per snapshot time (an HOURLY and a DAILY row at midnight hold the same state; a
# MANUAL one at the same time is taken last), oldest first: the equity curve and the plot. The
# per-symbol P&L leaves the JSONB as numeric (exact), not as JSON numbers (floats in Python).
SELECT_WINDOW_SNAPSHOTS = f"""
SELECT DISTINCT ON (snapshot_time) snapshot_time, total_pnl_usdt, realized_pnl_usdt,
       equity_usdt, balance_usdt,
       ARRAY(SELECT key FROM jsonb_each(symbol_pnl) ORDER BY key)::text[] AS symbols,
       ARRAY(SELECT coalesce((value ->> 'pnl')::numeric, 0) FROM jsonb_each(symbol_pnl)
             ORDER BY key) AS symbol_pnls
FROM paper_pnl_snapshots
WHERE {_in_window("snapshot_time")}
ORDER BY snapshot_time, snapshot_type
"""

# Round trips closed in the window, in the order streaks are counted (ties by closing fill).
SELECT_WINDOW_ROUND_TRIPS = f"""
SELECT symbol, opened_at, closed_at, realized_pnl_usdt
FROM paper_round_trips
WHERE {_in_window("closed_at")}
ORDER BY closed_at, closing_fill_id
"""


def connect(dsn: str, timeout_s: float = 5.0) -> Connection:
    """A short-lived connection with dict rows (``DatabaseUnavailableError`` when refused)."""
    try:
        return psycopg.connect(dsn, row_factory=dict_row, connect_timeout=max(1, round(timeout_s)))
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError(f"cannot connect to PostgreSQL: {exc}") from exc


def schema_error(exc: psycopg.Error) -> SchemaNotReadyError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return SchemaNotReadyError(
        f"cannot read the paper tables ({first}); run `paper-consumer migrate up`"
    )


@contextmanager
def _reading() -> Iterator[None]:
    try:
        yield
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError(str(exc)) from exc
    except psycopg.Error as exc:
        raise schema_error(exc) from exc


def read_lines(conn: Connection, window: Window) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The account's row (``LINE_TOTALS``) and one row per symbol (``LINES_BY_SYMBOL``)."""
    with _reading():
        totals = conn.execute(LINE_TOTALS, window.params()).fetchone()
        per_symbol = conn.execute(LINES_BY_SYMBOL, window.params()).fetchall()
    if totals is None:  # pragma: no cover - aggregates without GROUP BY return one row
        raise SchemaNotReadyError("the report query returned no row")
    return totals, per_symbol


def read_snapshots(conn: Connection, window: Window) -> list[Snapshot]:
    """The snapshots of the window, one per time, oldest first."""
    with _reading():
        rows = conn.execute(SELECT_WINDOW_SNAPSHOTS, window.params()).fetchall()
    return [
        Snapshot(
            time=row["snapshot_time"],
            total_pnl=row["total_pnl_usdt"],
            realized_pnl=row["realized_pnl_usdt"],
            equity=row["equity_usdt"],
            balance=row["balance_usdt"],
            per_symbol=dict(zip(row["symbols"], row["symbol_pnls"], strict=True)),
        )
        for row in rows
    ]


def read_trips(conn: Connection, window: Window) -> list[Trip]:
    """The round trips closed in the window, in closed_at order."""
    with _reading():
        rows = conn.execute(SELECT_WINDOW_ROUND_TRIPS, window.params()).fetchall()
    return [
        Trip(
            symbol=row["symbol"],
            opened_at=row["opened_at"],
            closed_at=row["closed_at"],
            pnl=row["realized_pnl_usdt"],
        )
        for row in rows
    ]
