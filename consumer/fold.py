"""The accounting fold: one batch of parsed entries, in stream order, over the rows it touches.

Pure: no I/O, no psycopg, no clock. Given the stored state the batch can touch (its orders by
id and by client id, the positions of its symbols, which of its fills are already stored) and
the entries in stream order, ``Fold.apply`` decides, one entry at a time, everything the batch
changes: the order rows (bot requests and results linked through their client id, placeholders
for fills whose order is unknown), the fills that are new, the positions they and the marks
move, the realized P&L of each new fill and the round trips it closes, what the daily statistics
and the snapshot parts gain (``step_terms.py``: each changed order row before and after the step,
the new fills joined to their orders, the latency of older fills whose order's ``created_at``
moved; the step's per-symbol trips, volume and fees), and each entry's outcome (applied,
duplicate, or rejected with its reason). Every decision sees exactly what a batch
ending just before it would have stored, so the result does not depend on batch boundaries.

Three writers run it: the live batch writer (``db/batch.py``: the rows read FOR UPDATE, the
returned ``FoldStep`` written with one statement per table), the in-memory twin
(``testing.MemoryStore``) and replay. A ``Fold`` keeps its state between ``apply`` calls, so a
batch cut at snapshot boundaries is folded segment by segment, and a history can be folded in
one pass; each step reports only what changed since the previous one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal

from consumer import accounting, daily_sums, step_terms
from consumer.dialect import (
    OrderRequestEvent,
    OrderResultEvent,
    derive_fill,
    is_request_row,
    merge_request,
)
from consumer.events import FillEvent, MarkEvent, OrderEvent, Side
from consumer.orders import (
    OrderEventRejectedError,
    OrderState,
    apply_order_event,
    placeholder_from_fill,
)
from consumer.records import ParsedEntry
from consumer.values import immutable


@dataclass
class BatchResult:
    """What one committed batch did. ``rejected`` entries were not applied (dead-letter them)."""

    orders_written: int = 0
    fills_inserted: int = 0
    fills_duplicate: int = 0
    positions_written: int = 0
    stat_dates: list[date] = field(default_factory=list)
    snapshots: int = 0
    closed_trips: list[accounting.ClosedTrip] = field(default_factory=list)
    rejected: list[tuple[ParsedEntry, str]] = field(default_factory=list)
    # Entries rejected because an applied fill or a stored order has their id and other values
    # (also in rejected).
    conflicts: int = 0


_ZERO = Decimal(0)


@immutable
class FillVersion:
    """The values of a fill that make it that fill, to tell a redelivery from another fill
    reusing its id (amounts compare by value: the parser already rounds them to the columns'
    8 places, as PostgreSQL stores them)."""

    order_id: str
    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal
    fees_usdt: Decimal
    fee_type: str | None
    # Shown, not compared: a fill published again without a timestamp takes its new entry's time.
    filled_at: datetime = field(compare=False)

    @classmethod
    def of(cls, event: FillEvent, side: Side) -> FillVersion:
        return cls(
            event.order_id,
            event.symbol,
            side,
            event.quantity,
            event.price,
            event.fees_usdt,
            event.fee_type.value if event.fee_type else None,
            event.timestamp,
        )

    def shown(self) -> str:
        fee_type = f" {self.fee_type}" if self.fee_type else ""
        return (
            f"order {self.order_id!r} {self.side.value} {self.quantity.normalize():f} "
            f"{self.symbol} @ {self.price.normalize():f}, fee {self.fees_usdt.normalize():f}"
            f"{fee_type}, at {self.filled_at.isoformat()}"
        )


@dataclass
class FoldStep:
    """What one ``Fold.apply`` changed, to be written (orders and positions in their final
    state for the step, each once)."""

    orders: list[OrderState] = field(default_factory=list)
    # Rows that left their key: bot request rows re-keyed to their result's order id (old ->
    # new), or merged into the result's existing row (old -> None). Only rows stored before.
    moved: dict[str, str | None] = field(default_factory=dict)
    # The new fills, each with its side and the entry it came from, in stream order.
    fills: list[tuple[ParsedEntry, FillEvent, Side]] = field(default_factory=list)
    positions: list[accounting.Position] = field(default_factory=list)
    # Per new fill: its realized P&L and the position quantity after it.
    fill_effects: list[tuple[FillEvent, accounting.FillOutcome]] = field(default_factory=list)
    trips: list[tuple[str, accounting.ClosedTrip]] = field(default_factory=list)
    # What the daily statistics depend on: each changed order row before and after the step
    # (the review's "before-state"), the latency moves of older fills, the new fills joined to
    # their orders and their P&L (``step_terms.StepFacts``).
    facts: step_terms.StepFacts = field(default_factory=step_terms.StepFacts)

    def stat_terms(self, into: daily_sums.BatchSums | None = None) -> daily_sums.BatchSums:
        """The step's signed per-date terms for ``paper_stats_sums`` (``step_terms``)."""
        return step_terms.stat_terms(self.facts, into)

    def symbol_totals(self) -> dict[str, step_terms.SymbolTotals]:
        """The step's contribution to each symbol's round trips, volume and fees (what a
        snapshot part adds to the symbol's totals before the step)."""
        return step_terms.symbol_totals((f for _, f, _ in self.fills), (t for _, t in self.trips))


