"""P&L snapshots: per-symbol event clocks, snapshot parts and the snapshot rows.

A batch is cut where a symbol's events cross an HOURLY/DAILY boundary (``snapshots.py``, pure);
before a crossing event the symbol's state is kept as a *part* (its position as the fold holds
it, its round-trip and fill totals as read before the batch plus the batch's own so far:
``write_parts``), and after the batch's writes
the rows it may have changed are recomputed from the parts and the current state, never added
up from earlier rows (lessons.md #7). The lock order and why concurrent batches end right:
``plan_snapshots`` and docs/scaling.md "P&L snapshots".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg

from consumer import accounting, snapshots, step_terms
from consumer.db.rows import array_params
from consumer.errors import (
    SchemaNotReadyError,
)
from consumer.fold import BatchResult
from consumer.records import ParsedEntry

# --- Per-symbol snapshot clocks (migration 007, consumer/snapshots.py, docs/scaling.md) ------
# Lock order, every transaction: the batch's symbol clocks (by symbol), the global clock row,
# then snapshot rows (by time, type). The global clock row is the creation lock: every batch
# holds it FOR SHARE, a batch that creates snapshot rows (and the idle tick, and prune) FOR UPDATE.
LOCK_SYMBOL_CLOCKS = """
SELECT symbol, event_time FROM paper_symbol_clocks WHERE symbol = ANY(%(symbols)s::varchar[])
ORDER BY symbol FOR UPDATE
"""


_SELECT_CLOCK = """
SELECT nullif(event_time, '-infinity') AS event_time, parts_since
FROM paper_pnl_clock WHERE clock_id = 1
"""


SELECT_CLOCK_FOR_SHARE = _SELECT_CLOCK + "FOR SHARE"


SELECT_CLOCK_FOR_UPDATE = _SELECT_CLOCK + "FOR UPDATE"


# The lock above needs the row: '-infinity' is "no event yet" (idle ticks wait for an event).
ENSURE_CLOCK_ROW = """
INSERT INTO paper_pnl_clock (clock_id, event_time, updated_at) VALUES (1, '-infinity', now())
ON CONFLICT (clock_id) DO NOTHING
"""


# The newest event time of any symbol, or where the idle tick left the clock, whichever is later.
SELECT_EVENT_CLOCK = """
SELECT nullif(greatest((SELECT event_time FROM paper_pnl_clock WHERE clock_id = 1),
                       (SELECT max(event_time) FROM paper_symbol_clocks)),
              '-infinity') AS event_time
"""


SET_CLOCK = """
INSERT INTO paper_pnl_clock (clock_id, event_time, updated_at) VALUES (1, %(time)s, now())
ON CONFLICT (clock_id) DO UPDATE SET event_time = EXCLUDED.event_time, updated_at = now()
"""


SET_SYMBOL_CLOCKS = """
INSERT INTO paper_symbol_clocks AS c (symbol, event_time)
SELECT * FROM unnest(%(symbol)s::varchar[], %(time)s::timestamptz[])
ON CONFLICT (symbol) DO UPDATE SET event_time = greatest(c.event_time, EXCLUDED.event_time)
"""


# One symbol's snapshot state as it stands (the terms of INSERT_SNAPSHOT, per symbol): what a
# part holds (``step_terms.part_values`` computes it from the fold and SELECT_PART_BASES).
_SYMBOL_STATE = """
SELECT s.symbol, p.symbol IS NOT NULL AS has_position,
       coalesce(p.realized_pnl_usdt, 0) AS realized,
       coalesce(p.unrealized_pnl_usdt, 0) AS unrealized,
       coalesce(t.trades, 0) AS trades, coalesce(t.winning, 0) AS winning,
       coalesce(t.losing, 0) AS losing,
       coalesce(v.volume, 0) AS volume, coalesce(v.fees, 0) AS fees
FROM {symbols} s
LEFT JOIN paper_positions p ON p.symbol = s.symbol
LEFT JOIN (SELECT symbol, count(*) AS trades,
                  count(*) FILTER (WHERE realized_pnl_usdt > 0) AS winning,
                  count(*) FILTER (WHERE realized_pnl_usdt < 0) AS losing
           FROM paper_round_trips GROUP BY symbol) t ON t.symbol = s.symbol
