-- Migration 003: the paper-trading schema (orders, fills, positions, P&L snapshots, daily stats,
-- three views, two functions, grants), after the original design of the Claire de Binare bot with
-- its known flaws fixed. Each fix is marked "flaw N" and explained in
-- sql/schema/paper_trading_erd.md.
--
--     psql -v ON_ERROR_STOP=1 -f sql/migrations/003_paper_trading_schema.sql "$DATABASE_URL"
-- Re-runnable and atomic (flaw 8): a second run changes nothing; an error changes nothing.
-- It also adopts tables left by the original seed file (same names): ids are widened and the
-- constraints added in place, views and functions replaced.
--
-- Money and quantities are DECIMAL(18,8), timestamps TIMESTAMPTZ; every date is a UTC date
-- (flaw 2) and every window is a whole number of 24-hour periods, so nothing here depends on the
-- session's time zone.

BEGIN;

-- Flaw 3: the grants at the end failed when the role was missing.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'claire_user') THEN
        CREATE ROLE claire_user NOLOGIN;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN
        NULL;
END $$;

-- ============================================================================================
-- Tables. The CHECKs added by the fixes (flaws 6 and 9) are in one block after the tables, so
-- that tables created by the original seed get them too.
-- ============================================================================================

-- Every order, one row per order id, updated as the order moves through its life.
-- Flaw 10: ids VARCHAR(100) (the bot's ids reach 54 characters).
CREATE TABLE IF NOT EXISTS paper_orders (
    order_id         VARCHAR(100)  PRIMARY KEY,
    client_id        VARCHAR(100),
    symbol           VARCHAR(20)   NOT NULL,
    side             VARCHAR(4)    NOT NULL
        CONSTRAINT paper_orders_side_check CHECK (side IN ('BUY', 'SELL')),
    order_type       VARCHAR(20)   DEFAULT 'MARKET'
        CONSTRAINT paper_orders_order_type_check
        CHECK (order_type IN ('MARKET', 'LIMIT', 'STOP', 'STOP_LIMIT')),
    quantity         DECIMAL(18,8) NOT NULL
        CONSTRAINT paper_orders_quantity_check CHECK (quantity > 0),
    price            DECIMAL(18,8),                 -- limit price, NULL for market orders
    filled_quantity  DECIMAL(18,8) DEFAULT 0
        CONSTRAINT paper_orders_filled_quantity_check CHECK (filled_quantity >= 0),
    filled_price     DECIMAL(18,8),                 -- average fill price
    status           VARCHAR(20)   NOT NULL
        CONSTRAINT paper_orders_status_check CHECK (status IN (
            'PENDING', 'SUBMITTED', 'FILLED', 'PARTIAL', 'PARTIALLY_FILLED',
            'REJECTED', 'CANCELLED', 'FAILED'
        )),
    slippage_pct     DECIMAL(10,6),
    fees_usdt        DECIMAL(18,8) DEFAULT 0,
    fee_type         VARCHAR(10),                   -- TAKER | MAKER | NULL, checked below
    created_at       TIMESTAMPTZ   DEFAULT now(),
    submitted_at     TIMESTAMPTZ,
    filled_at        TIMESTAMPTZ,
    updated_at       TIMESTAMPTZ   DEFAULT now(),
    rejection_reason TEXT,
    error_message    TEXT,
    metadata         JSONB,
    fill_ratio       DECIMAL(5,4)  GENERATED ALWAYS AS (
        CASE WHEN quantity > 0 THEN filled_quantity / quantity ELSE 0 END
    ) STORED
);

CREATE INDEX IF NOT EXISTS idx_paper_orders_symbol ON paper_orders (symbol);
CREATE INDEX IF NOT EXISTS idx_paper_orders_created_at ON paper_orders (created_at DESC);
CREATE INDEX IF NOT EXISTS idx_paper_orders_filled_at
    ON paper_orders (filled_at DESC) WHERE filled_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_paper_orders_status ON paper_orders (status);
CREATE INDEX IF NOT EXISTS idx_paper_orders_client_id
    ON paper_orders (client_id) WHERE client_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_paper_orders_symbol_status ON paper_orders (symbol, status);
CREATE INDEX IF NOT EXISTS idx_paper_orders_symbol_created
    ON paper_orders (symbol, created_at DESC);

COMMENT ON TABLE paper_orders IS 'Paper-trading orders, one row per order id, with execution details';

-- Every execution. Flaw 5: a fill has no side column; its side is its order's side, and the
-- foreign key guarantees the order row exists (a fill that arrives first creates it).
CREATE TABLE IF NOT EXISTS paper_fills (
    fill_id   VARCHAR(100)  PRIMARY KEY,
    order_id  VARCHAR(100)  NOT NULL REFERENCES paper_orders (order_id) ON DELETE CASCADE,
    symbol    VARCHAR(20)   NOT NULL,
    quantity  DECIMAL(18,8) NOT NULL CONSTRAINT paper_fills_quantity_check CHECK (quantity > 0),
    price     DECIMAL(18,8) NOT NULL CONSTRAINT paper_fills_price_check CHECK (price > 0),
    fees_usdt DECIMAL(18,8) DEFAULT 0,
    fee_type  VARCHAR(10),                          -- TAKER | MAKER | NULL, checked below
    filled_at TIMESTAMPTZ   DEFAULT now(),
    metadata  JSONB
);

CREATE INDEX IF NOT EXISTS idx_paper_fills_order_id ON paper_fills (order_id);
CREATE INDEX IF NOT EXISTS idx_paper_fills_symbol ON paper_fills (symbol);
CREATE INDEX IF NOT EXISTS idx_paper_fills_filled_at ON paper_fills (filled_at DESC);

COMMENT ON TABLE paper_fills IS 'Individual executions; the side is the side of the order (order_id)';

-- One netted position per symbol (quantity + long, - short); realized P&L is lifetime and stays
-- on the row after the position closes (closed_at set).
CREATE TABLE IF NOT EXISTS paper_positions (
    symbol              VARCHAR(20)   PRIMARY KEY,
    quantity            DECIMAL(18,8) NOT NULL,
    avg_entry_price     DECIMAL(18,8) NOT NULL
        CONSTRAINT paper_positions_avg_entry_price_check CHECK (avg_entry_price > 0),
    current_price       DECIMAL(18,8),
    unrealized_pnl_usdt DECIMAL(18,8) DEFAULT 0,
    realized_pnl_usdt   DECIMAL(18,8) DEFAULT 0,
    total_pnl_usdt      DECIMAL(18,8) GENERATED ALWAYS AS (
        unrealized_pnl_usdt + realized_pnl_usdt
    ) STORED,
    cost_basis_usdt     DECIMAL(18,8) NOT NULL,
    market_value_usdt   DECIMAL(18,8),
    entry_trades        INTEGER       DEFAULT 0,
    exit_trades         INTEGER       DEFAULT 0,
    opened_at           TIMESTAMPTZ   NOT NULL,
    updated_at          TIMESTAMPTZ   DEFAULT now(),
    closed_at           TIMESTAMPTZ,
    metadata            JSONB
);

CREATE INDEX IF NOT EXISTS idx_paper_positions_pnl ON paper_positions (total_pnl_usdt DESC);
CREATE INDEX IF NOT EXISTS idx_paper_positions_updated ON paper_positions (updated_at DESC);
CREATE INDEX IF NOT EXISTS idx_paper_positions_open
    ON paper_positions (closed_at) WHERE closed_at IS NULL;

COMMENT ON TABLE paper_positions IS 'One netted position per symbol with lifetime realized P&L';

-- Account-wide P&L time series, derived from positions (never summed from earlier snapshots).
-- DAILY snapshots are taken at 00:00 UTC (flaw 2).
CREATE TABLE IF NOT EXISTS paper_pnl_snapshots (
    snapshot_id         SERIAL        PRIMARY KEY,
    snapshot_time       TIMESTAMPTZ   NOT NULL,
    snapshot_type       VARCHAR(10)   NOT NULL
        CONSTRAINT paper_pnl_snapshots_snapshot_type_check
        CHECK (snapshot_type IN ('HOURLY', 'DAILY', 'MANUAL')),
    total_pnl_usdt      DECIMAL(18,8) NOT NULL,
    realized_pnl_usdt   DECIMAL(18,8) NOT NULL,
    unrealized_pnl_usdt DECIMAL(18,8) NOT NULL,
    balance_usdt        DECIMAL(18,8),
    equity_usdt         DECIMAL(18,8),
    margin_used_usdt    DECIMAL(18,8) DEFAULT 0,
    total_trades        INTEGER       DEFAULT 0,
    winning_trades      INTEGER       DEFAULT 0,
    losing_trades       INTEGER       DEFAULT 0,
    win_rate            DECIMAL(5,4)  GENERATED ALWAYS AS (
        CASE WHEN total_trades > 0 THEN winning_trades::DECIMAL / total_trades ELSE 0 END
    ) STORED,
    total_volume_usdt   DECIMAL(18,8) DEFAULT 0,
    total_fees_usdt     DECIMAL(18,8) DEFAULT 0,
    symbol_pnl          JSONB,        -- {"BTCUSDT": {"pnl": 150.5, "trades": 10}, ...}
    metadata            JSONB,
    CONSTRAINT paper_pnl_snapshots_snapshot_time_snapshot_type_key
        UNIQUE (snapshot_time, snapshot_type)
);

CREATE INDEX IF NOT EXISTS idx_paper_pnl_time ON paper_pnl_snapshots (snapshot_time DESC);
CREATE INDEX IF NOT EXISTS idx_paper_pnl_type_time
    ON paper_pnl_snapshots (snapshot_type, snapshot_time DESC);

COMMENT ON TABLE paper_pnl_snapshots IS 'Time series of account P&L (HOURLY, DAILY at 00:00 UTC, MANUAL)';

-- One row per UTC date (flaw 2). Flaw 13: total_orders counts the orders created that UTC date,
-- filled_orders those of them with status FILLED, PARTIAL or PARTIALLY_FILLED, so that fill_rate
-- is get_paper_fill_rate's definition over that date.
CREATE TABLE IF NOT EXISTS paper_trading_stats (
    stat_id             SERIAL        PRIMARY KEY,
    stat_date           DATE          NOT NULL
        CONSTRAINT paper_trading_stats_stat_date_key UNIQUE,
    total_orders        INTEGER       DEFAULT 0,
    filled_orders       INTEGER       DEFAULT 0,
    partial_fills       INTEGER       DEFAULT 0,
    rejected_orders     INTEGER       DEFAULT 0,
    cancelled_orders    INTEGER       DEFAULT 0,
    fill_rate           DECIMAL(5,4)  GENERATED ALWAYS AS (
        CASE WHEN total_orders > 0 THEN filled_orders::DECIMAL / total_orders ELSE 0 END
    ) STORED,
    avg_slippage_pct    DECIMAL(10,6),
    avg_fee_pct         DECIMAL(10,6),
    avg_latency_ms      DECIMAL(10,2),
    total_volume_usdt   DECIMAL(18,8) DEFAULT 0,
    total_fees_usdt     DECIMAL(18,8) DEFAULT 0,
    daily_pnl_usdt      DECIMAL(18,8) DEFAULT 0,
    cumulative_pnl_usdt DECIMAL(18,8) DEFAULT 0,
    updated_at          TIMESTAMPTZ   DEFAULT now()
);

CREATE INDEX IF NOT EXISTS idx_paper_stats_date ON paper_trading_stats (stat_date DESC);

COMMENT ON TABLE paper_trading_stats IS 'Daily aggregates per UTC date (fill_rate as get_paper_fill_rate)';

-- ============================================================================================
-- Adopting tables created by the original seed (a no-op on tables created above).
-- ============================================================================================
DO $$
DECLARE
    col record;
BEGIN
    -- Flaw 10: widen the ids. The recent-orders view reads order_id, so it is dropped first (it
    -- is recreated, and granted again, below).
    FOR col IN
        SELECT table_name, column_name
        FROM information_schema.columns
        WHERE table_schema = current_schema()
          AND (table_name, column_name) IN (
              ('paper_orders', 'order_id'), ('paper_orders', 'client_id'),
              ('paper_fills', 'fill_id'), ('paper_fills', 'order_id'))
          AND character_maximum_length < 100
        ORDER BY table_name DESC, column_name DESC  -- the referenced key before the reference
    LOOP
        DROP VIEW IF EXISTS v_paper_recent_orders;
        EXECUTE format('ALTER TABLE %I ALTER COLUMN %I TYPE VARCHAR(100)',
                       col.table_name, col.column_name);
    END LOOP;

    -- Flaw 6: the seed's fee_type check on paper_orders (IN list with a NULL) accepts anything.
    IF EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conrelid = 'paper_orders'::regclass
          AND conname = 'paper_orders_fee_type_check'
          AND pg_get_constraintdef(oid) NOT LIKE '%IS NULL%'
    ) THEN
        ALTER TABLE paper_orders DROP CONSTRAINT paper_orders_fee_type_check;
    END IF;
    IF EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conrelid = 'paper_fills'::regclass
          AND conname = 'paper_fills_fee_type_check'
          AND pg_get_constraintdef(oid) NOT LIKE '%IS NULL%'
    ) THEN
        ALTER TABLE paper_fills DROP CONSTRAINT paper_fills_fee_type_check;
    END IF;