def _creation_conflict(current: OrderState | None, event: OrderEvent) -> str | None:
    """The reason an order event that would create its row (symbol, side and quantity given)
    conflicts with the row stored under its id (another symbol, side or quantity), else None.
    A placeholder only stood in for the order, and an event repeating the row is a redelivery."""
    if current is None or current.is_placeholder:
        return None
    if event.symbol is None or event.side is None or event.quantity is None:
        return None
    stored = (current.symbol, current.side, current.quantity)
    received = (event.symbol, event.side, event.quantity)
    if stored == received:
        return None

    def shown(symbol: str, side: Side, quantity: Decimal) -> str:
        return f"{side.value} {quantity.normalize():f} {symbol}"

    return (
        f"conflicts with stored order {event.order_id!r}: stored {shown(*stored)}; "
        f"received {shown(*received)}"
    )


class _Book:
    """The orders by order id, with an index by client id kept in step."""

    def __init__(self, rows: dict[str, OrderState]) -> None:
        self.rows = rows
        self.dirty: set[str] = set()  # ids put since the last step
        self.by_client: dict[str, set[str]] = {}
        for state in rows.values():
            self._index(state)

    def _index(self, state: OrderState) -> None:
        if state.client_id is not None:
            self.by_client.setdefault(state.client_id, set()).add(state.order_id)

    def put(self, state: OrderState) -> None:
        self.rows[state.order_id] = state
        self.dirty.add(state.order_id)
        self._index(state)

    def pop(self, order_id: str) -> OrderState:
        state = self.rows.pop(order_id)
        if state.client_id is not None:
            ids = self.by_client.get(state.client_id)
            if ids is not None:
                ids.discard(order_id)
                if not ids:
                    del self.by_client[state.client_id]
        return state

    def load(self, state: OrderState) -> None:
        """A stored row taken in (not dirty: it is what is stored)."""
        self.rows[state.order_id] = state
        self._index(state)

    def request_row(self, client_id: str) -> OrderState | None:
        """The row still standing for the bot request ``client_id`` alone, if any."""
        state = self.rows.get(client_id)
        return state if state is not None and is_request_row(state) else None

    def for_client(self, client_id: str) -> OrderState | None:
        """The row a bot request with ``client_id`` belongs to: the row keyed by it, else the
        first (by order id) of the rows carrying it."""
        if client_id in self.rows:
            return self.rows[client_id]
        ids = sorted(self.by_client.get(client_id, ()))
        return self.rows[ids[0]] if ids else None


