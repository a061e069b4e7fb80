-- Rollback of migration 001: the migration ledger and what 001 granted.
--
-- Apply after the rollbacks of 003 and 002:
--     psql -v ON_ERROR_STOP=1 -f sql/migrations/001_initial_schema_rollback.sql "$DATABASE_URL"
-- Re-runnable: a second run changes nothing.
--
-- The role `claire_user` is NOT dropped: roles are cluster-wide, so other databases of the same
-- cluster (or the bot itself) may use it. This rollback only revokes what 001 granted.

BEGIN;

-- REVOKE has no IF EXISTS: guard on the table and the role (either may already be gone).
DO $$
BEGIN
    IF to_regclass('paper_schema_migrations') IS NOT NULL
        AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'claire_user') THEN
        REVOKE SELECT ON paper_schema_migrations FROM claire_user;
    END IF;
END $$;

DROP TABLE IF EXISTS paper_schema_migrations;

COMMIT;