LEFT JOIN (SELECT symbol, sum(quantity * price) AS volume, coalesce(sum(fees_usdt), 0) AS fees
           FROM paper_fills GROUP BY symbol) v ON v.symbol = s.symbol
"""


# The totals of the symbols a batch writes parts of, as they stand before the batch (the part
# adds the batch's own fills and round trips before it, ``FoldStep.symbol_totals``): the terms of
# _SYMBOL_STATE that the fold cannot know, per symbol by its indexes (a LATERAL aggregate each).
SELECT_PART_BASES = """
SELECT s.symbol, t.trades, t.winning, t.losing, coalesce(v.volume, 0) AS volume,
       coalesce(v.fees, 0) AS fees
FROM unnest(%(symbols)s::varchar[]) AS s(symbol),
     LATERAL (SELECT count(*) AS trades,
                     count(*) FILTER (WHERE r.realized_pnl_usdt > 0) AS winning,
                     count(*) FILTER (WHERE r.realized_pnl_usdt < 0) AS losing
              FROM paper_round_trips r WHERE r.symbol = s.symbol) AS t,
     LATERAL (SELECT sum(f.quantity * f.price) AS volume, coalesce(sum(f.fees_usdt), 0) AS fees
              FROM paper_fills f WHERE f.symbol = s.symbol) AS v
"""


# Before a crossing event of each symbol: its state, valid for boundaries in (after, until]
# (the values ``write_parts`` computed; the first part of a range stays, as in a redelivery).
INSERT_SNAPSHOT_PARTS = """
INSERT INTO paper_pnl_snapshot_parts (symbol, after_time, until_time, has_position, realized,
                                      unrealized, trades, winning, losing, volume, fees)
SELECT * FROM unnest(
    %(symbol)s::varchar[], %(after)s::timestamptz[], %(until)s::timestamptz[],
    %(has_position)s::boolean[], %(realized)s::numeric[], %(unrealized)s::numeric[],
    %(trades)s::int[], %(winning)s::int[], %(losing)s::int[], %(volume)s::numeric[],
    %(fees)s::numeric[])
ON CONFLICT (symbol, until_time) DO NOTHING
"""


# New HOURLY/DAILY rows; REFRESH_SNAPSHOTS computes their values in the same transaction.
CREATE_SNAPSHOT_ROWS = """
INSERT INTO paper_pnl_snapshots (snapshot_time, snapshot_type, total_pnl_usdt,
                                 realized_pnl_usdt, unrealized_pnl_usdt, metadata)
SELECT b.t, b.k, 0, 0, 0, jsonb_build_object('source', %(source)s::text)
FROM unnest(%(time)s::timestamptz[], %(type)s::varchar[]) AS b(t, k)
WHERE b.t > coalesce(%(parts_since)s::timestamptz, '-infinity')
ORDER BY b.t, b.k
ON CONFLICT (snapshot_time, snapshot_type) DO NOTHING
RETURNING snapshot_id
"""


# The rows a batch may have changed, locked in (time, type) order BEFORE REFRESH_SNAPSHOTS: a
# statement that starts after the lock is granted sees every batch that committed meanwhile.
LOCK_SNAPSHOT_ROWS = """
SELECT snapshot_id FROM paper_pnl_snapshots
WHERE snapshot_type IN ('HOURLY', 'DAILY')
  AND (snapshot_time > %(after)s::timestamptz OR snapshot_id = ANY(%(created)s::int[]))
  AND snapshot_time > coalesce(%(parts_since)s::timestamptz, '-infinity')
ORDER BY snapshot_time, snapshot_type
FOR UPDATE
"""


# Recompute rows from the symbols' states (lessons.md #7: never added up from earlier rows):
# per symbol the part whose range holds B, else its current state if its clock < B, else nothing.
REFRESH_SNAPSHOTS = (
    """