class Fold:
    """The accounting state of the rows a writer holds, and the fold of entries into it.

    ``orders`` must hold every stored row an entry of the batch can touch: by order id (order
    events, fills, results) and by client id (bot requests and results); ``positions`` the
    stored position of every symbol a fill, result or mark of the batch names; ``stored_fills``
    the ids among the batch's fills that are already stored (a fill is applied once, ever).
    The dicts are taken over (not copied).

    ``fill_versions`` holds what is stored of those fills (their values, to tell an identical
    redelivery, a silent duplicate, from a conflicting one, rejected); a stored fill missing from
    it is taken as identical. ``filled`` holds, per order of the batch, the quantity of its
    stored fills (a fill that would take a real order past its quantity is rejected);
    ``fill_times``, per order of ``orders``, the times of its stored fills (their latency moves
    when the order's ``created_at`` does). Missing: no stored fills."""

    def __init__(
        self,
        orders: dict[str, OrderState],
        positions: dict[str, accounting.Position],
        stored_fills: set[str],
        *,
        fill_versions: dict[str, FillVersion] | None = None,
        filled: dict[str, Decimal] | None = None,
        fill_times: dict[str, list[datetime]] | None = None,
    ) -> None:
        self._book = _Book(orders)
        self._stored_orders = set(orders)
        self._written_orders = dict(orders)
        self.positions = positions
        self._written_positions = dict(positions)
        self._dirty_symbols: set[str] = set()  # positions moved since the last step
        self._fills = stored_fills  # stored, and applied by an earlier step
        self._versions = fill_versions if fill_versions is not None else {}
        self._applied: dict[str, tuple[FillEvent, Side]] = {}
        self._filled = filled if filled is not None else {}
        # Per order id: the times of its fills stored before the current step.
        self._fill_times = fill_times if fill_times is not None else {}

    @property
    def orders(self) -> dict[str, OrderState]:
        return self._book.rows

    def knows_fill(self, fill_id: str) -> bool:
        """Whether ``fill_id`` is stored or was applied by an earlier step (what the fold
        holds; a fill ``evict``-ed since is not known here)."""
        return fill_id in self._fills

    def load(
        self,
        orders: dict[str, OrderState],
        stored_fills: dict[str, FillVersion | None],
        *,
        filled: dict[str, Decimal],
        fill_times: dict[str, list[datetime]],
    ) -> None:
        """Take in stored state between steps, as the constructor takes it (a bounded writer
        gives back what it evicted, ``evict``): rows and fills the fold holds already are kept
        as they are (theirs is newer); ``filled`` and ``fill_times`` count for the new rows."""
        book = self._book
        for order_id, state in orders.items():
            if order_id in book.rows:
                continue
            book.load(state)
            self._written_orders[order_id] = state
            self._stored_orders.add(order_id)
            if order_id in filled:
                self._filled[order_id] = filled[order_id]
            if order_id in fill_times:
                self._fill_times[order_id] = list(fill_times[order_id])
        for fill_id, version in stored_fills.items():
            if fill_id in self._fills:
                continue
            self._fills.add(fill_id)
            if version is not None:
                self._versions[fill_id] = version

    def evict(self, order_ids: Sequence[str], fill_ids: Sequence[str]) -> None:
        """Forget orders (and their fills) that are stored and final, between steps: what the
        fold keeps of them (rows, the client index, filled quantities, fill times, applied fill
        ids and values). An entry naming one later needs it ``load``-ed back first."""
        book = self._book
        for order_id in order_ids:
            book.pop(order_id)
            book.dirty.discard(order_id)
            self._written_orders.pop(order_id, None)
            self._stored_orders.discard(order_id)
            self._filled.pop(order_id, None)
            self._fill_times.pop(order_id, None)
        for fill_id in fill_ids:
            self._fills.discard(fill_id)
            self._applied.pop(fill_id, None)
            self._versions.pop(fill_id, None)

    def apply(self, items: Sequence[ParsedEntry], result: BatchResult) -> FoldStep:
        """Fold ``items`` (in stream order) in; outcomes go to ``result`` (rejected entries with
        their reasons, duplicate fills, closed round trips)."""
        step = FoldStep()
        for item in items:
            event = item.event
            if isinstance(event, OrderRequestEvent):
                self._request(event, item, result)
            elif isinstance(event, OrderResultEvent):
                derived = self._result(event, item, result, step)
                # A derived fill seen before is silently the same one (its id is its growth).
                if derived is not None and derived.fill_id not in self._fills:
                    side = derived.side or self._book.rows[event.order_id].side
                    self._fill(derived, side, item, step, result)
            elif isinstance(event, OrderEvent):
                current = self.orders.get(event.order_id)
                conflict = _creation_conflict(current, event)
                if conflict is not None:
                    result.conflicts += 1
                    result.rejected.append((item, conflict))
                    continue
                try:
                    self._book.put(apply_order_event(current, event))
                except OrderEventRejectedError as exc:
                    result.rejected.append((item, str(exc)))
            elif isinstance(event, FillEvent):
                self._contract_fill(event, item, step, result)
            elif isinstance(event, MarkEvent) and event.symbol in self.positions:
                # A mark for a symbol never traded has no position row to update.
                self.positions[event.symbol] = accounting.apply_mark(
                    self.positions[event.symbol], event.price, event.timestamp
                )
                self._dirty_symbols.add(event.symbol)
        self._changes(step)
        return step

    def _contract_fill(
        self, event: FillEvent, item: ParsedEntry, step: FoldStep, result: BatchResult
    ) -> None:
        order = self.orders.get(event.order_id)
        if event.fill_id in self._fills:
            self._duplicate(event, order, item, result)
            return
        side = event.side or (order.side if order is not None else None)
        if side is None:
            result.rejected.append(
                (
                    item,
                    f"fill {event.fill_id!r} has no side and its order {event.order_id!r} is "
                    "unknown, so the position it moves cannot be determined",
                )
            )
            return
        if order is not None and not order.is_placeholder:
            total = self._filled.get(event.order_id, _ZERO) + event.quantity
            if total > order.quantity:
                result.rejected.append(
                    (
                        item,
                        f"fill {event.fill_id!r} takes order {event.order_id!r} past its "
                        f"quantity: its fills would total {total.normalize():f} of "
                        f"{order.quantity.normalize():f}",
                    )
                )
                return
        if order is None:
            self._book.put(placeholder_from_fill(event, side))
        elif order.is_placeholder:
            # A placeholder carries the quantity of its order's fills so far and starts at the
            # first of them (whatever batches they came in).
            self._book.put(
                replace(
                    order,
                    quantity=order.quantity + event.quantity,
                    created_at=min(order.created_at, event.timestamp),
                )
            )
        self._fill(event, side, item, step, result)

    def _fill(
        self, event: FillEvent, side: Side, item: ParsedEntry, step: FoldStep, result: BatchResult
    ) -> None:
        """A new fill: recorded, and its position moved (P&L, round trips)."""
        if event.fill_id in self._fills:
            result.fills_duplicate += 1
            return
        self._fills.add(event.fill_id)
        self._applied[event.fill_id] = (event, side)  # its FillVersion only if ever needed
        self._filled[event.order_id] = self._filled.get(event.order_id, _ZERO) + event.quantity
        step.fills.append((item, event, side))
        position = self.positions.get(event.symbol) or accounting.new_position(event.symbol)
        outcome = accounting.apply_fill(position, accounting_fill(event, side))
        self.positions[event.symbol] = outcome.position
        self._dirty_symbols.add(event.symbol)
        result.closed_trips.extend(outcome.closed_trips)
        step.trips.extend((event.fill_id, trip) for trip in outcome.closed_trips)
        step.fill_effects.append((event, outcome))

    def _duplicate(
        self, event: FillEvent, order: OrderState | None, item: ParsedEntry, result: BatchResult
    ) -> None:
        """A fill whose id was applied before: silent if it is the same fill, else rejected."""
        known = self._versions.get(event.fill_id)
        if known is None and event.fill_id in self._applied:
            known = FillVersion.of(*self._applied[event.fill_id])
        side = event.side or (known.side if known is not None else None)
        if known is None or side is None or FillVersion.of(event, side) == known:
            result.fills_duplicate += 1
            return
        result.conflicts += 1
        result.rejected.append(
            (
                item,
                f"conflicts with stored fill {event.fill_id!r}: stored {known.shown()}; "
                f"received {FillVersion.of(event, side).shown()}",
            )
        )

    def _request(self, event: OrderRequestEvent, item: ParsedEntry, result: BatchResult) -> None:
        """A bot request: fills in the row its result already made (found by client id; the
        request time becomes its ``created_at``), else stands as a PENDING row under its
        client id."""
        client_id = event.client_id or event.order_id
        state = self._book.for_client(client_id)
        if state is not None and state.order_id != event.order_id:
            event = event.model_copy(update={"order_id": state.order_id, "status": None})
        try:
            self._book.put(apply_order_event(state, event))
        except OrderEventRejectedError as exc:  # pragma: no cover - a request has what a row needs
            result.rejected.append((item, str(exc)))

    def _result(
        self, event: OrderResultEvent, item: ParsedEntry, result: BatchResult, step: FoldStep
    ) -> FillEvent | None:
        """A bot result: links its request row (by client id) to its order id, folds the order
        event in, and returns the fill derived from the growth of ``filled_quantity``, if any."""
        book = self._book
        state = book.rows.get(event.order_id)
        client_id = event.client_id
        request = (
            book.request_row(client_id)
            if client_id is not None and client_id != event.order_id
            else None
        )
        if request is not None and client_id is not None:
            book.pop(client_id)
            if client_id in self._stored_orders and client_id not in step.moved:
                fresh = state is None and event.order_id not in self._stored_orders
                step.moved[client_id] = event.order_id if fresh else None
            state = merge_request(state, request, event.order_id)
        try:
            after = apply_order_event(state, event)
        except OrderEventRejectedError as exc:
            if request is not None:  # not applied: the request row stays as it was
                book.put(request)
                step.moved.pop(request.order_id, None)
            result.rejected.append((item, str(exc)))
            return None
        derived = derive_fill(state, after, event)
        if derived is None:
            book.put(after)
            return None
        fill, after = derived
        book.put(after)
        return fill

    def _changes(self, step: FoldStep) -> None:
        """What changed since the last step: rows moved, orders and positions to write, and
        the facts of the step's statistics (``step.facts``)."""
        written = self._written_orders  # the rows as the writer stored them
        facts = step.facts
        changes = facts.orders
        for old, new in step.moved.items():
            stored = written.pop(old)
            self._stored_orders.discard(old)
            changes.setdefault(old, (stored, None))
            if new is not None:
                changes.setdefault(new, (written.get(new), None))
                written[new] = replace(stored, order_id=new)
                self._stored_orders.add(new)
        # Only the rows touched since the last step are compared: a step costs what it folded,
        # not what the fold holds (a replay folds a whole history into one Fold).
        dirty, self._book.dirty = self._book.dirty, set()
        rows = self.orders
        step.orders = sorted(
            (rows[oid] for oid in dirty if oid in rows and written.get(oid) != rows[oid]),
            key=lambda o: o.order_id,
        )
        for order in step.orders:
            changes.setdefault(order.order_id, (written.get(order.order_id), None))
            written[order.order_id] = order
            self._stored_orders.add(order.order_id)
        for key, (before, _) in changes.items():
            changes[key] = (before, written.get(key))
        self._fill_facts(step)
        symbols, self._dirty_symbols = sorted(self._dirty_symbols), set()
        step.positions = [
            self.positions[sym]
            for sym in symbols
            if self._written_positions.get(sym) != self.positions[sym]
        ]
        for position in step.positions:
            self._written_positions[position.symbol] = position

    def _fill_facts(self, step: FoldStep) -> None:
        """The fills' side of the step's statistics: the latency of fills stored before the
        step moves with their order's ``created_at``, each new fill is joined to its order as
        written now; then the new fills join their orders' known fills."""
        written, times, facts = self._written_orders, self._fill_times, step.facts
        for key, (before, _) in facts.orders.items():
            older = times.get(key)
            if before is None or not older:
                continue
            # Only bot request rows move, and they have no fills (``is_request_row``: nothing
            # filled; the foreign key would refuse re-keying one): kept general all the same.
            target = step.moved.get(key, key)
            after = written.get(target) if target is not None else None
            if target is not None and target != key:
                times[target] = times.pop(key)
            if after is not None and after.created_at != before.created_at:
                facts.latency_moves.extend((t, before.created_at, after.created_at) for t in older)
        for _, fill, _side in step.fills:
            order = written.get(fill.order_id)
            facts.fills.append((fill, order.created_at if order is not None else None))
            times.setdefault(fill.order_id, []).append(fill.timestamp)
        facts.pnl.extend(
            (fill.timestamp, outcome.realized_delta) for fill, outcome in step.fill_effects
        )


def accounting_fill(event: FillEvent, side: Side) -> accounting.Fill:
    """The accounting view of a stored fill event (its side resolved)."""
    return accounting.Fill(
        symbol=event.symbol,
        side=side.value,
        quantity=event.quantity,
        price=event.price,
        fee=event.fees_usdt,
        time=event.timestamp,
    )
