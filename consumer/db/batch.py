"""The live batch writer: one batch of validated events into rows, in ONE transaction.

``PostgresStore.write_batch`` (pipeline mode: statements whose results are not read are sent
without waiting):

1. lock the batch's symbol clocks and cut it at snapshot boundaries (``pnl_snapshots``);
2. lock and read, in one round trip, everything the fold can touch: its orders (by order id
   and by client id), which of its fills are stored already, the stored fills of its orders
   (filled quantity, fill times), the positions of its symbols, and the round-trip and fill
   totals of the symbols it writes snapshot parts of;
3. per segment, run the pure fold (``consumer/fold.py``) and send what it decided, one
   statement per table: re-keyed and merged bot request rows, the orders that changed (each
   once, in its final state), the new fills (``ON CONFLICT DO NOTHING RETURNING``: the
   database stays the record of which fills were applied, and a fill the fold took for new
   but the insert skipped rolls the batch back to be folded again, ``StaleFoldError``), the
   positions that changed, each new fill's realized P&L and the round trips it closed; before
   a segment, the parts of the symbols about to cross, from the fold's positions and the
   totals read in step 2 plus the batch's own so far;
4. recompute the snapshot rows the batch may have changed, and update ``paper_trading_stats``
   incrementally from the statistics terms the fold steps computed (``stats``);
5. advance ``paper_consumer_offsets`` (and, when archiving, append raw entries to the ledger).

The caller acknowledges the entries in Redis only after this commits. With a ``Fence`` the
transaction first locks the shard's lease row (``leases``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg

from consumer import daily_sums, snapshots, step_terms
from consumer.db.connection import Pooled
from consumer.db.leases import Fence, check_fence
from consumer.db.pnl_snapshots import (
    SELECT_CLOCK_FOR_UPDATE,
    SELECT_EVENT_CLOCK,
    SELECT_PART_BASES,
    SET_CLOCK,
    create_snapshot_rows,
    finish_snapshots,
    part_base_from_row,
    plan_snapshots,
    refresh_snapshots,
    take_snapshot,
    write_parts,
)
from consumer.db.rows import (
    array_params,
    dumps,
    fill_params,
    fill_version_from_row,
    order_from_row,
    order_params,
    position_from_row,
    position_params,
    trip_params,
)
from consumer.db.stats import write_stats
from consumer.dialect import (
    OrderRequestEvent,
    OrderResultEvent,
)
from consumer.errors import DatabaseUnavailableError
from consumer.events import FillEvent, MarkEvent, OrderEvent
from consumer.fold import BatchResult, Fold, FoldStep
from consumer.records import EntryKey, ParsedEntry

SELECT_ORDERS_FOR_UPDATE = """
SELECT order_id, client_id, symbol, side, order_type, quantity, price, filled_quantity,
       filled_price, status, slippage_pct, fees_usdt, fee_type, created_at, submitted_at,
       filled_at, rejection_reason, error_message, metadata::text AS metadata
FROM paper_orders
WHERE order_id = ANY(%(ids)s::varchar[])
ORDER BY order_id
FOR UPDATE
"""


# The same, also finding rows by client id: the bot's request and result meet through it
# (bot-dialect.md). One statement, so the rows are locked in one order (order_id).
SELECT_ORDERS_AND_CLIENTS_FOR_UPDATE = """
SELECT order_id, client_id, symbol, side, order_type, quantity, price, filled_quantity,
       filled_price, status, slippage_pct, fees_usdt, fee_type, created_at, submitted_at,
       filled_at, rejection_reason, error_message, metadata::text AS metadata
FROM paper_orders
WHERE order_id = ANY(%(ids)s::varchar[]) OR client_id = ANY(%(client_ids)s::varchar[])
ORDER BY order_id
FOR UPDATE
"""


# A bot request row (keyed by its client id, no fills yet) takes its result's order id.
REKEY_ORDERS = """
UPDATE paper_orders AS o SET order_id = r.new_id, updated_at = now()
FROM unnest(%(old_ids)s::varchar[], %(new_ids)s::varchar[]) AS r(old_id, new_id)
WHERE o.order_id = r.old_id
"""


# A bot request row merged into its result's existing row (it has no fills to cascade).
DELETE_MERGED_REQUESTS = """
DELETE FROM paper_orders WHERE order_id = ANY(%(ids)s::varchar[]) AND filled_quantity = 0
"""


UPSERT_ORDERS = """
INSERT INTO paper_orders (
    order_id, client_id, symbol, side, order_type, quantity, price, filled_quantity,
    filled_price, status, slippage_pct, fees_usdt, fee_type, created_at, submitted_at,
    filled_at, rejection_reason, error_message, metadata, updated_at)
