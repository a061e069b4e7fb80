"""The incremental daily statistics step of a batch (``paper_trading_stats``).

The batch remembers the state each order row had before it (read FOR UPDATE), the fills and
per-fill P&L rows it inserted (as their INSERTs returned them), and reads its order rows back as
they end up; ``daily_sums.py`` turns that into signed per-date terms, added to
``paper_stats_sums`` (exact per-date counts and numeric sums, migration 005); the touched stats
rows are derived from the sums, so each equals a full re-aggregation (``REAGGREGATE_STATS``, the
reference) at a cost that grows with the batch, not with the day. One advisory lock serialises
this last step of concurrent writers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import psycopg

from consumer import daily_sums
from consumer.db.rows import array_params
from consumer.orders import (
    OrderState,
)

# Serialise the statistics step of concurrent writers: under READ COMMITTED the statements after
# the lock see every row committed by a writer that held it before us (cumulative P&L spans
# every date, so one lock for the table, held only for the last statements of a batch). Taken
# before any row of paper_stats_sums or paper_trading_stats is locked, so writers cannot
# deadlock on them.
LOCK_STATS = "SELECT pg_advisory_xact_lock(hashtextextended('paper_trading_stats', 0))"


# One definition of the daily statistics, applied to the given dates. filled_orders counts
# FILLED, PARTIAL and PARTIALLY_FILLED so that the generated fill_rate equals
# get_paper_fill_rate() (see sql/schema/paper_trading_erd.md, "fill rate"). The worker no longer
# runs it (it rescans whole days): it is the reference that APPLY_STATS_SUMS and
# WRITE_STATS_FROM_SUMS must equal, and what the tests recompute from scratch.
REAGGREGATE_STATS = """
WITH d AS (SELECT DISTINCT unnest(%(dates)s::date[]) AS stat_date),
bounds AS (SELECT (min(stat_date)::timestamp AT TIME ZONE 'UTC') AS lo,
                  ((max(stat_date) + 1)::timestamp AT TIME ZONE 'UTC') AS hi FROM d),
o AS (
    SELECT (o.created_at AT TIME ZONE 'UTC')::date AS stat_date,
           count(*) AS total_orders,
           count(*) FILTER (WHERE o.status IN ('FILLED', 'PARTIAL', 'PARTIALLY_FILLED'))
               AS filled_orders,
           count(*) FILTER (WHERE o.status IN ('PARTIAL', 'PARTIALLY_FILLED')) AS partial_fills,
           count(*) FILTER (WHERE o.status = 'REJECTED') AS rejected_orders,
           count(*) FILTER (WHERE o.status = 'CANCELLED') AS cancelled_orders,
           avg(o.slippage_pct) AS avg_slippage_pct
    FROM paper_orders o, bounds
    WHERE o.created_at >= bounds.lo AND o.created_at < bounds.hi
    GROUP BY 1),
p AS (
    SELECT (p.filled_at AT TIME ZONE 'UTC')::date AS stat_date,
           sum(p.realized_pnl_usdt) AS daily_pnl_usdt
    FROM paper_fill_pnl p, bounds
    WHERE p.filled_at >= bounds.lo AND p.filled_at < bounds.hi
    GROUP BY 1),
f AS (
    SELECT (f.filled_at AT TIME ZONE 'UTC')::date AS stat_date,
           sum(f.quantity * f.price) AS total_volume_usdt,
           sum(f.fees_usdt) AS total_fees_usdt,
           avg(f.fees_usdt / (f.quantity * f.price) * 100) AS avg_fee_pct,
           -- Latency counts fills within a day of their order (the column holds < 10^8 ms);
           -- a fill of an older order, or one stamped before its order, is not a latency.
           avg(extract(epoch FROM (f.filled_at - o.created_at)) * 1000) FILTER (
               WHERE f.filled_at >= o.created_at
                 AND f.filled_at < o.created_at + interval '24 hours') AS avg_latency_ms
    FROM paper_fills f JOIN paper_orders o ON o.order_id = f.order_id, bounds
    WHERE f.filled_at >= bounds.lo AND f.filled_at < bounds.hi
    GROUP BY 1)
INSERT INTO paper_trading_stats AS s (
    stat_date, total_orders, filled_orders, partial_fills, rejected_orders, cancelled_orders,
    avg_slippage_pct, avg_fee_pct, avg_latency_ms, total_volume_usdt, total_fees_usdt,
    daily_pnl_usdt, updated_at)
