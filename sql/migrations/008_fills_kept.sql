-- Migration 008: the runtime role can no longer delete fills (issue 22).
--
--     psql -v ON_ERROR_STOP=1 -f sql/migrations/008_fills_kept.sql "$DATABASE_URL"
-- Re-runnable: a second run changes nothing.
--
-- paper_fills is the ledger every position, P&L row, statistic and snapshot is derived from.
-- 003 granted DELETE on it "for prune", but prune never deletes fills (it keeps every order that
-- has one), and DELETE also let claire_user take an ACCESS EXCLUSIVE lock on the table. Audit of
-- every grant against the statements the worker, replay and prune run (sql/schema/
-- paper_trading_erd.md, "Roles and grants"): this DELETE was the one nothing uses.
--
-- Revoking it is not enough: paper_fills.order_id REFERENCES paper_orders ON DELETE CASCADE (the
-- original design, kept), and a cascade runs with the table owner's rights, so a role that may
-- delete an order (the worker merges bot request rows, prune removes orders without fills) could
-- still delete that order's fills. The trigger below refuses a deleted fill, cascaded or not,
-- whenever the session belongs to claire_user; the owner (or a superuser) still can, and
-- TRUNCATE (replay --reset, run as the owner) fires no row trigger.
-- Re-running 003 by hand grants the DELETE again: run this file after it.

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

REVOKE DELETE ON paper_fills FROM claire_user;

CREATE OR REPLACE FUNCTION paper_fills_refuse_runtime_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- session_user, not current_user: a cascade runs as the table owner.
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = session_user AND rolsuper)
       AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'claire_user') THEN
        IF pg_has_role(session_user, 'claire_user', 'MEMBER') THEN
            RAISE EXCEPTION 'fill % of order % cannot be deleted by the runtime role claire_user',
                OLD.fill_id, OLD.order_id
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'paper_fills is the ledger; only the schema owner deletes from it';
        END IF;
    END IF;
    RETURN OLD;
END $$;

REVOKE ALL ON FUNCTION paper_fills_refuse_runtime_delete() FROM PUBLIC;

DROP TRIGGER IF EXISTS paper_fills_kept ON paper_fills;
CREATE TRIGGER paper_fills_kept BEFORE DELETE ON paper_fills
    FOR EACH ROW EXECUTE FUNCTION paper_fills_refuse_runtime_delete();

COMMIT;