END $$;

-- ============================================================================================
-- Constraints of the fixes, added when missing. Named, so bad data fails with a readable
-- constraint name instead of a numeric overflow in a generated column (flaw 9).
-- ============================================================================================
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT * FROM (VALUES
            -- Flaw 6: NULL is allowed explicitly, not through a NULL in the IN list.
            ('paper_orders', 'paper_orders_fee_type_check',
             $c$CHECK (fee_type IS NULL OR fee_type IN ('TAKER', 'MAKER'))$c$),
            ('paper_fills', 'paper_fills_fee_type_check',
             $c$CHECK (fee_type IS NULL OR fee_type IN ('TAKER', 'MAKER'))$c$),
            -- Flaw 9: fill_ratio DECIMAL(5,4) overflowed on an over-fill.
            ('paper_orders', 'paper_orders_filled_quantity_le_quantity',
             $c$CHECK (filled_quantity <= quantity)$c$),
            -- Flaw 9: win_rate DECIMAL(5,4) overflowed on inconsistent counts.
            ('paper_pnl_snapshots', 'paper_pnl_snapshots_trade_counts_nonnegative',
             $c$CHECK (total_trades >= 0 AND winning_trades >= 0 AND losing_trades >= 0)$c$),
            ('paper_pnl_snapshots', 'paper_pnl_snapshots_trade_counts_consistent',
             $c$CHECK (winning_trades + losing_trades <= total_trades)$c$),
            -- The same guard for the other counters (fill_rate would exceed 1 otherwise).
            ('paper_positions', 'paper_positions_trade_counts_nonnegative',
             $c$CHECK (entry_trades >= 0 AND exit_trades >= 0)$c$),
            ('paper_trading_stats', 'paper_trading_stats_order_counts_nonnegative',
             $c$CHECK (total_orders >= 0 AND filled_orders >= 0 AND partial_fills >= 0
                       AND rejected_orders >= 0 AND cancelled_orders >= 0)$c$),
            ('paper_trading_stats', 'paper_trading_stats_filled_orders_le_total_orders',
             $c$CHECK (filled_orders <= total_orders)$c$)
        ) AS v (table_name, constraint_name, definition)
    LOOP
        IF NOT EXISTS (
            SELECT 1 FROM pg_constraint
            WHERE conrelid = c.table_name::regclass AND conname = c.constraint_name
        ) THEN
            EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I %s',
                           c.table_name, c.constraint_name, c.definition);
        END IF;
    END LOOP;