SELECT d.stat_date, coalesce(o.total_orders, 0), coalesce(o.filled_orders, 0),
       coalesce(o.partial_fills, 0), coalesce(o.rejected_orders, 0),
       coalesce(o.cancelled_orders, 0), o.avg_slippage_pct, f.avg_fee_pct, f.avg_latency_ms,
       coalesce(f.total_volume_usdt, 0), coalesce(f.total_fees_usdt, 0),
       coalesce(p.daily_pnl_usdt, 0), now()
FROM d LEFT JOIN o USING (stat_date) LEFT JOIN f USING (stat_date) LEFT JOIN p USING (stat_date)
ON CONFLICT (stat_date) DO UPDATE SET
    total_orders = EXCLUDED.total_orders, filled_orders = EXCLUDED.filled_orders,
    partial_fills = EXCLUDED.partial_fills, rejected_orders = EXCLUDED.rejected_orders,
    cancelled_orders = EXCLUDED.cancelled_orders, avg_slippage_pct = EXCLUDED.avg_slippage_pct,
    avg_fee_pct = EXCLUDED.avg_fee_pct, avg_latency_ms = EXCLUDED.avg_latency_ms,
    total_volume_usdt = EXCLUDED.total_volume_usdt, total_fees_usdt = EXCLUDED.total_fees_usdt,
    daily_pnl_usdt = EXCLUDED.daily_pnl_usdt, updated_at = now()
"""


# The order rows the daily statistics of a batch depend on, as they stand after its writes
# (consumer/daily_sums.py: its orders now, and the orders of the fills it inserted).
SELECT_ORDERS_FOR_STATS = """
SELECT order_id, created_at, status, slippage_pct
FROM paper_orders WHERE order_id = ANY(%(ids)s::varchar[])
"""


# The older fills of orders whose created_at a batch moved (a placeholder replaced or resized):
# their latency moves with it. By the order_id index.
SELECT_OLDER_FILL_TIMES = """
SELECT order_id, filled_at FROM paper_fills
WHERE order_id = ANY(%(ids)s::varchar[]) AND NOT fill_id = ANY(%(new_fill_ids)s::varchar[])
"""


# paper_stats_sums as it should be, from scratch (every date): the back-fill of migration 005
# selects exactly this. For checks and repairs; the worker never runs it.
RECOMPUTE_STATS_SUMS = """
SELECT t.stat_date,
       count(*) FILTER (WHERE t.is_order) AS total_orders,
       count(*) FILTER (WHERE t.status IN ('FILLED', 'PARTIAL', 'PARTIALLY_FILLED'))
           AS filled_orders,
       count(*) FILTER (WHERE t.status IN ('PARTIAL', 'PARTIALLY_FILLED')) AS partial_fills,
       count(*) FILTER (WHERE t.status = 'REJECTED') AS rejected_orders,
       count(*) FILTER (WHERE t.status = 'CANCELLED') AS cancelled_orders,
       count(t.slippage_pct) AS slippage_n, coalesce(sum(t.slippage_pct), 0) AS slippage_sum,
       count(t.fee_pct) AS fee_pct_n, coalesce(sum(t.fee_pct), 0) AS fee_pct_sum,
       count(t.latency_ms) AS latency_n, coalesce(sum(t.latency_ms), 0) AS latency_sum_ms,
       coalesce(sum(t.volume), 0) AS volume_usdt, coalesce(sum(t.fees), 0) AS fees_usdt,
       coalesce(sum(t.pnl), 0) AS realized_pnl_usdt
FROM (
    SELECT (o.created_at AT TIME ZONE 'UTC')::date AS stat_date, true AS is_order, o.status,
           o.slippage_pct, NULL::numeric AS fee_pct, NULL::numeric AS latency_ms,
           NULL::numeric AS volume, NULL::numeric AS fees, NULL::numeric AS pnl
    FROM paper_orders o
    UNION ALL
    SELECT (f.filled_at AT TIME ZONE 'UTC')::date, false, NULL, NULL,
           f.fees_usdt / (f.quantity * f.price) * 100,
           CASE WHEN f.filled_at >= o.created_at
                     AND f.filled_at < o.created_at + interval '24 hours'
                THEN extract(epoch FROM (f.filled_at - o.created_at)) * 1000 END,
           f.quantity * f.price, f.fees_usdt, NULL
    FROM paper_fills f JOIN paper_orders o ON o.order_id = f.order_id
    UNION ALL
    SELECT (p.filled_at AT TIME ZONE 'UTC')::date, false, NULL, NULL, NULL, NULL, NULL, NULL,
           p.realized_pnl_usdt
    FROM paper_fill_pnl p
) AS t
WHERE t.stat_date IS NOT NULL
GROUP BY t.stat_date
ORDER BY t.stat_date
"""


# One batch's signed per-date terms (consumer/daily_sums.py: the same terms REAGGREGATE_STATS
# averages and adds, each from stored values) added to paper_stats_sums: rows locked in date
# order, under LOCK_STATS; sums stay exact (unconstrained NUMERIC). WRITE_STATS_FROM_SUMS follows
# it in the same round trip (the dates are known before: no result is read in between).
APPLY_STATS_SUMS = """
INSERT INTO paper_stats_sums AS s (
    stat_date, total_orders, filled_orders, partial_fills, rejected_orders,
    cancelled_orders, slippage_n, slippage_sum, fee_pct_n, fee_pct_sum, latency_n,
    latency_sum_ms, volume_usdt, fees_usdt, realized_pnl_usdt, updated_at)
