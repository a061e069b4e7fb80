-- Migration 004: round-trip history, per-fill realized P&L and the event-time clock.
--
--     psql -v ON_ERROR_STOP=1 -f sql/migrations/004_round_trips_and_pnl.sql "$DATABASE_URL"
-- Re-runnable: a second run changes nothing.
--
-- paper_positions keeps one row per symbol, so a closed position used to leave no trace (flaw 12
-- in sql/schema/paper_trading_erd.md). These tables keep what the analytics need, written by the
-- worker in the same transaction as the fills that cause them:
--   paper_round_trips  one row per closed round trip (win rate, trade counts, any window)
--   paper_fill_pnl     the realized P&L each fill caused (daily and cumulative P&L by UTC date)
--   paper_pnl_clock    the newest event time processed: hourly/daily snapshots are taken when
--                      event time crosses a boundary, so live and replay give the same rows.

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

-- Keyed by the fill that closed the trip: a fill closes at most one trip (a flip closes one and
-- opens the next), so a redelivered fill can never record a trip twice. No foreign key to
-- paper_fills: the trip history outlives the retention of individual fills.
CREATE TABLE IF NOT EXISTS paper_round_trips (
    closing_fill_id   VARCHAR(100)  PRIMARY KEY,
    symbol            VARCHAR(20)   NOT NULL,
    direction         VARCHAR(5)    NOT NULL
        CONSTRAINT paper_round_trips_direction_check CHECK (direction IN ('LONG', 'SHORT')),
    opened_at         TIMESTAMPTZ   NOT NULL,
    closed_at         TIMESTAMPTZ   NOT NULL,
    quantity          DECIMAL(18,8) NOT NULL
        CONSTRAINT paper_round_trips_quantity_check CHECK (quantity > 0),
    max_quantity      DECIMAL(18,8) NOT NULL
        CONSTRAINT paper_round_trips_max_quantity_check CHECK (max_quantity > 0),
    entry_avg_price   DECIMAL(18,8) NOT NULL,
    exit_avg_price    DECIMAL(18,8) NOT NULL,
    realized_pnl_usdt DECIMAL(18,8) NOT NULL,
    fees_usdt         DECIMAL(18,8) NOT NULL DEFAULT 0,
    fills             INTEGER       NOT NULL
        CONSTRAINT paper_round_trips_fills_check CHECK (fills > 0),
    close_reason      VARCHAR(4)    NOT NULL
        CONSTRAINT paper_round_trips_close_reason_check CHECK (close_reason IN ('FLAT', 'FLIP')),
    recorded_at       TIMESTAMPTZ   NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS idx_paper_round_trips_symbol_closed
    ON paper_round_trips (symbol, closed_at DESC);
CREATE INDEX IF NOT EXISTS idx_paper_round_trips_closed ON paper_round_trips (closed_at DESC);

COMMENT ON TABLE paper_round_trips IS
    'Closed round trips (flat to flat, or ended by a flip): one trade each for win rates';

-- The change of the symbol's realized P&L caused by each fill (fees included).
CREATE TABLE IF NOT EXISTS paper_fill_pnl (
    fill_id           VARCHAR(100)  PRIMARY KEY,
    symbol            VARCHAR(20)   NOT NULL,
    filled_at         TIMESTAMPTZ   NOT NULL,
    realized_pnl_usdt DECIMAL(18,8) NOT NULL,
    position_quantity DECIMAL(18,8) NOT NULL
);

CREATE INDEX IF NOT EXISTS idx_paper_fill_pnl_filled_at ON paper_fill_pnl (filled_at);

COMMENT ON TABLE paper_fill_pnl IS 'Realized P&L caused by each fill (daily P&L by UTC date)';

-- One row: the newest event time the worker has processed (the snapshot clock).
CREATE TABLE IF NOT EXISTS paper_pnl_clock (
    clock_id   SMALLINT    PRIMARY KEY DEFAULT 1
        CONSTRAINT paper_pnl_clock_single_row CHECK (clock_id = 1),
    event_time TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

COMMENT ON TABLE paper_pnl_clock IS
    'Newest event time processed; hourly/daily snapshots are taken when it crosses a boundary';

GRANT SELECT, INSERT ON paper_round_trips TO claire_user;
GRANT SELECT, INSERT ON paper_fill_pnl TO claire_user;
GRANT SELECT, INSERT, UPDATE ON paper_pnl_clock TO claire_user;
-- Snapshots are inserted with ON CONFLICT DO NOTHING (003 grants SELECT, INSERT: enough).

COMMIT;
