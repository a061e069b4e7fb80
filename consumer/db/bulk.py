"""The bulk replay engine (``replay --engine bulk``): fold the whole history in memory, then
COPY the final rows and derive statistics and snapshots set-based in SQL.

The batches engine (``ReplayTarget.write``) runs the live batch writer chunk by chunk: every
chunk reads its rows back, upserts orders and positions, and recomputes snapshots and
statistics incrementally. Here, inside the same replay transaction (``ReplayTarget``: presence
lock, empty check or reset, one commit):

1. ``write(chunk)`` cuts each chunk at snapshot boundaries (``snapshots.plan_by_symbol``) with
   the symbol clocks kept in memory, computes each part from running per-symbol aggregates
   (``bulk_fold.BulkBook``, exactly what ``_SYMBOL_STATE`` reads from the tables) and folds the
   segments into ONE ``Fold`` over the whole history;
2. bounded memory: after each chunk, the orders it made final (terminal status, not a bare bot
   request row, not a placeholder) are evicted from the fold (``Fold.evict``); their rows, then
   their fills, fill P&L and round trips (held per order until then: ``paper_fills.order_id``
   references ``paper_orders``), and the chunk's parts go to a writer thread
   (``db/copier.py``, a bounded queue) that COPYs them on the replay connection while the main
   thread reads, parses and folds on. Evicted order, client and fill ids go to Bloom filters
   (``id_filter.py``, no false negatives); a chunk naming one waits for the writer to drain,
   confirms it with the live writer's queries (``batch._read_state``'s SELECTs and row
   conversions, same transaction) and loads it back (``Fold.load``). A reloaded order is written
   again at its next eviction or the end with the live upsert (``UPSERT_ORDERS``). In memory:
   open orders and their fills' rows, positions, per-symbol totals and clocks, the crossed
   boundaries and dates (these grow with event time, not with entries);
3. ``finish()`` drains the writer, writes what is still in memory (orders, then their held
   fills), positions, parts and symbol clocks; then creates the clock row and every crossed
   snapshot row (``CREATE_SNAPSHOT_ROWS``, source ``event_time``) and computes them all at once
   (``REFRESH_SNAPSHOTS``: a row's value is derived from the parts and the final state, never
   added up, so one refresh at the end equals the batches engine's repeated ones);
   ``paper_stats_sums`` from ``RECOMPUTE_STATS_SUMS`` (and a row of zeros for a touched date
   left without terms), ``paper_trading_stats`` from ``REAGGREGATE_STATS`` over every touched
   date and ``REFRESH_CUMULATIVE_PNL``; the offsets as ``ADVANCE_OFFSETS`` leaves them.

A bot result names the fill it may derive (``dialect.derived_fill_id`` of its order id and
cumulative quantity) before it is folded, so an evicted fill under that id (another order's:
the live writer's ``StaleFoldError`` case) is looked up and loaded like the others, and the
result derives no fill, as live.

Not handled (the batches engine splits a chunk PostgreSQL refuses and rejects the entry): a row
PostgreSQL refuses fails the whole bulk replay, which rolls back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg

from consumer import accounting, snapshots
from consumer.bulk_fold import BulkBook, PartRow, first_per_key
from consumer.db.batch import (
    SELECT_FILLS_BY_ORDER,
    SELECT_ORDERS_AND_CLIENTS_FOR_UPDATE,
    SELECT_STORED_FILLS,
    UPSERT_ORDERS,
)
from consumer.db.copier import Copier, Job, copy_job, copy_rows, execute_job
from consumer.db.pnl_snapshots import (
    CREATE_SNAPSHOT_ROWS,
    ENSURE_CLOCK_ROW,
    REFRESH_SNAPSHOTS,
    SELECT_CLOCK_FOR_UPDATE,
)
from consumer.db.rows import (
    dumps,
    fill_metadata,
    fill_version_from_row,
    order_from_row,
    order_params,
    order_row,
)
from consumer.db.stats import REAGGREGATE_STATS, RECOMPUTE_STATS_SUMS, REFRESH_CUMULATIVE_PNL
from consumer.dialect import (
    OrderRequestEvent,
    OrderResultEvent,
    derived_fill_id,
    is_request_row,
)
from consumer.events import TERMINAL_STATUSES, FillEvent, OrderEvent
from consumer.fold import BatchResult, FillVersion, Fold, FoldStep
from consumer.id_filter import IdFilter
from consumer.orders import OrderState
from consumer.records import ParsedEntry

COPY_ORDERS = """
COPY paper_orders (order_id, client_id, symbol, side, order_type, quantity, price,
                   filled_quantity, filled_price, status, slippage_pct, fees_usdt, fee_type,
                   created_at, submitted_at, filled_at, rejection_reason, error_message,
                   metadata) FROM STDIN
