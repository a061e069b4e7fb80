-- Rollback of migration 003: every view, function, table, index, sequence and grant it created.
--
-- Apply before the rollbacks of 002 and 001:
--     psql -v ON_ERROR_STOP=1 -f sql/migrations/003_paper_trading_schema_rollback.sql "$DATABASE_URL"
-- Re-runnable: a second run changes nothing. The role `claire_user` is kept (see 001's rollback).
-- No CASCADE: if a later migration still depends on these objects, roll that one back first;
-- this file then fails (and changes nothing) instead of silently dropping someone else's object.

BEGIN;

-- REVOKE has no IF EXISTS: guard on the role and on each object.
DO $$
DECLARE
    g record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'claire_user') THEN
        RETURN;
    END IF;
    FOR g IN
        SELECT * FROM (VALUES
            ('TABLE', 'paper_orders', 'SELECT, INSERT, UPDATE, DELETE'),
            ('TABLE', 'paper_fills', 'SELECT, INSERT, DELETE'),
            ('TABLE', 'paper_positions', 'SELECT, INSERT, UPDATE, DELETE'),
            ('TABLE', 'paper_pnl_snapshots', 'SELECT, INSERT, DELETE'),
            ('TABLE', 'paper_trading_stats', 'SELECT, INSERT, UPDATE'),
            ('SEQUENCE', 'paper_pnl_snapshots_snapshot_id_seq', 'USAGE, SELECT'),
            ('SEQUENCE', 'paper_trading_stats_stat_id_seq', 'USAGE, SELECT'),
            ('TABLE', 'v_paper_recent_orders', 'SELECT'),
            ('TABLE', 'v_paper_active_positions', 'SELECT'),
            ('TABLE', 'v_paper_daily_summary', 'SELECT')
        ) AS v (kind, object_name, privileges)
    LOOP
        IF to_regclass(g.object_name) IS NOT NULL THEN
            EXECUTE format('REVOKE %s ON %s %I FROM claire_user',
                           g.privileges, g.kind, g.object_name);
        END IF;
    END LOOP;
    IF to_regprocedure('get_paper_total_pnl()') IS NOT NULL THEN
        REVOKE EXECUTE ON FUNCTION get_paper_total_pnl() FROM claire_user;
    END IF;
    IF to_regprocedure('get_paper_fill_rate(varchar, integer)') IS NOT NULL THEN
        REVOKE EXECUTE ON FUNCTION get_paper_fill_rate(VARCHAR, INTEGER) FROM claire_user;
    END IF;
END $$;

DROP VIEW IF EXISTS v_paper_daily_summary;
DROP VIEW IF EXISTS v_paper_active_positions;
DROP VIEW IF EXISTS v_paper_recent_orders;

DROP FUNCTION IF EXISTS get_paper_fill_rate(VARCHAR, INTEGER);
DROP FUNCTION IF EXISTS get_paper_total_pnl();

-- Indexes go with their tables; dropped by name first so the list is complete and checkable.
DROP INDEX IF EXISTS idx_paper_stats_date;
DROP INDEX IF EXISTS idx_paper_pnl_type_time;
DROP INDEX IF EXISTS idx_paper_pnl_time;
DROP INDEX IF EXISTS idx_paper_positions_open;
DROP INDEX IF EXISTS idx_paper_positions_updated;
DROP INDEX IF EXISTS idx_paper_positions_pnl;
DROP INDEX IF EXISTS idx_paper_fills_filled_at;
DROP INDEX IF EXISTS idx_paper_fills_symbol;
DROP INDEX IF EXISTS idx_paper_fills_order_id;
DROP INDEX IF EXISTS idx_paper_orders_symbol_created;
DROP INDEX IF EXISTS idx_paper_orders_symbol_status;
DROP INDEX IF EXISTS idx_paper_orders_client_id;
DROP INDEX IF EXISTS idx_paper_orders_status;
DROP INDEX IF EXISTS idx_paper_orders_filled_at;
DROP INDEX IF EXISTS idx_paper_orders_created_at;
DROP INDEX IF EXISTS idx_paper_orders_symbol;

-- Children before parents (paper_fills references paper_orders).
DROP TABLE IF EXISTS paper_trading_stats;
DROP TABLE IF EXISTS paper_pnl_snapshots;
DROP TABLE IF EXISTS paper_positions;
DROP TABLE IF EXISTS paper_fills;
DROP TABLE IF EXISTS paper_orders;

-- The SERIAL sequences are owned by their columns and went with the tables; listed for clarity.
DROP SEQUENCE IF EXISTS paper_trading_stats_stat_id_seq;
DROP SEQUENCE IF EXISTS paper_pnl_snapshots_snapshot_id_seq;

COMMIT;