SELECT u.*, now()
FROM unnest(
    %(stat_date)s::date[], %(total_orders)s::bigint[], %(filled_orders)s::bigint[],
    %(partial_fills)s::bigint[], %(rejected_orders)s::bigint[],
    %(cancelled_orders)s::bigint[], %(slippage_n)s::bigint[], %(slippage_sum)s::numeric[],
    %(fee_pct_n)s::bigint[], %(fee_pct_sum)s::numeric[], %(latency_n)s::bigint[],
    %(latency_sum_ms)s::numeric[], %(volume_usdt)s::numeric[], %(fees_usdt)s::numeric[],
    %(realized_pnl_usdt)s::numeric[]) AS u
ORDER BY 1
ON CONFLICT (stat_date) DO UPDATE SET
    total_orders = s.total_orders + EXCLUDED.total_orders,
    filled_orders = s.filled_orders + EXCLUDED.filled_orders,
    partial_fills = s.partial_fills + EXCLUDED.partial_fills,
    rejected_orders = s.rejected_orders + EXCLUDED.rejected_orders,
    cancelled_orders = s.cancelled_orders + EXCLUDED.cancelled_orders,
    slippage_n = s.slippage_n + EXCLUDED.slippage_n,
    slippage_sum = s.slippage_sum + EXCLUDED.slippage_sum,
    fee_pct_n = s.fee_pct_n + EXCLUDED.fee_pct_n,
    fee_pct_sum = s.fee_pct_sum + EXCLUDED.fee_pct_sum,
    latency_n = s.latency_n + EXCLUDED.latency_n,
    latency_sum_ms = s.latency_sum_ms + EXCLUDED.latency_sum_ms,
    volume_usdt = s.volume_usdt + EXCLUDED.volume_usdt,
    fees_usdt = s.fees_usdt + EXCLUDED.fees_usdt,
    realized_pnl_usdt = s.realized_pnl_usdt + EXCLUDED.realized_pnl_usdt,
    updated_at = now()
"""


# The stats rows of the given dates (sorted, distinct) from their sums: an average is sum / n,
# which is exactly what avg(numeric) computes (numeric_div of the exact sum by the count), so the
# row equals REAGGREGATE_STATS; a date without sums gets the zeros and NULLs of an empty date. The
# written rows' cumulative P&L is computed here too (the stored daily P&L of the earlier dates
# not written now, plus the new daily P&L of the written ones up to the date: what
# REFRESH_CUMULATIVE_PNL would set); `later` says whether rows after the first written date
# were not written, so that REFRESH_CUMULATIVE_PNL must still run (a late fill). A row that would
# not change is not rewritten. Run under LOCK_STATS, after APPLY_STATS_SUMS: its snapshot has
# every committed daily P&L and the batch's sums.
WRITE_STATS_FROM_SUMS = """
WITH d AS (
    SELECT d.stat_date, coalesce(s.total_orders, 0) AS total_orders,
           coalesce(s.filled_orders, 0) AS filled_orders,
           coalesce(s.partial_fills, 0) AS partial_fills,
           coalesce(s.rejected_orders, 0) AS rejected_orders,
           coalesce(s.cancelled_orders, 0) AS cancelled_orders,
           s.slippage_sum / nullif(s.slippage_n, 0) AS avg_slippage_pct,
           s.fee_pct_sum / nullif(s.fee_pct_n, 0) AS avg_fee_pct,
           s.latency_sum_ms / nullif(s.latency_n, 0) AS avg_latency_ms,
           coalesce(s.volume_usdt, 0) AS total_volume_usdt,
           coalesce(s.fees_usdt, 0) AS total_fees_usdt,
           coalesce(s.realized_pnl_usdt, 0)::DECIMAL(18,8) AS daily_pnl_usdt
    FROM unnest(%(dates)s::date[]) AS d(stat_date)
    LEFT JOIN paper_stats_sums s USING (stat_date)),