"""

COPY_FILLS = """
COPY paper_fills (fill_id, order_id, symbol, quantity, price, fees_usdt, fee_type, filled_at,
                  metadata) FROM STDIN
"""

COPY_FILL_PNL = """
COPY paper_fill_pnl (fill_id, symbol, filled_at, realized_pnl_usdt, position_quantity)
FROM STDIN
"""

COPY_ROUND_TRIPS = """
COPY paper_round_trips (closing_fill_id, symbol, direction, opened_at, closed_at, quantity,
                        max_quantity, entry_avg_price, exit_avg_price, realized_pnl_usdt,
                        fees_usdt, fills, close_reason) FROM STDIN
"""

COPY_POSITIONS = """
COPY paper_positions (symbol, quantity, avg_entry_price, current_price, unrealized_pnl_usdt,
                      realized_pnl_usdt, cost_basis_usdt, market_value_usdt, entry_trades,
                      exit_trades, opened_at, closed_at, metadata) FROM STDIN
"""

COPY_PARTS = """
COPY paper_pnl_snapshot_parts (symbol, after_time, until_time, has_position, realized,
                               unrealized, trades, winning, losing, volume, fees) FROM STDIN
"""

COPY_SYMBOL_CLOCKS = "COPY paper_symbol_clocks (symbol, event_time) FROM STDIN"

# paper_stats_sums as the incremental step leaves it: the from-scratch sums of every date.
INSERT_STATS_SUMS = (
    """
INSERT INTO paper_stats_sums (
    stat_date, total_orders, filled_orders, partial_fills, rejected_orders,
    cancelled_orders, slippage_n, slippage_sum, fee_pct_n, fee_pct_sum, latency_n,
    latency_sum_ms, volume_usdt, fees_usdt, realized_pnl_usdt, updated_at)
SELECT r.*, now() FROM ("""
    + RECOMPUTE_STATS_SUMS
    + """) AS r
"""
)

# A date the batches engine touched whose terms all cancelled out (an order whose created_at
# moved to another date in a later chunk) keeps a row of zeros there: so here.
INSERT_ZERO_STATS_SUMS = """
INSERT INTO paper_stats_sums (stat_date, updated_at)
SELECT d, now() FROM unnest(%(dates)s::date[]) AS d
ON CONFLICT (stat_date) DO NOTHING
"""

INSERT_OFFSETS = """
INSERT INTO paper_consumer_offsets (stream_name, group_name, last_entry_id, entries_committed,
                                    updated_at)
SELECT o.stream_name, %(group)s, o.last_entry_id, o.entries, now()
FROM unnest(%(stream)s::varchar[], %(last_id)s::varchar[], %(entries)s::bigint[])
     AS o(stream_name, last_entry_id, entries)
"""


# The stored fills of orders loaded back (``_reload``): every fill id of theirs is applied
# already, a result's derived fill included (its id is its order's and its growth).
SELECT_FILLS_OF_ORDERS = """
SELECT fill_id, order_id, symbol, metadata->>'side' AS side, quantity, price, fees_usdt,
       fee_type, filled_at
FROM paper_fills WHERE order_id = ANY(%(ids)s::varchar[])
"""


@dataclass(slots=True)
class _Held:
    """The rows of one order's new fills, held until its own row is written (the foreign key)."""

    fills: list[tuple[Any, ...]] = field(default_factory=list)
    pnl: list[tuple[Any, ...]] = field(default_factory=list)
    trips: list[tuple[Any, ...]] = field(default_factory=list)


