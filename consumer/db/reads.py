"""The read side of ``status`` and ``snapshot`` (``report``'s queries: ``report_queries.py``).

Read-only, each on a short-lived connection of its own, so a person's look neither takes a pool
connection nor counts as a live worker.
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


def read_offsets(dsn: str, group: str, *, connect_timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """The committed offsets of ``group`` (``SELECT_OFFSETS`` rows); ``DatabaseUnavailableError``
    when PostgreSQL cannot be asked."""
    try:
        with psycopg.connect(
            dsn, row_factory=dict_row, connect_timeout=max(1, round(connect_timeout_s))
        ) as conn:
            return conn.execute(SELECT_OFFSETS, {"group": group}).fetchall()
    except psycopg.Error as exc:
        raise DatabaseUnavailableError(
            f"cannot read the committed offsets: {describe(exc)}"
        ) from exc


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
