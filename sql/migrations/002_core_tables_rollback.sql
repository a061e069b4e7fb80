-- Rollback of migration 002: the consumer's offsets and event archive, with their grants.
--
-- Apply after the rollback of 003, before the rollback of 001:
--     psql -v ON_ERROR_STOP=1 -f sql/migrations/002_core_tables_rollback.sql "$DATABASE_URL"
-- Re-runnable: a second run changes nothing. The role `claire_user` is kept (see 001's rollback).

BEGIN;

-- REVOKE has no IF EXISTS: guard on each table and on the role.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'claire_user') THEN
        RETURN;
    END IF;
    IF to_regclass('paper_consumer_offsets') IS NOT NULL THEN
        REVOKE SELECT, INSERT, UPDATE ON paper_consumer_offsets FROM claire_user;
    END IF;
    IF to_regclass('paper_event_ledger') IS NOT NULL THEN
        REVOKE SELECT, INSERT ON paper_event_ledger FROM claire_user;
    END IF;
END $$;

DROP INDEX IF EXISTS idx_paper_event_ledger_stream_order;
DROP TABLE IF EXISTS paper_event_ledger;
DROP TABLE IF EXISTS paper_consumer_offsets;

COMMIT;
