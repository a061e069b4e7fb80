-- Migration 007: per-symbol event clocks for HOURLY/DAILY P&L snapshots.
--
--     psql -v ON_ERROR_STOP=1 -f sql/migrations/007_symbol_clocks.sql "$DATABASE_URL"
-- Re-runnable: a second run changes nothing.
--
-- A snapshot at boundary B is the sum over symbols of each symbol's state as of B by the
-- symbol's *own* event clock (consumer/snapshots.py, docs/scaling.md), so it does not depend on
-- how symbols' events interleave across (sharded) streams.
--
--   paper_symbol_clocks        one row per symbol: the newest event time of that symbol.
--   paper_pnl_snapshot_parts   written when an event of a symbol crosses boundaries by the
--                              symbol's clock: the symbol's state just before that event, valid
--                              for every boundary B with after_time < B <= until_time.
--   paper_pnl_clock.parts_since  the global clock when this migration ran on a database that
--                              had one: HOURLY/DAILY rows at or before it were taken the old way
--                              and are never recomputed. NULL on a fresh database.
-- Back-fill: every symbol with a position or a fill gets the global clock as its clock.

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

CREATE TABLE IF NOT EXISTS paper_symbol_clocks (
    symbol     VARCHAR(20) PRIMARY KEY,
    event_time TIMESTAMPTZ NOT NULL
);

COMMENT ON TABLE paper_symbol_clocks IS
    'Newest event time per symbol: the clock by which its events cross snapshot boundaries';

CREATE TABLE IF NOT EXISTS paper_pnl_snapshot_parts (
    symbol       VARCHAR(20)   NOT NULL,
    after_time   TIMESTAMPTZ   NOT NULL,
    until_time   TIMESTAMPTZ   NOT NULL,
    has_position BOOLEAN       NOT NULL,
    realized     NUMERIC       NOT NULL,
    unrealized   NUMERIC       NOT NULL,
    trades       INTEGER       NOT NULL,
    winning      INTEGER       NOT NULL,
    losing       INTEGER       NOT NULL,
    volume       NUMERIC       NOT NULL,
    fees         NUMERIC       NOT NULL,
    PRIMARY KEY (symbol, until_time),
    CONSTRAINT paper_pnl_snapshot_parts_range CHECK (after_time < until_time)
);

COMMENT ON TABLE paper_pnl_snapshot_parts IS
    'A symbol''s state for the snapshot boundaries B with after_time < B <= until_time';

ALTER TABLE paper_pnl_clock ADD COLUMN IF NOT EXISTS parts_since TIMESTAMPTZ;

DO $$
BEGIN
    -- Only on the first run: afterwards the clocks are the worker's.
    IF NOT EXISTS (SELECT 1 FROM paper_symbol_clocks) THEN
        UPDATE paper_pnl_clock SET parts_since = event_time WHERE parts_since IS NULL;
        INSERT INTO paper_symbol_clocks (symbol, event_time)
        SELECT s.symbol, c.event_time
        FROM (SELECT symbol FROM paper_positions UNION SELECT symbol FROM paper_fills) s
        CROSS JOIN paper_pnl_clock c
        ON CONFLICT (symbol) DO NOTHING;
    END IF;
END $$;

GRANT SELECT, INSERT, UPDATE ON paper_symbol_clocks TO claire_user;
GRANT SELECT, INSERT, DELETE ON paper_pnl_snapshot_parts TO claire_user;
-- HOURLY/DAILY rows are recomputed in place: UPDATE on their values only (not on their time,
-- type or metadata). It also allows the SELECT ... FOR UPDATE that locks them.
GRANT UPDATE (
    total_pnl_usdt, realized_pnl_usdt, unrealized_pnl_usdt, balance_usdt, equity_usdt,
    total_trades, winning_trades, losing_trades, total_volume_usdt, total_fees_usdt, symbol_pnl) ON paper_pnl_snapshots TO claire_user;

COMMIT;