SELECT u.order_id, u.client_id, u.symbol, u.side, u.order_type, u.quantity, u.price,
       u.filled_quantity, u.filled_price, u.status, u.slippage_pct, u.fees_usdt, u.fee_type,
       u.created_at, u.submitted_at, u.filled_at, u.rejection_reason, u.error_message,
       u.metadata::jsonb, now()
FROM unnest(
    %(order_id)s::varchar[], %(client_id)s::varchar[], %(symbol)s::varchar[],
    %(side)s::varchar[], %(order_type)s::varchar[], %(quantity)s::numeric[],
    %(price)s::numeric[], %(filled_quantity)s::numeric[], %(filled_price)s::numeric[],
    %(status)s::varchar[], %(slippage_pct)s::numeric[], %(fees_usdt)s::numeric[],
    %(fee_type)s::varchar[], %(created_at)s::timestamptz[], %(submitted_at)s::timestamptz[],
    %(filled_at)s::timestamptz[], %(rejection_reason)s::text[], %(error_message)s::text[],
    %(metadata)s::text[]
) AS u(order_id, client_id, symbol, side, order_type, quantity, price, filled_quantity,
       filled_price, status, slippage_pct, fees_usdt, fee_type, created_at, submitted_at,
       filled_at, rejection_reason, error_message, metadata)
ON CONFLICT (order_id) DO UPDATE SET
    client_id = EXCLUDED.client_id, symbol = EXCLUDED.symbol, side = EXCLUDED.side,
    order_type = EXCLUDED.order_type, quantity = EXCLUDED.quantity, price = EXCLUDED.price,
    filled_quantity = EXCLUDED.filled_quantity, filled_price = EXCLUDED.filled_price,
    status = EXCLUDED.status, slippage_pct = EXCLUDED.slippage_pct,
    fees_usdt = EXCLUDED.fees_usdt, fee_type = EXCLUDED.fee_type,
    created_at = EXCLUDED.created_at, submitted_at = EXCLUDED.submitted_at,
    filled_at = EXCLUDED.filled_at, rejection_reason = EXCLUDED.rejection_reason,
    error_message = EXCLUDED.error_message, metadata = EXCLUDED.metadata,
    updated_at = now()
"""


INSERT_FILLS = """
INSERT INTO paper_fills (fill_id, order_id, symbol, quantity, price, fees_usdt, fee_type,
                         filled_at, metadata)
SELECT f.fill_id, f.order_id, f.symbol, f.quantity, f.price, f.fees_usdt, f.fee_type,
       f.filled_at, f.metadata::jsonb
FROM unnest(
    %(fill_id)s::varchar[], %(order_id)s::varchar[], %(symbol)s::varchar[],
    %(quantity)s::numeric[], %(price)s::numeric[], %(fees_usdt)s::numeric[],
    %(fee_type)s::varchar[], %(filled_at)s::timestamptz[], %(metadata)s::text[]
) AS f(fill_id, order_id, symbol, quantity, price, fees_usdt, fee_type, filled_at, metadata)
ON CONFLICT (fill_id) DO NOTHING
RETURNING fill_id
"""


# Which of a batch's fills are stored already (each is applied once, ever), with the values
# that tell a redelivery from a conflicting fill reusing the id.
SELECT_STORED_FILLS = """
SELECT fill_id, order_id, symbol, metadata->>'side' AS side, quantity, price, fees_usdt,
       fee_type, filled_at