WITH target AS (SELECT snapshot_id, snapshot_time AS b FROM paper_pnl_snapshots
                WHERE snapshot_id = ANY(%(ids)s::int[])),
cur AS ("""
    + _SYMBOL_STATE.format(symbols="paper_symbol_clocks")
    + """),
part AS (
    SELECT t.snapshot_id, c.symbol,
           CASE WHEN p.symbol IS NULL THEN cur.has_position ELSE p.has_position END AS has_position,
           CASE WHEN p.symbol IS NULL THEN cur.realized ELSE p.realized END AS realized,
           CASE WHEN p.symbol IS NULL THEN cur.unrealized ELSE p.unrealized END AS unrealized,
           CASE WHEN p.symbol IS NULL THEN cur.trades ELSE p.trades END AS trades,
           CASE WHEN p.symbol IS NULL THEN cur.winning ELSE p.winning END AS winning,
           CASE WHEN p.symbol IS NULL THEN cur.losing ELSE p.losing END AS losing,
           CASE WHEN p.symbol IS NULL THEN cur.volume ELSE p.volume END AS volume,
           CASE WHEN p.symbol IS NULL THEN cur.fees ELSE p.fees END AS fees
    FROM target t
    CROSS JOIN paper_symbol_clocks c
    JOIN cur ON cur.symbol = c.symbol
    LEFT JOIN paper_pnl_snapshot_parts p
           ON p.symbol = c.symbol AND p.after_time < t.b AND t.b <= p.until_time
    WHERE p.symbol IS NOT NULL OR c.event_time < t.b),
total AS (
    SELECT t.snapshot_id,
           coalesce(sum(p.realized) FILTER (WHERE p.has_position), 0) AS realized,
           coalesce(sum(p.unrealized) FILTER (WHERE p.has_position), 0) AS unrealized,
           coalesce(sum(p.trades), 0) AS trades, coalesce(sum(p.winning), 0) AS winning,
           coalesce(sum(p.losing), 0) AS losing, coalesce(sum(p.volume), 0) AS volume,
           coalesce(sum(p.fees), 0) AS fees,
           coalesce(jsonb_object_agg(p.symbol, jsonb_build_object(
                        'pnl', p.realized + p.unrealized,
                        'realized', p.realized,
                        'unrealized', p.unrealized,
                        'trades', p.trades,
                        'volume', p.volume) ORDER BY p.symbol) FILTER (WHERE p.has_position),
                    '{}'::jsonb) AS body
    FROM target t LEFT JOIN part p USING (snapshot_id)
    GROUP BY t.snapshot_id)
UPDATE paper_pnl_snapshots s SET
    total_pnl_usdt = total.realized + total.unrealized,
    realized_pnl_usdt = total.realized,
    unrealized_pnl_usdt = total.unrealized,
    balance_usdt = %(start_balance)s::numeric + total.realized,
    equity_usdt = %(start_balance)s::numeric + total.realized + total.unrealized,
    total_trades = total.trades, winning_trades = total.winning, losing_trades = total.losing,
    total_volume_usdt = total.volume, total_fees_usdt = total.fees, symbol_pnl = total.body
FROM total
WHERE s.snapshot_id = total.snapshot_id
"""
)


# A snapshot is derived from the positions, the round trips and the fills as they stand — never
# added up from earlier snapshots (lessons.md #7). Idempotent through UNIQUE(time, type).
INSERT_SNAPSHOT = """
WITH pos AS (
    SELECT coalesce(sum(realized_pnl_usdt), 0) AS realized,
           coalesce(sum(unrealized_pnl_usdt), 0) AS unrealized
    FROM paper_positions),
trips AS (
    SELECT count(*) AS total,
           count(*) FILTER (WHERE realized_pnl_usdt > 0) AS winning,
           count(*) FILTER (WHERE realized_pnl_usdt < 0) AS losing
    FROM paper_round_trips),
volume AS (
    SELECT coalesce(sum(quantity * price), 0) AS volume, coalesce(sum(fees_usdt), 0) AS fees
    FROM paper_fills),
