"""The incremental daily statistics step of a batch (``paper_trading_stats``).

Each fold step computes its signed per-date terms from the order rows before and after it, the
fills and per-fill P&L it adds and the latency of older fills whose order's ``created_at`` moved
(``FoldStep.stat_terms``: ``step_terms.py``, ``daily_sums.py``, the digits PostgreSQL stores);
``write_stats`` adds the batch's terms to ``paper_stats_sums`` (exact per-date counts and
numeric sums, migration 005); the touched stats rows are derived from the sums, so each equals
a full re-aggregation (``REAGGREGATE_STATS``, the reference) at a cost that grows with the
batch, not with the day. One advisory lock serialises this last step of concurrent writers
(the terms are deltas of rows the batch holds locked; only their addition to the per-date sums
and the cumulative P&L across dates need the other writers' commits, so they stay in SQL).
"""

from __future__ import annotations

from datetime import date
from typing import Any

import psycopg

from consumer import daily_sums
from consumer.db.rows import array_params

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


def write_stats(
    conn: psycopg.Connection[dict[str, Any]], terms: daily_sums.BatchSums
) -> list[date]:
    """Add a batch's terms (its fold steps', ``FoldStep.stat_terms``) to ``paper_stats_sums``
    and rewrite the stats rows of every date they name; returns those dates. Under
    ``LOCK_STATS``: the sums only ever get a writer's deltas added, and each row is derived
    from the sums and the committed daily P&L, so concurrent writers add up exactly."""
    dates = sorted(terms.dates())
    if not dates:
        return []
    changed = terms.changed()
    conn.execute(LOCK_STATS)
    conn.execute(GENERIC_PLAN_NEXT)
    if changed:
        conn.execute(APPLY_STATS_SUMS, sums_params(changed))
    written = conn.execute(WRITE_STATS_FROM_SUMS, {"dates": dates}).fetchone()
    conn.execute(CUSTOM_PLANS_AGAIN)
    if written is None or written["later"]:
        conn.execute(REFRESH_CUMULATIVE_PNL, {"from": dates[0]})
    return dates


def sums_params(changed: dict[date, daily_sums.DaySums]) -> dict[str, Any]:
    params: dict[str, list[Any]] = {"stat_date": list(changed)}
    for column in daily_sums.COLUMNS:
        params[column] = [getattr(day, column) for day in changed.values()]
    return array_params(params)