FROM paper_fills WHERE fill_id = ANY(%(ids)s::varchar[])
"""

# The stored fills of every order the batch can touch (by order id, and the rows carrying its
# client ids): the quantity already filled (an over-fill is refused) and the fill times (their
# latency moves when the order's created_at does), by the order_id index (a LATERAL aggregate
# per id, never a scan of all fills).
SELECT_FILLS_BY_ORDER = """
SELECT i.order_id, s.filled, s.times
FROM (SELECT unnest(%(ids)s::varchar[])
      UNION
      SELECT order_id FROM paper_orders WHERE client_id = ANY(%(client_ids)s::varchar[]))
     AS i(order_id),
     LATERAL (SELECT sum(f.quantity) AS filled, array_agg(f.filled_at) AS times
              FROM paper_fills f WHERE f.order_id = i.order_id) AS s
WHERE s.filled IS NOT NULL
"""

SELECT_POSITIONS_FOR_UPDATE = """
SELECT symbol, quantity, avg_entry_price, current_price, realized_pnl_usdt, entry_trades,
       exit_trades, opened_at, closed_at, metadata::text AS metadata
FROM paper_positions
WHERE symbol = ANY(%(symbols)s::varchar[])
   -- a bot result that names no symbol fills on its stored order's symbol
   OR symbol IN (SELECT o.symbol FROM paper_orders o
                 WHERE o.order_id = ANY(%(unnamed_ids)s::varchar[])
                    OR o.client_id = ANY(%(unnamed_clients)s::varchar[]))
ORDER BY symbol
FOR UPDATE
"""


UPSERT_POSITIONS = """
INSERT INTO paper_positions (
    symbol, quantity, avg_entry_price, current_price, unrealized_pnl_usdt, realized_pnl_usdt,
    cost_basis_usdt, market_value_usdt, entry_trades, exit_trades, opened_at, closed_at,
    metadata, updated_at)
SELECT p.symbol, p.quantity, p.avg_entry_price, p.current_price, p.unrealized, p.realized,
       p.cost_basis, p.market_value, p.entry_trades, p.exit_trades, p.opened_at, p.closed_at,
       p.metadata::jsonb, now()
FROM unnest(
    %(symbol)s::varchar[], %(quantity)s::numeric[], %(avg_entry_price)s::numeric[],
    %(current_price)s::numeric[], %(unrealized)s::numeric[], %(realized)s::numeric[],
    %(cost_basis)s::numeric[], %(market_value)s::numeric[], %(entry_trades)s::int[],
    %(exit_trades)s::int[], %(opened_at)s::timestamptz[], %(closed_at)s::timestamptz[],
    %(metadata)s::text[]
) AS p(symbol, quantity, avg_entry_price, current_price, unrealized, realized, cost_basis,
       market_value, entry_trades, exit_trades, opened_at, closed_at, metadata)
ON CONFLICT (symbol) DO UPDATE SET
    quantity = EXCLUDED.quantity, avg_entry_price = EXCLUDED.avg_entry_price,
    current_price = EXCLUDED.current_price, unrealized_pnl_usdt = EXCLUDED.unrealized_pnl_usdt,
    realized_pnl_usdt = EXCLUDED.realized_pnl_usdt, cost_basis_usdt = EXCLUDED.cost_basis_usdt,
    market_value_usdt = EXCLUDED.market_value_usdt, entry_trades = EXCLUDED.entry_trades,
    exit_trades = EXCLUDED.exit_trades, opened_at = EXCLUDED.opened_at,
    closed_at = EXCLUDED.closed_at, metadata = EXCLUDED.metadata, updated_at = now()
"""


INSERT_ROUND_TRIPS = """
INSERT INTO paper_round_trips (closing_fill_id, symbol, direction, opened_at, closed_at, quantity,
                               max_quantity, entry_avg_price, exit_avg_price, realized_pnl_usdt,
                               fees_usdt, fills, close_reason)
SELECT * FROM unnest(
    %(fill_id)s::varchar[], %(symbol)s::varchar[], %(direction)s::varchar[],
    %(opened_at)s::timestamptz[], %(closed_at)s::timestamptz[], %(quantity)s::numeric[],
    %(max_quantity)s::numeric[], %(entry_avg_price)s::numeric[], %(exit_avg_price)s::numeric[],
    %(realized)s::numeric[], %(fees)s::numeric[], %(fills)s::int[], %(reason)s::varchar[])
