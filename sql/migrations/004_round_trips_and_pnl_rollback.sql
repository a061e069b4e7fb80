-- Rollback of migration 004: round trips, per-fill P&L and the snapshot clock, with their grants.
--
--     psql -v ON_ERROR_STOP=1 -f sql/migrations/004_round_trips_and_pnl_rollback.sql "$DATABASE_URL"
-- Re-runnable: a second run changes nothing. The role `claire_user` is kept (see 001's rollback).

BEGIN;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'claire_user') THEN
        RETURN;
    END IF;
    IF to_regclass('paper_round_trips') IS NOT NULL THEN
        REVOKE SELECT, INSERT ON paper_round_trips FROM claire_user;
    END IF;
    IF to_regclass('paper_fill_pnl') IS NOT NULL THEN
        REVOKE SELECT, INSERT ON paper_fill_pnl FROM claire_user;
    END IF;
    IF to_regclass('paper_pnl_clock') IS NOT NULL THEN
        REVOKE SELECT, INSERT, UPDATE ON paper_pnl_clock FROM claire_user;
    END IF;
END $$;

DROP INDEX IF EXISTS idx_paper_fill_pnl_filled_at;
DROP INDEX IF EXISTS idx_paper_round_trips_closed;
DROP INDEX IF EXISTS idx_paper_round_trips_symbol_closed;
DROP TABLE IF EXISTS paper_pnl_clock;
DROP TABLE IF EXISTS paper_fill_pnl;
DROP TABLE IF EXISTS paper_round_trips;

COMMIT;