c AS (
    SELECT d.*,
           (SELECT coalesce(sum(t.daily_pnl_usdt), 0) FROM paper_trading_stats t
            WHERE t.stat_date < d.stat_date AND t.stat_date <> ALL(%(dates)s::date[]))
           + sum(d.daily_pnl_usdt) OVER (ORDER BY d.stat_date) AS cumulative_pnl_usdt
    FROM d),
w AS (
    INSERT INTO paper_trading_stats AS t (
        stat_date, total_orders, filled_orders, partial_fills, rejected_orders,
        cancelled_orders, avg_slippage_pct, avg_fee_pct, avg_latency_ms, total_volume_usdt,
        total_fees_usdt, daily_pnl_usdt, cumulative_pnl_usdt, updated_at)
    SELECT stat_date, total_orders, filled_orders, partial_fills, rejected_orders,
           cancelled_orders, avg_slippage_pct, avg_fee_pct, avg_latency_ms, total_volume_usdt,
           total_fees_usdt, daily_pnl_usdt, cumulative_pnl_usdt, now()
    FROM c
    ORDER BY stat_date
    ON CONFLICT (stat_date) DO UPDATE SET
        total_orders = EXCLUDED.total_orders, filled_orders = EXCLUDED.filled_orders,
        partial_fills = EXCLUDED.partial_fills, rejected_orders = EXCLUDED.rejected_orders,
        cancelled_orders = EXCLUDED.cancelled_orders,
        avg_slippage_pct = EXCLUDED.avg_slippage_pct, avg_fee_pct = EXCLUDED.avg_fee_pct,
        avg_latency_ms = EXCLUDED.avg_latency_ms, total_volume_usdt = EXCLUDED.total_volume_usdt,
        total_fees_usdt = EXCLUDED.total_fees_usdt, daily_pnl_usdt = EXCLUDED.daily_pnl_usdt,
        cumulative_pnl_usdt = EXCLUDED.cumulative_pnl_usdt, updated_at = now()
    WHERE (t.total_orders, t.filled_orders, t.partial_fills, t.rejected_orders,
           t.cancelled_orders, t.avg_slippage_pct, t.avg_fee_pct, t.avg_latency_ms,
           t.total_volume_usdt, t.total_fees_usdt, t.daily_pnl_usdt, t.cumulative_pnl_usdt)
          IS DISTINCT FROM
          (EXCLUDED.total_orders, EXCLUDED.filled_orders, EXCLUDED.partial_fills,
           EXCLUDED.rejected_orders, EXCLUDED.cancelled_orders, EXCLUDED.avg_slippage_pct,
           EXCLUDED.avg_fee_pct, EXCLUDED.avg_latency_ms, EXCLUDED.total_volume_usdt,
           EXCLUDED.total_fees_usdt, EXCLUDED.daily_pnl_usdt, EXCLUDED.cumulative_pnl_usdt))
SELECT EXISTS (SELECT 1 FROM paper_trading_stats t
               WHERE t.stat_date > (%(dates)s::date[])[1]
                 AND t.stat_date <> ALL(%(dates)s::date[])) AS later
"""


# Cumulative P&L of every date from the earliest touched one on (a late fill moves them all):
# run when WRITE_STATS_FROM_SUMS reports rows after the first written date that it did not write.
REFRESH_CUMULATIVE_PNL = """
UPDATE paper_trading_stats AS s
SET cumulative_pnl_usdt = c.cumulative, updated_at = now()
FROM (SELECT stat_date, sum(daily_pnl_usdt) OVER (ORDER BY stat_date) AS cumulative
      FROM paper_trading_stats) AS c
WHERE s.stat_date = c.stat_date AND s.stat_date >= %(from)s
  AND s.cumulative_pnl_usdt IS DISTINCT FROM c.cumulative