ON CONFLICT (closing_fill_id) DO NOTHING
"""


INSERT_FILL_PNL = """
INSERT INTO paper_fill_pnl (fill_id, symbol, filled_at, realized_pnl_usdt, position_quantity)
SELECT * FROM unnest(%(fill_id)s::varchar[], %(symbol)s::varchar[],
                     %(filled_at)s::timestamptz[], %(realized)s::numeric[],
                     %(quantity)s::numeric[])
ON CONFLICT (fill_id) DO NOTHING
"""


ADVANCE_OFFSETS = """
WITH batch AS (
    SELECT b.stream_name, b.entry_id, split_part(b.entry_id, '-', 1)::bigint AS ms,
           coalesce(nullif(split_part(b.entry_id, '-', 2), ''), '0')::bigint AS seq
    FROM unnest(%(entry_stream)s::varchar[], %(entry_id)s::varchar[]) AS b(stream_name, entry_id)
), newest AS (
    SELECT DISTINCT ON (stream_name) stream_name, entry_id AS last_entry_id,
           count(*) OVER (PARTITION BY stream_name) AS entries
    FROM batch ORDER BY stream_name, ms DESC, seq DESC
)
INSERT INTO paper_consumer_offsets AS t (stream_name, group_name, last_entry_id,
                                         entries_committed, updated_at)
SELECT o.stream_name, %(group)s, o.last_entry_id, o.entries, now()
FROM newest o
ORDER BY o.stream_name COLLATE "C"
ON CONFLICT (stream_name, group_name) DO UPDATE SET
    last_entry_id = CASE
        WHEN (split_part(EXCLUDED.last_entry_id, '-', 1)::bigint,
              split_part(EXCLUDED.last_entry_id, '-', 2)::bigint)
           > (split_part(t.last_entry_id, '-', 1)::bigint,
              split_part(t.last_entry_id, '-', 2)::bigint)
        THEN EXCLUDED.last_entry_id ELSE t.last_entry_id END,
    -- only the entries past the committed offset: a batch redelivered after a crash between
    -- COMMIT and XACK is applied again (to no effect) but not counted again
    entries_committed = t.entries_committed + (
        SELECT count(*) FROM batch b
        WHERE b.stream_name = t.stream_name
          AND (b.ms, b.seq) > (split_part(t.last_entry_id, '-', 1)::bigint,
                               split_part(t.last_entry_id, '-', 2)::bigint)),
    updated_at = now()
"""


ARCHIVE_ENTRIES = """
INSERT INTO paper_event_ledger (stream_name, entry_id, entry_ms, entry_seq, fields)
SELECT e.stream_name, e.entry_id, split_part(e.entry_id, '-', 1)::bigint,
       split_part(e.entry_id, '-', 2)::bigint, e.fields::jsonb
FROM unnest(%(stream)s::varchar[], %(entry_id)s::varchar[], %(fields)s::text[])
     AS e(stream_name, entry_id, fields)
