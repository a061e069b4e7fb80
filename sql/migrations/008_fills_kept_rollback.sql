-- Rollback of migration 008: claire_user may delete fills again, as 003 granted.
--
--     psql -v ON_ERROR_STOP=1 -f sql/migrations/008_fills_kept_rollback.sql "$DATABASE_URL"
-- Re-runnable: a second run changes nothing. The role `claire_user` is kept (see 001's rollback).

BEGIN;

DROP TRIGGER IF EXISTS paper_fills_kept ON paper_fills;
DROP FUNCTION IF EXISTS paper_fills_refuse_runtime_delete();

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'claire_user')
       AND to_regclass('paper_fills') IS NOT NULL THEN
        GRANT DELETE ON paper_fills TO claire_user;
    END IF;
END $$;

COMMIT;
