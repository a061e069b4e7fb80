-- Rollback of migration 007: per-symbol snapshot clocks, with their grants.
--
--     psql -v ON_ERROR_STOP=1 -f sql/migrations/007_symbol_clocks_rollback.sql "$DATABASE_URL"
-- Re-runnable: a second run changes nothing. The role `claire_user` is kept (see 001's rollback).
-- The snapshot rows stay as they are; the global clock goes on from where it stands.

BEGIN;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'claire_user') THEN
        RETURN;
    END IF;
    IF to_regclass('paper_symbol_clocks') IS NOT NULL THEN
        REVOKE SELECT, INSERT, UPDATE ON paper_symbol_clocks FROM claire_user;
    END IF;
    IF to_regclass('paper_pnl_snapshot_parts') IS NOT NULL THEN
        REVOKE SELECT, INSERT, DELETE ON paper_pnl_snapshot_parts FROM claire_user;
    END IF;
    IF to_regclass('paper_pnl_snapshots') IS NOT NULL THEN
        REVOKE UPDATE (
            total_pnl_usdt, realized_pnl_usdt, unrealized_pnl_usdt, balance_usdt, equity_usdt,
            total_trades, winning_trades, losing_trades, total_volume_usdt, total_fees_usdt,
            symbol_pnl) ON paper_pnl_snapshots FROM claire_user;
    END IF;
END $$;

-- The global clock must again be the newest event time (migration 004's meaning).
DO $$
BEGIN
    IF to_regclass('paper_symbol_clocks') IS NOT NULL THEN
        UPDATE paper_pnl_clock c SET event_time = m.t
        FROM (SELECT max(event_time) AS t FROM paper_symbol_clocks) m
        WHERE m.t > c.event_time;
    END IF;
END $$;

ALTER TABLE IF EXISTS paper_pnl_clock DROP COLUMN IF EXISTS parts_since;
DROP TABLE IF EXISTS paper_pnl_snapshot_parts;
DROP TABLE IF EXISTS paper_symbol_clocks;

COMMIT;