class BulkWriter:
    """Folds chunks into one ``Fold`` (``write``), hands the rows that are final to the writer
    thread as it goes, and writes the rest at the end (``finish``) on ``conn``, inside the
    caller's transaction (see the module doc). ``close()`` stops the writer thread (always
    call it, also when the replay fails). ``evict=False``: keep every order in memory until
    the end (the behaviour before eviction, for comparisons)."""

    def __init__(
        self,
        conn: psycopg.Connection[dict[str, Any]],
        *,
        group: str,
        start_balance: Decimal | None = None,
        evict: bool = True,
    ) -> None:
        self._conn = conn
        self._group = group
        self._start_balance = start_balance
        self._evict = evict
        self._fold = Fold({}, {}, set())
        self._book = BulkBook()
        self._clocks: dict[str, datetime] = {}
        self._boundaries: set[snapshots.Boundary] = set()
        self._parts: list[PartRow] = []
        self._held: dict[str, _Held] = {}  # per order id in memory: its fills' rows
        self._fill_ids: dict[str, list[str]] = {}  # per order id in memory: its fills' ids
        self._stored: set[str] = set()  # orders in memory that were written (and loaded back)
        self._evicted_orders = IdFilter()
        self._evicted_clients = IdFilter()
        self._evicted_fills = IdFilter()
        self._copier = Copier(conn)
        self._offsets: dict[str, int] = {}
        self._last_ids: dict[str, str] = {}
        self._any = False
        self.evicted = 0
        self.reloaded = 0

    def write(self, items: Sequence[ParsedEntry]) -> list[BatchResult]:
        """Fold one chunk (in stream order) in; the rows it made final go to the writer thread."""
        if not items:
            return []
        self._any = True
        if self._evict:
            self._reload(items)
        result = BatchResult()
        plan = snapshots.plan_by_symbol(
            [(i, i.event.symbol, i.event.timestamp) for i in items], self._clocks
        )
        self._clocks.update(plan.clocks)
        self._boundaries.update(plan.boundaries)
        fold, book = self._fold, self._book
        touched: set[str] = set()
        for segment in plan.segments:
            for part in segment.parts_before:
                self._parts.append(book.part(part.symbol, part.after, part.until, fold.positions))
            if segment.items:
                step = fold.apply(segment.items, result)
                result.orders_written += len(step.orders)
                result.fills_inserted += len(step.fills)
                result.positions_written += len(step.positions)
                book.add_step(step)
                self._keep(step)
                touched.update(o.order_id for o in step.orders)
        self._count_offsets(items)
        if self._evict:
            self._send_final(touched)
        return [result]

    def _reload(self, items: Sequence[ParsedEntry]) -> None:
        """Load back, as the live writer reads stored state (``batch._read_state``'s queries and
        row conversions), the evicted orders and fills the chunk's entries may name: the ids
        the filters may hold, confirmed by the database (after the writer thread drained: the
        same transaction, so its COPYed rows are seen)."""
        order_ids, client_ids, fill_ids = self._maybe_evicted(items)
        if not (order_ids or client_ids or fill_ids):
            return
        self._copier.drain()
        self._load(order_ids, client_ids, fill_ids)

    def _maybe_evicted(self, items: Sequence[ParsedEntry]) -> tuple[set[str], set[str], set[str]]:
        """The order ids, client ids and fill ids the chunk names that are not in memory and
        that the filters may hold."""
        rows = self._fold.orders
        known_fill = self._fold.knows_fill
        order_ids: set[str] = set()
        client_ids: set[str] = set()
        fill_ids: set[str] = set()
        may_order, may_client = self._evicted_orders.maybe, self._evicted_clients.maybe
        for item in items:
            event = item.event
            if isinstance(event, OrderEvent):
                if event.order_id not in rows and may_order(event.order_id):
                    order_ids.add(event.order_id)
                if isinstance(event, OrderRequestEvent | OrderResultEvent) and event.client_id:
                    client = event.client_id
                    if may_client(client) or (client not in rows and may_order(client)):
                        client_ids.add(client)
                        order_ids.add(client)
                if isinstance(event, OrderResultEvent) and event.filled_quantity is not None:
                    # The id of the fill it may derive: stored already (an evicted fill of
                    # another order under that id) means not new, as the live writer finds.
                    derived = derived_fill_id(event.order_id, event.filled_quantity)
                    if not known_fill(derived) and self._evicted_fills.maybe(derived):
                        fill_ids.add(derived)
            elif isinstance(event, FillEvent):
                if event.order_id not in rows and may_order(event.order_id):
                    order_ids.add(event.order_id)
                if not known_fill(event.fill_id) and self._evicted_fills.maybe(event.fill_id):
                    fill_ids.add(event.fill_id)
        return order_ids, client_ids, fill_ids

    def _load(self, order_ids: set[str], client_ids: set[str], fill_ids: set[str]) -> None:
        rows = self._fold.orders
        conn = self._conn
        ids, clients = sorted(order_ids), sorted(client_ids)
        stored = {
            r["order_id"]: order_from_row(r)
            for r in conn.execute(
                SELECT_ORDERS_AND_CLIENTS_FOR_UPDATE, {"ids": ids, "client_ids": clients}
            ).fetchall()
            if r["order_id"] not in rows
        }
        versions: dict[str, FillVersion | None] = {}
        if fill_ids:
            for r in conn.execute(SELECT_STORED_FILLS, {"ids": sorted(fill_ids)}).fetchall():
                versions[r["fill_id"]] = fill_version_from_row(r)
        filled: dict[str, Decimal] = {}
        times: dict[str, list[datetime]] = {}
        if stored:
            loaded = sorted(stored)
            for r in conn.execute(SELECT_FILLS_OF_ORDERS, {"ids": loaded}).fetchall():
                versions.setdefault(r["fill_id"], fill_version_from_row(r))
                self._fill_ids.setdefault(r["order_id"], []).append(r["fill_id"])
            for r in conn.execute(
                SELECT_FILLS_BY_ORDER, {"ids": loaded, "client_ids": []}
            ).fetchall():
                filled[r["order_id"]] = r["filled"]
                times[r["order_id"]] = list(r["times"])
        self._fold.load(stored, versions, filled=filled, fill_times=times)
        self._stored.update(stored)
        self.reloaded += len(stored)

    def _send_final(self, touched: set[str]) -> None:
        """Evict the orders this chunk made final (terminal, not a bare bot request row, not a
        placeholder) and hand their rows, then their fills' rows, and the chunk's parts to the
        writer thread."""
        rows = self._fold.orders
        final = sorted(
            oid
            for oid in touched
            if oid in rows
            and rows[oid].status in TERMINAL_STATUSES
            and not rows[oid].is_placeholder
            and not is_request_row(rows[oid])
        )
        jobs: list[Job] = []
        if final:
            orders = [rows[oid] for oid in final]
            jobs.extend(self._order_jobs(orders))
            held = [self._held.pop(oid) for oid in final if oid in self._held]
            jobs.extend(_held_jobs(held))
            fill_ids = [f for oid in final for f in self._fill_ids.pop(oid, ())]
            self._fold.evict(final, fill_ids)
            self._evicted_orders.update(final)
            self._evicted_clients.update(o.client_id for o in orders if o.client_id is not None)
            self._evicted_fills.update(fill_ids)
            self._stored.difference_update(final)
            self.evicted += len(final)
        if self._parts:
            jobs.append(copy_job(COPY_PARTS, [p.values() for p in first_per_key(self._parts)]))
            self._parts = []
        self._copier.put(jobs)

    def _order_jobs(self, orders: Sequence[OrderState]) -> list[Job]:
        """New rows by COPY; rows loaded back (stored already) by the live writer's upsert."""
        new = [o for o in orders if o.order_id not in self._stored]
        again = [o for o in orders if o.order_id in self._stored]
        jobs = [copy_job(COPY_ORDERS, [order_row(o) for o in new])] if new else []
        if again:
            jobs.append(execute_job(UPSERT_ORDERS, order_params(again)))
        return jobs

    def _keep(self, step: FoldStep) -> None:
        held = self._held
        fill_ids = self._fill_ids
        order_of: dict[str, str] = {}
        for _, fill, side in step.fills:
            order_of[fill.fill_id] = fill.order_id
            fill_ids.setdefault(fill.order_id, []).append(fill.fill_id)
            hold = held.get(fill.order_id)
            if hold is None:
                hold = held[fill.order_id] = _Held()
            hold.fills.append(
                (
                    fill.fill_id,
                    fill.order_id,
                    fill.symbol,
                    fill.quantity,
                    fill.price,
                    fill.fees_usdt,
                    fill.fee_type.value if fill.fee_type else None,
                    fill.timestamp,
                    fill_metadata(fill, side),
                )
            )
        for fill, outcome in step.fill_effects:
            held[fill.order_id].pnl.append(
                (
                    fill.fill_id,
                    fill.symbol,
                    fill.timestamp,
                    outcome.realized_delta,
                    outcome.position.quantity,
                )
            )
        for fill_id, trip in step.trips:
            held[order_of[fill_id]].trips.append(
                (
                    fill_id,
                    trip.symbol,
                    trip.direction,
                    trip.opened_at,
                    trip.closed_at,
                    trip.quantity,
                    trip.max_quantity,
                    trip.entry_avg_price,
                    trip.exit_avg_price,
                    trip.realized_pnl,
                    trip.fees,
                    trip.fills,
                    trip.reason,
                )
            )

    def _count_offsets(self, items: Sequence[ParsedEntry]) -> None:
        """Per stream: the last entry id and how many entries. Every source gives a stream's
        entries in id order, so each chunk's last entry of a stream is its newest, and all of
        a chunk's entries lie past the previous chunk's: what ``ADVANCE_OFFSETS`` counts."""
        offsets = self._offsets
        counts = Counter(item.key.stream for item in items)
        for stream, count in counts.items():
            offsets[stream] = offsets.get(stream, 0) + count
        last: dict[str, str] = {}
        for item in reversed(items):
            last.setdefault(item.key.stream, item.key.entry_id)
            if len(last) == len(counts):
                break
        self._last_ids.update(last)

    def close(self) -> None:
        """Stop the writer thread (idempotent); the caller commits or rolls back."""
        self._copier.close()

    def finish(self) -> None:
        """Wait for the writer thread, write what is still in memory (orders, then the fills
        held for them), then derive snapshots and statistics in SQL (module doc)."""
        self._copier.drain()
        self._copier.close()
        if not self._any:
            return
        conn = self._conn
        fold = self._fold
        orders = sorted(fold.orders.values(), key=lambda o: o.order_id)
        for job in self._order_jobs(orders):
            job(conn)
        held = [self._held[oid] for oid in sorted(self._held)]
        for job in _held_jobs(held):
            job(conn)
        positions = [fold.positions[s] for s in sorted(fold.positions)]
        copy_rows(conn, COPY_POSITIONS, (_position_row(p) for p in positions))
        copy_rows(conn, COPY_PARTS, (p.values() for p in first_per_key(self._parts)))
        copy_rows(conn, COPY_SYMBOL_CLOCKS, sorted(self._clocks.items()))
        conn.execute(ENSURE_CLOCK_ROW)
        clock = conn.execute(SELECT_CLOCK_FOR_UPDATE).fetchone()
        parts_since = clock["parts_since"] if clock else None
        if self._boundaries:
            boundaries = sorted(self._boundaries, key=lambda b: (b[0], b[1] == "DAILY"))
            created = conn.execute(
                CREATE_SNAPSHOT_ROWS,
                {
                    "time": [b[0] for b in boundaries],
                    "type": [b[1] for b in boundaries],
                    "parts_since": parts_since,
                    "source": "event_time",
                },
            ).fetchall()
            ids = [r["snapshot_id"] for r in created]
            if ids:
                conn.execute(REFRESH_SNAPSHOTS, {"ids": ids, "start_balance": self._start_balance})
        conn.execute(INSERT_STATS_SUMS)
        dates = sorted(self._book.stat_dates)
        if dates:
            conn.execute(INSERT_ZERO_STATS_SUMS, {"dates": dates})
            conn.execute(REAGGREGATE_STATS, {"dates": dates})
            conn.execute(REFRESH_CUMULATIVE_PNL, {"from": dates[0]})
        streams = sorted(self._offsets)
        conn.execute(
            INSERT_OFFSETS,
            {
                "group": self._group,
                "stream": streams,
                "last_id": [self._last_ids[s] for s in streams],
                "entries": [self._offsets[s] for s in streams],
            },
        )


