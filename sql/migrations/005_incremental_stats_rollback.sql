-- Rollback of migration 005: the per-date sums behind paper_trading_stats, with their grant.
--
--     psql -v ON_ERROR_STOP=1 -f sql/migrations/005_incremental_stats_rollback.sql "$DATABASE_URL"
-- Re-runnable: a second run changes nothing. paper_trading_stats keeps its rows; a worker of an
-- older version recomputes them from the tables. The role `claire_user` is kept.

BEGIN;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'claire_user')
       AND to_regclass('paper_stats_sums') IS NOT NULL THEN
        REVOKE SELECT, INSERT, UPDATE ON paper_stats_sums FROM claire_user;
    END IF;
END $$;

DROP TABLE IF EXISTS paper_stats_sums;

COMMIT;