ON CONFLICT (stream_name, entry_id) DO NOTHING
"""


class PostgresStore(Pooled):
    """Writes batches to PostgreSQL through a small connection pool (opened explicitly)."""

    def __init__(
        self,
        dsn: str,
        *,
        group: str,
        archive: bool = False,
        start_balance: Decimal | None = None,
        connect_timeout_s: float = 5.0,
    ) -> None:
        # Every statement is prepared on its first run (parsed and analysed once per
        # connection) but planned on every run with its actual parameters
        # (plan_cache_mode = force_custom_plan). A generic plan, PostgreSQL's default after
        # five runs, is chosen once, often while the tables are small (a scan of every fill
        # or order against the batch's id list), and its cost then grows with the tables: in
        # bench/latency.py the statistics statement then joining orders and fills went
        # 1.3 → 4.2 ms and SELECT_ORDERS_FOR_UPDATE 0.4 → 1.2 ms within a minute. Preparing
        # without generic plans saves the parsing: four 60-s runs of bench/latency.py
        # alternated with three without: p99 23.9–29.0 ms (mean 27.2) against 28.8–31.5 ms
        # (mean 30.2), write_batch 8.5–9.4 against 9.9 ms. The one exception is the
        # statistics step (GENERIC_PLAN_NEXT), which touches only the per-date tables.
        super().__init__(
            dsn,
            name="paper-consumer",
            max_size=2,
            connect_timeout_s=connect_timeout_s,
            custom_plans=True,
        )
        self._group = group
        self._start_balance = start_balance
        self._archive = archive

    def write_batch(self, items: Sequence[ParsedEntry], fence: Fence | None = None) -> BatchResult:
        """Apply ``items`` (validated, in stream order) in one transaction; see module doc.

        With a ``fence`` the transaction first locks the shard's lease row and raises
        ``LeaseLostError`` (nothing applied) unless ``fence`` still holds it: see ``Fence``."""
        if not items:
            return BatchResult()
        known_fills: list[str] = []
        while True:
            result = BatchResult()
            try:
                self._write_once(items, result, fence, known_fills)
            except StaleFoldError as stale:
                # Rolled back; again, looking those fills up too (at most once per fill id).
                if set(stale.fill_ids) <= set(known_fills):
                    raise DatabaseUnavailableError(
                        f"fills {stale.fill_ids[:3]} stay stored and new at once"
                    ) from stale
                known_fills.extend(stale.fill_ids)
                continue
            return result

    def _write_once(
        self,
        items: Sequence[ParsedEntry],
        result: BatchResult,
        fence: Fence | None,
        known_fills: Sequence[str],
    ) -> None:
        # Pipeline mode: a statement whose result is not read is sent without waiting for
        # the previous one, and the Python work of the next overlaps the server's (about
        # half of the batch's statements, BEGIN and COMMIT too; bench/latency.py write_batch
        # 11.4 -> 9.9 ms per batch). A refusal still raises its own error at the next sync
        # (test_bad_input.py).
        with self._transaction(pipeline=True) as conn:
            if fence is not None:
                check_fence(conn, fence)
            write_rows(
                conn,
                items,
                result,
                group=self._group,
                archive=self._archive,
                start_balance=self._start_balance,
                known_fills=known_fills,
            )

    def tick(self, now: datetime) -> int:
        """Streams idle: take the snapshots whose boundaries the wall clock ``now`` crossed."""
        with self._transaction() as conn:
            # No clock row: no batch has run yet (the first one creates it), nothing to take.
            row = conn.execute(SELECT_CLOCK_FOR_UPDATE).fetchone()
            if row is None:
                return 0
            clock = conn.execute(SELECT_EVENT_CLOCK).fetchone()
            boundaries, rest = snapshots.idle_plan(clock["event_time"] if clock else None, now)
            if not boundaries:
                return 0
            created = create_snapshot_rows(conn, boundaries, row["parts_since"], "wall_clock")
            refresh_snapshots(conn, created, self._start_balance)
            conn.execute(SET_CLOCK, {"time": rest})
        return len(created)

    def snapshot_now(self, now: datetime) -> int:
        """Take a MANUAL snapshot at ``now`` (``paper-consumer snapshot``)."""
        with self._transaction() as conn:
            return take_snapshot(conn, now, "MANUAL", self._start_balance, "manual")


def write_rows(
    conn: psycopg.Connection[dict[str, Any]],
    items: Sequence[ParsedEntry],
    result: BatchResult,
    *,
    group: str,
    archive: bool,
    start_balance: Decimal | None = None,
    known_fills: Sequence[str] = (),
) -> None:
    """Write ``items`` (validated, in stream order) inside the caller's transaction; see the
    module doc. ``known_fills``: fill ids to look up as stored besides the batch's own (those
    a previous attempt derived, see ``StaleFoldError``)."""
    plan = plan_snapshots(conn, items)
    part_symbols = sorted({p.symbol for s in plan.plan.segments for p in s.parts_before})
    fold, totals = _read_state(conn, items, known_fills, part_symbols)
    terms = daily_sums.BatchSums()
    sent: list[tuple[psycopg.Cursor[dict[str, Any]], list[str]]] = []
    for segment in plan.plan.segments:
        if segment.parts_before:
            write_parts(conn, segment.parts_before, fold.positions, totals)
        if segment.items:
            step = fold.apply(segment.items, result)
            sent.extend(_write_step(conn, step, result))
            step.stat_terms(terms)
            if totals:  # a later part of these symbols counts this step
                for symbol, added in step.symbol_totals().items():
                    if symbol in totals:
                        totals[symbol].add(added)
    finish_snapshots(conn, plan, result, start_balance)
    _check_fills_new(sent)
    result.stat_dates = write_stats(conn, terms)
    _advance_offsets(conn, [i.key for i in items], group)
    if archive:
        rejected_keys = {item.key for item, _ in result.rejected}
        accepted = [i for i in items if i.key not in rejected_keys]
        if accepted:
            conn.execute(
                ARCHIVE_ENTRIES,
                {
                    "stream": [i.key.stream for i in accepted],
                    "entry_id": [i.key.entry_id for i in accepted],
                    "fields": [dumps(i.fields) for i in accepted],
                },
            )


class StaleFoldError(Exception):
    """A fill the fold took for new was already stored (one derived from a bot result, whose id
    the batch could not look up before folding). The transaction is rolled back and the batch
    folded again with ``fill_ids`` looked up too."""

    def __init__(self, fill_ids: list[str]) -> None:
        super().__init__(f"{len(fill_ids)} fill(s) already stored")
        self.fill_ids = fill_ids


def _read_state(
    conn: psycopg.Connection[dict[str, Any]],
    items: Sequence[ParsedEntry],
    known_fills: Sequence[str],
    part_symbols: Sequence[str],
) -> tuple[Fold, dict[str, step_terms.SymbolTotals]]:
    """Lock and read everything the batch's fold can touch, in one round trip: its orders (by
    order id, and by client id for the bot's requests and results), which of its fills are
    stored already, the stored fills of its orders (quantity and times), the positions of the
    symbols its fills, results and marks name (and of the symbols it writes snapshot parts
    of), and those symbols' round-trip and fill totals (the base a part adds the batch's own
    to; the batch holds their symbol clocks, so no other batch adds to them until it commits).
    Lock order: orders, then positions (by key), as every writer."""
    order_ids: set[str] = set()
    client_ids: set[str] = set()
    fill_ids: set[str] = set(known_fills)
    symbols: set[str] = set(part_symbols)
    unnamed_ids: set[str] = set()  # results naming no symbol: their orders' symbols are read
    unnamed_clients: set[str] = set()
    for item in items:
        event = item.event
        if isinstance(event, OrderEvent):
            order_ids.add(event.order_id)
            if isinstance(event, OrderRequestEvent | OrderResultEvent):
                if event.client_id:
                    client_ids.add(event.client_id)
                if isinstance(event, OrderResultEvent):
                    if event.symbol is not None:
                        symbols.add(event.symbol)
                    else:
                        unnamed_ids.add(event.order_id)
                        if event.client_id:
                            unnamed_clients.add(event.client_id)
        elif isinstance(event, FillEvent):
            order_ids.add(event.order_id)
            fill_ids.add(event.fill_id)
            symbols.add(event.symbol)
        elif isinstance(event, MarkEvent):
            symbols.add(event.symbol)
    ids = sorted(order_ids)
    clients = sorted(client_ids)
    if client_ids:
        params: dict[str, Any] = {"ids": ids, "client_ids": clients}
        orders = conn.execute(SELECT_ORDERS_AND_CLIENTS_FOR_UPDATE, params)
    else:
        orders = conn.execute(SELECT_ORDERS_FOR_UPDATE, {"ids": ids})
    stored_fills = (
        conn.execute(SELECT_STORED_FILLS, {"ids": sorted(fill_ids)}) if fill_ids else None
    )
    by_order = (
        conn.execute(SELECT_FILLS_BY_ORDER, {"ids": ids, "client_ids": clients})
        if ids or clients
        else None
    )
    positions = (
        conn.execute(
            SELECT_POSITIONS_FOR_UPDATE,
            {
                "symbols": sorted(symbols),
                "unnamed_ids": sorted(unnamed_ids),
                "unnamed_clients": sorted(unnamed_clients),
            },
        )
        if symbols or unnamed_ids
        else None
    )
    bases = (
        conn.execute(SELECT_PART_BASES, {"symbols": list(part_symbols)}) if part_symbols else None
    )
    stored = {row["order_id"]: order_from_row(row) for row in orders.fetchall()}
    versions = {
        row["fill_id"]: fill_version_from_row(row)
        for row in (stored_fills.fetchall() if stored_fills is not None else [])
    }
    fills = by_order.fetchall() if by_order is not None else []
    fold = Fold(
        stored,
        {row["symbol"]: position_from_row(row) for row in positions.fetchall()}
        if positions is not None
        else {},
        set(versions),
        fill_versions={k: v for k, v in versions.items() if v is not None},
        filled={r["order_id"]: r["filled"] for r in fills},
        fill_times={r["order_id"]: list(r["times"]) for r in fills},
    )
    totals = {r["symbol"]: part_base_from_row(r) for r in bases.fetchall()} if bases else {}
    return fold, totals


def _write_step(
    conn: psycopg.Connection[dict[str, Any]], step: FoldStep, result: BatchResult
) -> list[tuple[psycopg.Cursor[dict[str, Any]], list[str]]]:
    """Send the rows one fold step decided, one statement per table (results not waited for:
    pipeline mode). Returns the fills' INSERT cursors with the ids each was sent."""
    # Stored bot request rows linked to their result: re-keyed, or merged into its row.
    rekeyed = {old: new for old, new in step.moved.items() if new is not None}
    merged = sorted(old for old, new in step.moved.items() if new is None)
    if rekeyed:
        olds = sorted(rekeyed)
        conn.execute(REKEY_ORDERS, {"old_ids": olds, "new_ids": [rekeyed[o] for o in olds]})
    if merged:
        conn.execute(DELETE_MERGED_REQUESTS, {"ids": merged})
    if step.orders:
        conn.execute(UPSERT_ORDERS, order_params(step.orders))
        result.orders_written += len(step.orders)
    sent: list[tuple[psycopg.Cursor[dict[str, Any]], list[str]]] = []
    if step.fills:
        fills = [(f, side) for _, f, side in step.fills]
        sent.append((conn.execute(INSERT_FILLS, fill_params(fills)), [f.fill_id for f, _ in fills]))
        result.fills_inserted += len(fills)
    if step.positions:
        conn.execute(UPSERT_POSITIONS, position_params(step.positions))
        result.positions_written += len(step.positions)
    if step.fill_effects:
        effects = step.fill_effects
        conn.execute(
            INSERT_FILL_PNL,
            array_params(
                {
                    "fill_id": [f.fill_id for f, _ in effects],
                    "symbol": [f.symbol for f, _ in effects],
                    "filled_at": [f.timestamp for f, _ in effects],
                    "realized": [o.realized_delta for _, o in effects],
                    "quantity": [o.position.quantity for _, o in effects],
                }
            ),
        )
    if step.trips:
        conn.execute(INSERT_ROUND_TRIPS, trip_params(step.trips))
    return sent


def _check_fills_new(sent: list[tuple[psycopg.Cursor[dict[str, Any]], list[str]]]) -> None:
    """Read the fills' INSERT results: every fill the fold applied must have been inserted now
    (``ON CONFLICT DO NOTHING`` is the database's own record of what was applied; the
    statistics count exactly the fold's new fills, so a skipped one rolls the batch back)."""
    for cursor, fill_ids in sent:
        rows = cursor.fetchall()
        if len(rows) != len(fill_ids):
            inserted = {row["fill_id"] for row in rows}
            raise StaleFoldError([f for f in fill_ids if f not in inserted])


def _advance_offsets(
    conn: psycopg.Connection[dict[str, Any]], keys: Sequence[EntryKey], group: str
) -> None:
    """Each stream's newest entry id and its count, found by the server from the batch's ids
    (two array literals: no id parsed, no list dumped element by element here)."""
    conn.execute(
        ADVANCE_OFFSETS,
        {
            "group": group,
            **array_params(
                {
                    "entry_stream": [key.stream for key in keys],
                    "entry_id": [key.entry_id for key in keys],
                }
            ),
        },
    )