per_symbol AS (
    SELECT p.symbol, jsonb_build_object(
               'pnl', p.realized_pnl_usdt + p.unrealized_pnl_usdt,
               'realized', p.realized_pnl_usdt,
               'unrealized', p.unrealized_pnl_usdt,
               'trades', coalesce(t.trades, 0),
               'volume', coalesce(v.volume, 0)) AS body
    FROM paper_positions p
    LEFT JOIN (SELECT symbol, count(*) AS trades FROM paper_round_trips GROUP BY symbol) t
           USING (symbol)
    LEFT JOIN (SELECT symbol, sum(quantity * price) AS volume FROM paper_fills GROUP BY symbol) v
           USING (symbol))
INSERT INTO paper_pnl_snapshots (
    snapshot_time, snapshot_type, total_pnl_usdt, realized_pnl_usdt, unrealized_pnl_usdt,
    balance_usdt, equity_usdt, total_trades, winning_trades, losing_trades, total_volume_usdt,
    total_fees_usdt, symbol_pnl, metadata)
SELECT %(time)s, %(type)s, pos.realized + pos.unrealized, pos.realized, pos.unrealized,
       %(start_balance)s::numeric + pos.realized,
       %(start_balance)s::numeric + pos.realized + pos.unrealized,
       trips.total, trips.winning, trips.losing, volume.volume, volume.fees,
       coalesce((SELECT jsonb_object_agg(symbol, body ORDER BY symbol) FROM per_symbol),
                '{}'::jsonb),
       jsonb_build_object('source', %(source)s::text)