END $$;

-- ============================================================================================
-- Views. Windows are inclusive ("created_at >= now() - window"); ties are broken by key so the
-- order is deterministic.
-- ============================================================================================

-- Orders created in the last 24 hours, newest first.
CREATE OR REPLACE VIEW v_paper_recent_orders AS
SELECT
    order_id,
    symbol,
    side,
    order_type,
    quantity,
    filled_quantity,
    filled_price,
    status,
    slippage_pct,
    fees_usdt,
    created_at,
    filled_at
FROM paper_orders
WHERE created_at >= now() - INTERVAL '24 hours'
ORDER BY created_at DESC, order_id;

-- Open positions, highest total P&L first.
CREATE OR REPLACE VIEW v_paper_active_positions AS
SELECT
    symbol,
    quantity,
    avg_entry_price,
    current_price,
    unrealized_pnl_usdt,
    realized_pnl_usdt,
    total_pnl_usdt,
    market_value_usdt,
    opened_at,
    updated_at
FROM paper_positions
WHERE closed_at IS NULL
ORDER BY total_pnl_usdt DESC NULLS LAST, symbol;

-- Per UTC date (flaw 2) and symbol over the last 30 days (720 hours, so the window does not move
-- with a daylight-saving change of the session's time zone). filled_orders is FILLED only
-- (flaw 13: the seed's view definition, kept).
CREATE OR REPLACE VIEW v_paper_daily_summary AS
SELECT
    (created_at AT TIME ZONE 'UTC')::date AS trade_date,
    symbol,
    count(*) AS total_orders,
    count(*) FILTER (WHERE status = 'FILLED') AS filled_orders,
    count(*) FILTER (WHERE status = 'REJECTED') AS rejected_orders,
    COALESCE(sum(filled_quantity * filled_price), 0) AS total_volume_usdt,
    COALESCE(sum(fees_usdt), 0) AS total_fees_usdt,
    avg(slippage_pct) AS avg_slippage_pct
FROM paper_orders
WHERE created_at >= now() - INTERVAL '720 hours'
GROUP BY (created_at AT TIME ZONE 'UTC')::date, symbol
ORDER BY trade_date DESC, symbol;

-- ============================================================================================
-- Functions: plain SQL, STABLE (flaw 4). A function's return typmod is not applied to the value
-- (flaw 7), so each rounds and casts its own result.
-- ============================================================================================

-- Flaw 1: realized P&L of every position (closed ones included) + unrealized P&L of open ones.
CREATE OR REPLACE FUNCTION get_paper_total_pnl()
RETURNS DECIMAL(18,8)
LANGUAGE sql
STABLE
AS $$
    SELECT round(
        COALESCE(sum(realized_pnl_usdt), 0)
        + COALESCE(sum(unrealized_pnl_usdt) FILTER (WHERE closed_at IS NULL), 0),
        8
    )::DECIMAL(18,8)
    FROM paper_positions
$$;

-- Share of the symbol's orders created in the last p_days days (of 24 h) whose status is FILLED,
-- PARTIAL or PARTIALLY_FILLED, rounded to 4 decimal places; 0 when there are none.
CREATE OR REPLACE FUNCTION get_paper_fill_rate(p_symbol VARCHAR(20), p_days INTEGER DEFAULT 7)
RETURNS DECIMAL(5,4)
LANGUAGE sql
STABLE
AS $$
    SELECT COALESCE(
        round(
            (count(*) FILTER (WHERE status IN ('FILLED', 'PARTIAL', 'PARTIALLY_FILLED')))::DECIMAL
            / NULLIF(count(*), 0),
            4
        ),
        0
    )::DECIMAL(5,4)
    FROM paper_orders
    WHERE symbol = p_symbol
      AND created_at >= now() - p_days * INTERVAL '24 hours'
$$;

-- ============================================================================================
-- Grants to the runtime role (flaw 11): what the writer and the retention `prune` command use,
-- nothing more (no TRUNCATE, no DDL). DELETE on paper_orders, paper_fills, paper_pnl_snapshots is
-- for `prune`; paper_positions keeps DELETE from the original design.
-- ============================================================================================
GRANT SELECT, INSERT, UPDATE, DELETE ON paper_orders TO claire_user;
GRANT SELECT, INSERT, DELETE ON paper_fills TO claire_user;
GRANT SELECT, INSERT, UPDATE, DELETE ON paper_positions TO claire_user;
GRANT SELECT, INSERT, DELETE ON paper_pnl_snapshots TO claire_user;
GRANT SELECT, INSERT, UPDATE ON paper_trading_stats TO claire_user;

GRANT USAGE, SELECT ON SEQUENCE paper_pnl_snapshots_snapshot_id_seq TO claire_user;
GRANT USAGE, SELECT ON SEQUENCE paper_trading_stats_stat_id_seq TO claire_user;

GRANT SELECT ON v_paper_recent_orders, v_paper_active_positions, v_paper_daily_summary
    TO claire_user;

GRANT EXECUTE ON FUNCTION get_paper_total_pnl() TO claire_user;
GRANT EXECUTE ON FUNCTION get_paper_fill_rate(VARCHAR, INTEGER) TO claire_user;

COMMIT;
