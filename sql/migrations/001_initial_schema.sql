-- Migration 001: the runtime role and the migration ledger.
--
-- Applied by `paper-consumer migrate` (which strips the BEGIN;/COMMIT; lines below and runs the
-- body in its own transaction together with the ledger row) or by hand, atomically, with
--     psql -v ON_ERROR_STOP=1 -f sql/migrations/001_initial_schema.sql "$DATABASE_URL"
-- Re-runnable: a second run changes nothing.

BEGIN;

-- The runtime role the worker connects as (directly, or through a LOGIN role that is a member).
-- Roles are cluster-wide: create it only when missing and never alter an existing one (their
-- deployment already has `claire_user` as a LOGIN user with a password). NOLOGIN because a role
-- created here has no password; an operator grants LOGIN/membership on purpose.
-- duplicate_object/unique_violation: another database of the same cluster may be migrating at the
-- same moment and win the race between the check and the CREATE.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'claire_user') THEN
        CREATE ROLE claire_user NOLOGIN;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN
        NULL;
END $$;

-- One row per applied migration. `checksum` is the SHA-256 (hex) of the file as applied, so the
-- runner can refuse to continue when an applied file was edited afterwards.
CREATE TABLE IF NOT EXISTS paper_schema_migrations (
    version     INTEGER      PRIMARY KEY,
    name        VARCHAR(200) NOT NULL,
    checksum    CHAR(64)     NOT NULL,
    applied_at  TIMESTAMPTZ  NOT NULL DEFAULT now(),
    duration_ms INTEGER      NOT NULL DEFAULT 0
);

COMMENT ON TABLE paper_schema_migrations IS
    'Applied schema migrations (version, file name, SHA-256 of the file, when, how long)';

-- The worker only reads the ledger (to check the schema version at start); it never migrates.
GRANT SELECT ON paper_schema_migrations TO claire_user;

COMMIT;