def _held_jobs(held: Sequence[_Held]) -> list[Job]:
    """The fills, their P&L and round trips of ``held`` (their orders written before)."""
    jobs = []
    fills = [row for h in held for row in h.fills]
    if fills:
        jobs.append(copy_job(COPY_FILLS, _first_per_id(fills)))
    pnl = [row for h in held for row in h.pnl]
    if pnl:
        jobs.append(copy_job(COPY_FILL_PNL, _first_per_id(pnl)))
    trips = [row for h in held for row in h.trips]
    if trips:
        jobs.append(copy_job(COPY_ROUND_TRIPS, _first_per_id(trips)))
    return jobs


def _first_per_id(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows keyed by their first column, the first of each kept (``ON CONFLICT DO NOTHING``)."""
    seen: set[Any] = set()
    kept = []
    for row in rows:
        if row[0] not in seen:
            seen.add(row[0])
            kept.append(row)
    return kept


def _position_row(position: accounting.Position) -> tuple[Any, ...]:
    row = position.to_row()
    return (
        row["symbol"], row["quantity"], row["avg_entry_price"], row["current_price"],
        row["unrealized_pnl_usdt"], row["realized_pnl_usdt"], row["cost_basis_usdt"],
        row["market_value_usdt"], row["entry_trades"], row["exit_trades"], row["opened_at"],
        row["closed_at"], dumps(row["metadata"]),
    )  # fmt: skip