"""


# The exception, for the rest of one transaction: APPLY_STATS_SUMS and WRITE_STATS_FROM_SUMS
# touch only the per-date tables (a row a day), so one generic plan per connection serves every
# batch; planning the statistics step each time cost 0.7 ms a batch, more than running it
# (0.3 ms). CUSTOM_PLANS_AGAIN after them.
GENERIC_PLAN_NEXT = "SET LOCAL plan_cache_mode = force_generic_plan"


CUSTOM_PLANS_AGAIN = "SET LOCAL plan_cache_mode = force_custom_plan"


@dataclass
class StatsDelta:
    """What one batch changed that the daily statistics depend on (``daily_sums.py``).

    ``before`` holds, by the order's current id, the state each order row the batch writes (or
    deletes) had before the batch, as read FOR UPDATE the first time the batch touches it;
    ``created`` the ids of rows the batch inserted; ``fill_order_ids`` the orders of the fills
    it inserts; ``fills`` the rows ``INSERT_FILLS`` returned (the fills inserted now, with their
    stored amounts and fee %; filled in before ``sums``); ``pnl`` the cursors of
    ``INSERT_FILL_PNL`` (read at the end, so that pipeline mode need not wait for them).
    The order rows as they stand after the batch are read back by id (a deleted one is simply
    not found): every term comes from stored values."""

    before: dict[str, OrderState] = field(default_factory=dict)
    # The batch's order rows as read at its start (re-keyed and merged rows follow their key).
    stored: dict[str, OrderState] = field(default_factory=dict)
    created: set[str] = field(default_factory=set)
    fill_order_ids: set[str] = field(default_factory=set)
    fills: list[dict[str, Any]] = field(default_factory=list)
    pnl: list[psycopg.Cursor[dict[str, Any]]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.before or self.created or self.fill_order_ids or self.pnl)

    def touch(self, order_id: str, stored: OrderState | None) -> None:
        """The row ``order_id`` (``stored`` before this statement, None if new) is written."""
        if order_id in self.before or order_id in self.created:
            return
        if stored is None:
            self.created.add(order_id)
        else:
            self.before[order_id] = stored

    def rekey(self, old: str, new: str, stored: OrderState | None) -> None:
        self.touch(old, stored)
        if old in self.before:
            self.before[new] = self.before.pop(old)
        else:
            self.created.discard(old)
            self.created.add(new)

    def read_orders(
        self, conn: psycopg.Connection[dict[str, Any]]
    ) -> psycopg.Cursor[dict[str, Any]] | None:
        """Send the read of the order rows as they stand now (after every write of the batch);
        its result is read by ``sums``."""
        ids = {*self.before, *self.created, *self.fill_order_ids}
        if not ids:
            return None
        return conn.execute(SELECT_ORDERS_FOR_STATS, {"ids": sorted(ids)})

    def sums(
        self,
        conn: psycopg.Connection[dict[str, Any]],
        orders: psycopg.Cursor[dict[str, Any]] | None,
    ) -> daily_sums.BatchSums:
        """The batch's signed terms by date: its orders now (+) and before (-), the fills and
        P&L rows it inserted (+), and the latency of older fills of orders it moved (+/-)."""
        now = {
            r["order_id"]: daily_sums.OrderRow(r["created_at"], r["status"], r["slippage_pct"])
            for r in (orders.fetchall() if orders is not None else [])
        }
        terms = daily_sums.BatchSums()
        for order_id in {*self.before, *self.created}:
            if order_id in now:
                terms.add_order(now[order_id], 1)
        was = {
            order_id: daily_sums.OrderRow(o.created_at, o.status.value, o.slippage_pct)
            for order_id, o in self.before.items()
        }
        for old_row in was.values():
            terms.add_order(old_row, -1)
        for fill in self.fills:
            order = now.get(fill["order_id"])
            if order is not None:  # the reference joins each fill to its order
                terms.add_fill(
                    fill["filled_at"], order.created_at, fill["volume"], fill["fees"],
                    fill["fee_pct"],
                )  # fmt: skip
        moved = {
            order_id: (was[order_id].created_at, now[order_id].created_at)
            for order_id in was
            if order_id in now and now[order_id].created_at != was[order_id].created_at
        }
        if moved:
            older = conn.execute(
                SELECT_OLDER_FILL_TIMES,
                {"ids": sorted(moved), "new_fill_ids": [f["fill_id"] for f in self.fills]},
            ).fetchall()
            for row in older:
                old, new = moved[row["order_id"]]
                terms.add_latency(row["filled_at"], new, 1)
                terms.add_latency(row["filled_at"], old, -1)
        for cursor in self.pnl:
            for row in cursor.fetchall():
                terms.add_pnl(row["filled_at"], row["realized_pnl_usdt"])
        return terms


def sums_params(changed: dict[date, daily_sums.DaySums]) -> dict[str, Any]:
    params: dict[str, list[Any]] = {"stat_date": list(changed)}
    for column in daily_sums.COLUMNS:
        params[column] = [getattr(day, column) for day in changed.values()]
    return array_params(params)