FROM pos, trips, volume
ON CONFLICT (snapshot_time, snapshot_type) DO NOTHING
RETURNING snapshot_id
"""


@dataclass
class SnapshotPlan:
    """The batch's cut, and its lock of the global clock row: sent, its result read when
    first needed (pipeline mode: it comes back with the batch's next read)."""

    plan: snapshots.SymbolPlan[ParsedEntry]
    clock: psycopg.Cursor[dict[str, Any]]
    _row: dict[str, Any] | None = None

    @property
    def parts_since(self) -> datetime | None:
        if self._row is None:
            self._row = self.clock.fetchone()
            if self._row is None:
                raise SchemaNotReadyError("paper_pnl_clock: the clock row could not be created")
        since: datetime | None = self._row["parts_since"]
        return since


def plan_snapshots(
    conn: psycopg.Connection[dict[str, Any]], items: Sequence[ParsedEntry]
) -> SnapshotPlan:
    """Lock the batch's symbol clocks, cut the batch (``snapshots.plan_by_symbol``), then lock
    the global clock row: FOR UPDATE if the batch creates snapshot rows, else FOR SHARE.

    Why the final values are right whatever the order of concurrent batches (separate
    transactions, READ COMMITTED; docs/scaling.md "P&L snapshots"): a row B changes only when
    the state of a symbol s with clock_s < B changes (a crossing event first writes the part of
    s, the state before it, so crossing does not change B). (1) Two batches refresh the same
    row: each locks its rows FOR UPDATE after its own writes and before the statement that
    computes them; the second to get the lock computes after the first committed, so it sees
    both. (2) A batch creates row B while another changes some s with clock_s < B: creation
    holds the global row FOR UPDATE, every batch holds it FOR SHARE from before its writes to
    its commit, so one of them commits before the other starts writing: either the creator
    computes B seeing the change, or the changer finds B (committed) among the rows to refresh.
    """
    symbols = sorted({i.event.symbol for i in items if i.event.symbol is not None})
    clocks = {
        r["symbol"]: r["event_time"]
        for r in conn.execute(LOCK_SYMBOL_CLOCKS, {"symbols": symbols}).fetchall()
    }
    plan = snapshots.plan_by_symbol([(i, i.event.symbol, i.event.timestamp) for i in items], clocks)
    lock = SELECT_CLOCK_FOR_UPDATE if plan.boundaries else SELECT_CLOCK_FOR_SHARE
    # The row is created if missing (a no-op, lock-free, once it exists), so the lock below
    # always finds it and is taken before any write of the batch without waiting for it here.
    conn.execute(ENSURE_CLOCK_ROW)
    return SnapshotPlan(plan, conn.execute(lock))


def finish_snapshots(
    conn: psycopg.Connection[dict[str, Any]],
    planned: SnapshotPlan,
    result: BatchResult,
    start_balance: Decimal | None,
) -> None:
    """After the batch's writes: advance the symbol clocks, create the crossed rows, and
    recompute every row the batch may have changed (B > ``changed_after``, and the new ones)."""
    plan = planned.plan
    if plan.clocks:
        conn.execute(
            SET_SYMBOL_CLOCKS, {"symbol": list(plan.clocks), "time": list(plan.clocks.values())}
        )
    created: list[int] = []
    if plan.boundaries:
        created = create_snapshot_rows(conn, plan.boundaries, planned.parts_since, "event_time")
        result.snapshots += len(created)
    if plan.changed_after is None and not created:
        return
    locked = conn.execute(
        LOCK_SNAPSHOT_ROWS,
        {
            "after": plan.changed_after or datetime.max.replace(tzinfo=UTC),
            "created": created,
            "parts_since": planned.parts_since,
        },
    ).fetchall()
    refresh_snapshots(conn, [r["snapshot_id"] for r in locked], start_balance)


def create_snapshot_rows(
    conn: psycopg.Connection[dict[str, Any]],
    boundaries: Sequence[snapshots.Boundary],
    parts_since: datetime | None,
    source: str,
) -> list[int]:
    """Insert the rows not there yet (values to be computed by ``refresh_snapshots``)."""
    cursor = conn.execute(
        CREATE_SNAPSHOT_ROWS,
        {
            "time": [b[0] for b in boundaries],
            "type": [b[1] for b in boundaries],
            "parts_since": parts_since,
            "source": source,
        },
    )
    return [r["snapshot_id"] for r in cursor.fetchall()]


def refresh_snapshots(
    conn: psycopg.Connection[dict[str, Any]], ids: list[int], start_balance: Decimal | None
) -> None:
    if ids:
        conn.execute(REFRESH_SNAPSHOTS, {"ids": ids, "start_balance": start_balance})


def take_snapshot(
    conn: psycopg.Connection[dict[str, Any]],
    moment: datetime,
    kind: snapshots.SnapshotType,
    start_balance: Decimal | None,
    source: str,
) -> int:
    """Insert one snapshot of the state as it stands; 1 if written, 0 if it existed."""
    cursor = conn.execute(
        INSERT_SNAPSHOT,
        {"time": moment, "type": kind, "start_balance": start_balance, "source": source},
    )
    return len(cursor.fetchall())


def part_base_from_row(row: dict[str, Any]) -> step_terms.SymbolTotals:
    return step_terms.SymbolTotals(
        row["trades"], row["winning"], row["losing"], row["volume"], row["fees"]
    )


def write_parts(
    conn: psycopg.Connection[dict[str, Any]],
    parts: Sequence[snapshots.Part],
    positions: dict[str, accounting.Position],
    totals: dict[str, step_terms.SymbolTotals],
) -> None:
    """Send the parts of symbols about to cross: each symbol's position as the fold holds it
    (written by the batch's earlier segments) and its totals (before the batch, plus the
    batch's steps so far)."""
    params: dict[str, list[Any]] = {
        name: []
        for name in (
            "symbol", "after", "until", "has_position", "realized", "unrealized", "trades",
            "winning", "losing", "volume", "fees",
        )
    }  # fmt: skip
    for part in parts:
        values = step_terms.part_values(positions.get(part.symbol), totals.get(part.symbol))
        params["symbol"].append(part.symbol)
        params["after"].append(part.after)
        params["until"].append(part.until)
        params["has_position"].append(values.has_position)
        params["realized"].append(values.realized)
        params["unrealized"].append(values.unrealized)
        params["trades"].append(values.trades)
        params["winning"].append(values.winning)
        params["losing"].append(values.losing)
        params["volume"].append(values.volume)
        params["fees"].append(values.fees)
    conn.execute(INSERT_SNAPSHOT_PARTS, array_params(params))
