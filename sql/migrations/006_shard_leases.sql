-- Migration 006: shard leases and worker membership for sharded running (PAPER_SHARDS > 0).
--
--     psql -v ON_ERROR_STOP=1 -f sql/migrations/006_shard_leases.sql "$DATABASE_URL"
-- Re-runnable: a second run changes nothing. (Numbered 006: 005 is being written in parallel;
-- the runner applies versions in order and needs no contiguous numbers.)
--
--   paper_shard_leases   one row per (group, shard): who works on the shard, until when. The
--                        epoch grows at every acquisition and is the fencing token: a batch
--                        transaction locks the row FOR SHARE and commits only while owner, epoch
--                        and expiry still match (consumer/leases.py, docs/scaling.md).
--   paper_shard_members  the live worker processes of a group, for the fair share N / W.

BEGIN;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'claire_user') THEN
        CREATE ROLE claire_user NOLOGIN;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN
        NULL;
END $$;

CREATE TABLE IF NOT EXISTS paper_shard_leases (
    group_name   VARCHAR(200) NOT NULL,
    shard        INTEGER      NOT NULL CONSTRAINT paper_shard_leases_shard_check CHECK (shard >= 0),
    owner        VARCHAR(200),
    epoch        BIGINT       NOT NULL DEFAULT 0,
    acquired_at  TIMESTAMPTZ,
    heartbeat_at TIMESTAMPTZ,
    expires_at   TIMESTAMPTZ  NOT NULL DEFAULT '-infinity',
    PRIMARY KEY (group_name, shard)
);

COMMENT ON TABLE paper_shard_leases IS
    'Which worker owns which stream shard until when; epoch is the fencing token';

CREATE TABLE IF NOT EXISTS paper_shard_members (
    group_name   VARCHAR(200) NOT NULL,
    member       VARCHAR(200) NOT NULL,
    started_at   TIMESTAMPTZ  NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ  NOT NULL,
    expires_at   TIMESTAMPTZ  NOT NULL,
    PRIMARY KEY (group_name, member)
);

COMMENT ON TABLE paper_shard_members IS 'Live sharded worker processes of a consumer group';

GRANT SELECT, INSERT, UPDATE ON paper_shard_leases TO claire_user;
GRANT SELECT, INSERT, UPDATE, DELETE ON paper_shard_members TO claire_user;

COMMIT;
