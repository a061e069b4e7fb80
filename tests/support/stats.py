"""Checks that the incrementally maintained daily statistics equal a recomputation from scratch.

``paper_trading_stats`` must equal ``REAGGREGATE_STATS`` (+ ``REFRESH_CUMULATIVE_PNL``) run over
the same dates from the tables alone, and ``paper_stats_sums`` must equal
``RECOMPUTE_STATS_SUMS`` exactly. The sums that are only ever added to (fee %, volume, fees,
P&L) are compared as text, so even their scale — which decides the rounding of ``sum / n`` — is
the one a from-scratch ``avg()`` uses. Slippage and latency sums are compared by value: terms
are also subtracted, so a zero may keep the scale 6 of a term that left, and that scale can
never change a quotient (its scale is at least 16 − 4 × its base-10000 weight ≥ 8 for any
average below 10^8, i.e. above 6 whatever the dividend's). Both recomputations run inside a
transaction that is rolled back.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row

from consumer.db import stats as stats_sql
from tests.support.pipeline import SNAPSHOT_QUERIES

SUMS_AS_TEXT = "SELECT {} FROM ({}) AS s ORDER BY stat_date"
_SUM_COLUMNS = (
    "stat_date", "total_orders", "filled_orders", "partial_fills", "rejected_orders",
    "cancelled_orders", "slippage_n", "slippage_sum", "fee_pct_n", "fee_pct_sum", "latency_n",
    "latency_sum_ms", "volume_usdt", "fees_usdt", "realized_pnl_usdt",
)  # fmt: skip
_BY_VALUE = ("slippage_sum", "latency_sum_ms")
_TEXT = ", ".join(f"{c}{'' if c in _BY_VALUE else '::text'} AS {c}" for c in _SUM_COLUMNS)
STORED_SUMS = SUMS_AS_TEXT.format(_TEXT, "SELECT * FROM paper_stats_sums")
FRESH_SUMS = SUMS_AS_TEXT.format(
    _TEXT, stats_sql.RECOMPUTE_STATS_SUMS.replace("ORDER BY t.stat_date", "")
)


def stored_sums(dsn: str) -> list[dict[str, Any]]:
    """paper_stats_sums as text, leaving out dates whose sums are all zero (a date whose rows
    all moved away keeps a zero row; a recomputation has no row for it)."""
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        return [r for r in conn.execute(STORED_SUMS).fetchall() if not _all_zero(r)]


def _all_zero(row: dict[str, Any]) -> bool:
    return all(Decimal(v) == 0 for k, v in row.items() if k != "stat_date")


def assert_stats_equal_full_reaggregation(dsn: str) -> None:
    """The stats rows and the sums equal what the tables give from scratch."""
    stats_query = SNAPSHOT_QUERIES["stats"]
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        kept = conn.execute(stats_query).fetchall()
        sums = [r for r in conn.execute(STORED_SUMS).fetchall() if not _all_zero(r)]
        assert sums == conn.execute(FRESH_SUMS).fetchall()
        dates = [r["stat_date"] for r in kept]
        assert {r["stat_date"] for r in sums} <= {d.isoformat() for d in dates}
        if not dates:
            return
        conn.execute("DELETE FROM paper_trading_stats")
        conn.execute(stats_sql.REAGGREGATE_STATS, {"dates": dates})
        conn.execute(stats_sql.REFRESH_CUMULATIVE_PNL, {"from": min(dates)})
        assert conn.execute(stats_query).fetchall() == kept
        conn.rollback()
