-- Migration 002: the consumer's own bookkeeping (stream offsets and the raw event archive).
--
--     psql -v ON_ERROR_STOP=1 -f sql/migrations/002_core_tables.sql "$DATABASE_URL"
-- Re-runnable: a second run changes nothing.

BEGIN;

-- Same guard as in 001, so this file also runs on its own (flaw 3: grants to a missing role).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'claire_user') THEN
        CREATE ROLE claire_user NOLOGIN;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN
        NULL;
END $$;

-- The last stream entry id whose effects are committed, per stream and consumer group. Written in
-- the same transaction as those effects, so after a crash the database (not Redis) says how far
-- the consumer got. VARCHAR(41): the longest Redis entry id is two 20-digit numbers and a '-'.
CREATE TABLE IF NOT EXISTS paper_consumer_offsets (
    stream_name       VARCHAR(200) NOT NULL,
    group_name        VARCHAR(200) NOT NULL,
    last_entry_id     VARCHAR(41)  NOT NULL,
    entries_committed BIGINT       NOT NULL DEFAULT 0 CHECK (entries_committed >= 0),
    updated_at        TIMESTAMPTZ  NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_name, group_name)
);

COMMENT ON TABLE paper_consumer_offsets IS
    'Last stream entry id whose effects are committed, per stream and consumer group';

-- Optional append-only archive of the raw accepted entries: the bot trims its streams to about
-- 10,000 entries, so a replay of a longer history reads from here. entry_ms/entry_seq are the two
-- halves of the entry id, kept as numbers so that ORDER BY gives stream order (the text id does
-- not sort numerically).
CREATE TABLE IF NOT EXISTS paper_event_ledger (
    stream_name VARCHAR(200) NOT NULL,
    entry_id    VARCHAR(41)  NOT NULL,
    entry_ms    BIGINT       NOT NULL,
    entry_seq   BIGINT       NOT NULL,
    fields      JSONB        NOT NULL,
    received_at TIMESTAMPTZ  NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_name, entry_id)
);

CREATE INDEX IF NOT EXISTS idx_paper_event_ledger_stream_order
    ON paper_event_ledger (stream_name, entry_ms, entry_seq);

COMMENT ON TABLE paper_event_ledger IS
    'Append-only archive of raw accepted stream entries, for replay after stream trimming';

-- Offsets are upserted (INSERT ... ON CONFLICT DO UPDATE needs UPDATE); the archive is insert-only.
GRANT SELECT, INSERT, UPDATE ON paper_consumer_offsets TO claire_user;
GRANT SELECT, INSERT ON paper_event_ledger TO claire_user;

COMMIT;
