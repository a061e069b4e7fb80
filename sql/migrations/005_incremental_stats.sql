-- Migration 005: exact per-date sums behind paper_trading_stats (incremental daily statistics).
--
--     psql -v ON_ERROR_STOP=1 -f sql/migrations/005_incremental_stats.sql "$DATABASE_URL"
-- Re-runnable: a second run changes nothing.
--
-- The worker used to rescan the whole UTC day of orders, fills and per-fill P&L for every date a
-- batch touched (REAGGREGATE_STATS in consumer/store.py), so a batch cost grew with the day.
-- paper_stats_sums keeps, per UTC date, the exact counts and numeric sums that re-aggregation
-- computes (the same terms, by the same SQL expressions); each batch adds the terms of the rows
-- it writes and subtracts the terms those rows had before, and the stats row is derived from the
-- sums: an average is sum / n, which is exactly what avg(numeric) computes. The sums are
-- unconstrained NUMERIC so they stay exact (no rounding until the DECIMAL stats columns).
--   orders by UTC date of created_at: total, FILLED/PARTIAL/PARTIALLY_FILLED, partial, REJECTED,
--     CANCELLED; slippage_pct n and sum
--   fills by UTC date of filled_at: volume (quantity * price), fees, fee % n and sum, latency
--     n and sum (fills within a day of their order's created_at and not before it)
--   per-fill P&L by UTC date of filled_at: realized P&L
-- Retention: `prune` deletes dead orders but not their sums, so a prune never changes stats.

BEGIN;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'claire_user') THEN
        CREATE ROLE claire_user NOLOGIN;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN
        NULL;
END $$;

CREATE TABLE IF NOT EXISTS paper_stats_sums (
    stat_date          DATE        PRIMARY KEY,
    total_orders       BIGINT      NOT NULL DEFAULT 0,
    filled_orders      BIGINT      NOT NULL DEFAULT 0,
    partial_fills      BIGINT      NOT NULL DEFAULT 0,
    rejected_orders    BIGINT      NOT NULL DEFAULT 0,
    cancelled_orders   BIGINT      NOT NULL DEFAULT 0,
    slippage_n         BIGINT      NOT NULL DEFAULT 0,
    slippage_sum       NUMERIC     NOT NULL DEFAULT 0,
    fee_pct_n          BIGINT      NOT NULL DEFAULT 0,
    fee_pct_sum        NUMERIC     NOT NULL DEFAULT 0,
    latency_n          BIGINT      NOT NULL DEFAULT 0,
    latency_sum_ms     NUMERIC     NOT NULL DEFAULT 0,
    volume_usdt        NUMERIC     NOT NULL DEFAULT 0,
    fees_usdt          NUMERIC     NOT NULL DEFAULT 0,
    realized_pnl_usdt  NUMERIC     NOT NULL DEFAULT 0,
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
    -- No CHECK (counts >= 0) here: the worker upserts signed deltas with INSERT … ON CONFLICT,
    -- and PostgreSQL checks the proposed row (a negative delta) before it finds the conflict.
    -- paper_trading_stats_order_counts_nonnegative still guards the counts derived from it.
) WITH (fillfactor = 50);  -- rewritten every batch: leave room for HOT updates

COMMENT ON TABLE paper_stats_sums IS
    'Exact per-UTC-date counts and sums behind paper_trading_stats, maintained by the worker';

-- Back-fill from the rows already there (the terms of REAGGREGATE_STATS, every date). Dates that
-- already have sums keep them: a second run changes nothing.
INSERT INTO paper_stats_sums (
    stat_date, total_orders, filled_orders, partial_fills, rejected_orders, cancelled_orders,
    slippage_n, slippage_sum, fee_pct_n, fee_pct_sum, latency_n, latency_sum_ms, volume_usdt,
    fees_usdt, realized_pnl_usdt)
SELECT t.stat_date,
       count(*) FILTER (WHERE t.is_order),
       count(*) FILTER (WHERE t.status IN ('FILLED', 'PARTIAL', 'PARTIALLY_FILLED')),
       count(*) FILTER (WHERE t.status IN ('PARTIAL', 'PARTIALLY_FILLED')),
       count(*) FILTER (WHERE t.status = 'REJECTED'),
       count(*) FILTER (WHERE t.status = 'CANCELLED'),
       count(t.slippage_pct), coalesce(sum(t.slippage_pct), 0),
       count(t.fee_pct), coalesce(sum(t.fee_pct), 0),
       count(t.latency_ms), coalesce(sum(t.latency_ms), 0),
       coalesce(sum(t.volume), 0), coalesce(sum(t.fees), 0), coalesce(sum(t.pnl), 0)
FROM (
    SELECT (o.created_at AT TIME ZONE 'UTC')::date AS stat_date, true AS is_order, o.status,
           o.slippage_pct, NULL::numeric AS fee_pct, NULL::numeric AS latency_ms,
           NULL::numeric AS volume, NULL::numeric AS fees, NULL::numeric AS pnl
    FROM paper_orders o
    UNION ALL
    SELECT (f.filled_at AT TIME ZONE 'UTC')::date, false, NULL, NULL,
           f.fees_usdt / (f.quantity * f.price) * 100,
           CASE WHEN f.filled_at >= o.created_at AND f.filled_at < o.created_at + interval '1 day'
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
ON CONFLICT (stat_date) DO NOTHING;

GRANT SELECT, INSERT, UPDATE ON paper_stats_sums TO claire_user;

COMMIT;
