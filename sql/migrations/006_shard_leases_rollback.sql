-- Rollback of migration 006: shard leases and membership, with their grants.
--
--     psql -v ON_ERROR_STOP=1 -f sql/migrations/006_shard_leases_rollback.sql "$DATABASE_URL"
-- Re-runnable: a second run changes nothing. The role `claire_user` is kept (see 001's rollback).

BEGIN;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'claire_user') THEN
        RETURN;
    END IF;
    IF to_regclass('paper_shard_leases') IS NOT NULL THEN
        REVOKE SELECT, INSERT, UPDATE ON paper_shard_leases FROM claire_user;
    END IF;
    IF to_regclass('paper_shard_members') IS NOT NULL THEN
        REVOKE SELECT, INSERT, UPDATE, DELETE ON paper_shard_members FROM claire_user;
    END IF;
END $$;

DROP TABLE IF EXISTS paper_shard_members;
DROP TABLE IF EXISTS paper_shard_leases;

COMMIT;
