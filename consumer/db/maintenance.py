"""Retention (``paper-consumer prune``): which rows may go, and the DELETEs that remove them.

The rules are in sql/schema/paper_trading_erd.md; ``retention.py`` runs these in short
transactions of at most ``%(limit)s`` rows each. Fills are never pruned.
"""

from __future__ import annotations

# Retention (`paper-consumer prune`; the rules are in sql/schema/paper_trading_erd.md). Each
# DELETE removes at most %(limit)s rows picked by ctid and is run in its own short transaction;
# for orders, SKIP LOCKED leaves rows a worker holds (its batch locks the orders it touches) to a
# later run.
# Old HOURLY snapshots: nothing is derived from snapshots; DAILY and MANUAL ones are kept.
_PRUNABLE_SNAPSHOTS = """
FROM paper_pnl_snapshots
WHERE snapshot_type = 'HOURLY' AND snapshot_time < %(cutoff)s
"""


# Orders that never had a fill and never will: created before the cutoff, in a final status
# without execution. Fills are never pruned: they are the record that keeps a redelivered fill
# from moving a position twice, and snapshots add volume and fees since start from them.
_PRUNABLE_ORDERS = """
FROM paper_orders AS o
WHERE o.created_at < %(cutoff)s
  AND o.status IN ('REJECTED', 'CANCELLED', 'FAILED')
  AND NOT EXISTS (SELECT 1 FROM paper_fills AS f WHERE f.order_id = o.order_id)
"""


# Snapshot parts (007) no row can need any more: a row B is created or recomputed only while
# some symbol's clock is below B, and clocks only grow, so rows at or before the smallest symbol
# clock are final (a symbol first seen later, with older events, no longer changes them). Prune
# makes that explicit: it raises parts_since to the horizon (least of cutoff and smallest clock;
# this also locks the clock row, like a batch that creates rows) and deletes the parts ending
# at or before it. Conservative under concurrent batches: clocks only grow.
_PARTS_HORIZON = """
SELECT least(%(cutoff)s::timestamptz, (SELECT min(event_time) FROM paper_symbol_clocks)) AS h
"""


COUNT_PRUNABLE_PARTS = (
    "SELECT count(*) AS n FROM paper_pnl_snapshot_parts WHERE until_time <= ("
    + _PARTS_HORIZON
    + ")"
)


PRUNE_SNAPSHOT_PARTS = (
    """
WITH horizon AS ("""
    + _PARTS_HORIZON
    + """),
frozen AS (
    UPDATE paper_pnl_clock c SET parts_since = horizon.h FROM horizon
    WHERE c.clock_id = 1 AND (c.parts_since IS NULL OR c.parts_since < horizon.h)
    RETURNING 1)
DELETE FROM paper_pnl_snapshot_parts WHERE ctid IN (
    SELECT p.ctid FROM paper_pnl_snapshot_parts p, horizon
    WHERE p.until_time <= horizon.h LIMIT %(limit)s)
"""
)


COUNT_PRUNABLE_SNAPSHOTS = "SELECT count(*) AS n" + _PRUNABLE_SNAPSHOTS


COUNT_PRUNABLE_ORDERS = "SELECT count(*) AS n" + _PRUNABLE_ORDERS


# Snapshots are only ever inserted, so nothing to skip; and FOR UPDATE would need UPDATE, which
# claire_user does not have on paper_pnl_snapshots.
PRUNE_SNAPSHOTS = (
    "DELETE FROM paper_pnl_snapshots WHERE ctid IN (SELECT ctid"
    + _PRUNABLE_SNAPSHOTS
    + "LIMIT %(limit)s)"
)


PRUNE_ORDERS = (
    "DELETE FROM paper_orders WHERE ctid IN (SELECT o.ctid"
    + _PRUNABLE_ORDERS
    + "LIMIT %(limit)s FOR UPDATE OF o SKIP LOCKED)"
)
