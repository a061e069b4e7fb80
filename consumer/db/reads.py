"""The read side: ``status``, ``snapshot`` and ``report`` queries.

Read-only, each on a short-lived connection of its own, so a person's look neither takes a pool
connection nor counts as a live worker. Every report window is ``column >= %(since)s``.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from consumer.db.connection import describe
from consumer.errors import (
    DatabaseUnavailableError,
    SchemaNotReadyError,
)

SELECT_OFFSETS = """
SELECT stream_name, last_entry_id, entries_committed, updated_at
FROM paper_consumer_offsets WHERE group_name = %(group)s ORDER BY stream_name
"""


SELECT_LAST_SNAPSHOT = """
SELECT snapshot_time, snapshot_type, total_pnl_usdt, realized_pnl_usdt, unrealized_pnl_usdt,
       total_trades, winning_trades, losing_trades, win_rate
FROM paper_pnl_snapshots
ORDER BY snapshot_time DESC, snapshot_id DESC
LIMIT 1
"""


SELECT_TOTAL_PNL = "SELECT get_paper_total_pnl() AS total_pnl_usdt"


def read_status(dsn: str, group: str, *, connect_timeout_s: float = 5.0) -> dict[str, Any]:
    """``offsets`` (committed per stream for ``group``), ``last_snapshot`` (a row or None) and
    ``total_pnl_usdt``. Raises ``DatabaseUnavailableError`` when PostgreSQL cannot be reached."""
    try:
        with psycopg.connect(
            dsn, row_factory=dict_row, connect_timeout=max(1, round(connect_timeout_s))
        ) as conn:
            offsets = conn.execute(SELECT_OFFSETS, {"group": group}).fetchall()
            snapshot = conn.execute(SELECT_LAST_SNAPSHOT).fetchone()
            total = conn.execute(SELECT_TOTAL_PNL).fetchone()
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError(f"cannot connect to PostgreSQL: {describe(exc)}") from exc
    except psycopg.Error as exc:
        raise SchemaNotReadyError(
            f"cannot read the status tables ({describe(exc)}); run `paper-consumer migrate up`"
        ) from exc
    return {
        "offsets": offsets,
        "last_snapshot": snapshot,
        "total_pnl_usdt": total["total_pnl_usdt"] if total else None,
    }


SELECT_SNAPSHOT = """
SELECT snapshot_time, snapshot_type, total_pnl_usdt, realized_pnl_usdt, unrealized_pnl_usdt,
       balance_usdt, equity_usdt, total_trades, winning_trades, losing_trades, win_rate,
       total_volume_usdt, total_fees_usdt, symbol_pnl
FROM paper_pnl_snapshots
WHERE snapshot_time = %(time)s AND snapshot_type = %(type)s
"""


# Per symbol: P&L now (positions; unrealized of open positions only, as get_paper_total_pnl),
# realized P&L caused by fills in the window, closed round trips in the window, orders created
# in the window (fill rate as get_paper_fill_rate: FILLED, PARTIAL or PARTIALLY_FILLED), and
# volume and fees of the fills in the window.
_REPORT_PARTS = """
pos AS (
    SELECT {key} coalesce(sum(quantity), 0) AS position_quantity,
           coalesce(sum(realized_pnl_usdt), 0) AS realized_pnl_usdt,
           coalesce(sum(unrealized_pnl_usdt) FILTER (WHERE closed_at IS NULL), 0)
               AS unrealized_pnl_usdt
    FROM paper_positions {group}),
trips AS (
    SELECT {key} count(*) AS trades,
           count(*) FILTER (WHERE realized_pnl_usdt > 0) AS winning_trades,
           count(*) FILTER (WHERE realized_pnl_usdt < 0) AS losing_trades
    FROM paper_round_trips WHERE closed_at >= %(since)s {group}),
pnl AS (
    SELECT {key} coalesce(sum(realized_pnl_usdt), 0) AS window_realized_pnl_usdt
    FROM paper_fill_pnl WHERE filled_at >= %(since)s {group}),
orders AS (
    SELECT {key} count(*) AS orders,
           count(*) FILTER (WHERE status IN ('FILLED', 'PARTIAL', 'PARTIALLY_FILLED'))
               AS filled_orders,
           round(avg(slippage_pct), 6) AS avg_slippage_pct
    FROM paper_orders WHERE created_at >= %(since)s {group}),
fills AS (
    SELECT {key} count(*) AS fills, coalesce(sum(quantity * price), 0) AS volume_usdt,
           coalesce(sum(fees_usdt), 0) AS fees_usdt
    FROM paper_fills WHERE filled_at >= %(since)s {group})
"""


_REPORT_COLUMNS = """
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


REPORT_BY_SYMBOL = (
    "WITH "
    + _REPORT_PARTS.format(key="symbol,", group="GROUP BY symbol")
    + "SELECT symbol,"
    + _REPORT_COLUMNS
    + "FROM pos FULL JOIN trips USING (symbol) FULL JOIN pnl USING (symbol)"
    + " FULL JOIN orders USING (symbol) FULL JOIN fills USING (symbol)\nORDER BY symbol\n"
)


REPORT_TOTALS = (
    "WITH "
    + _REPORT_PARTS.format(key="", group="")
    + "SELECT get_paper_total_pnl() AS total_pnl_now_usdt,"
    + _REPORT_COLUMNS
    + "FROM pos, trips, pnl, orders, fills\n"
)

# One point per snapshot time (an HOURLY and a DAILY row at midnight hold the same state).
SELECT_PLOT_SNAPSHOTS = """
SELECT DISTINCT ON (snapshot_time) snapshot_time, snapshot_type, total_pnl_usdt,
       realized_pnl_usdt, unrealized_pnl_usdt, symbol_pnl
FROM paper_pnl_snapshots
WHERE snapshot_time >= %(since)s
ORDER BY snapshot_time, snapshot_type
"""
