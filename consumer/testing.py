"""In-memory twin of ``PostgresStore`` for fast unit tests of the worker loop.

``MemoryStore`` keeps the same promises as the real store at the level the worker sees them —
one batch applied atomically or not at all, fills de-duplicated by id, positions moved only by
new fills, using the same ``orders`` and ``accounting`` logic — and can be told to fail: be
*down* (``DatabaseUnavailableError``) or refuse entries (``RejectedByDatabaseError``), so the
loop's retry and split paths run in milliseconds. The real store is always tested against a
real PostgreSQL; this twin never stands in for it there.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from consumer import accounting
from consumer.errors import DatabaseUnavailableError, RejectedByDatabaseError
from consumer.events import FillEvent, MarkEvent, OrderEvent
from consumer.orders import (
    OrderEventRejectedError,
    OrderState,
    apply_order_event,
    placeholder_from_fill,
)
from consumer.records import ParsedEntry
from consumer.store import BatchResult, accounting_fill


@dataclass
class MemoryState:
    orders: dict[str, OrderState] = field(default_factory=dict)
    fills: dict[str, FillEvent] = field(default_factory=dict)
    positions: dict[str, accounting.Position] = field(default_factory=dict)


class MemoryStore:
    """A store in a dict. ``down`` makes every write fail as an outage; ``reject`` decides,
    per entry, whether the "database" refuses it (the whole batch then fails, as in SQL)."""

    def __init__(self, reject: Callable[[ParsedEntry], bool] | None = None) -> None:
        self.state = MemoryState()
        self.down = False
        self.reject = reject or (lambda _: False)
        self.batches: list[int] = []  # sizes of the committed batches, in commit order

    def write_batch(self, items: Sequence[ParsedEntry]) -> BatchResult:
        if self.down:
            raise DatabaseUnavailableError("memory store is down")
        if any(self.reject(item) for item in items):
            raise RejectedByDatabaseError("memory store refused an entry")
        draft = copy.deepcopy(self.state)  # all or nothing, like a transaction
        result = BatchResult()
        for item in items:
            self._apply(draft, item, result)
        self.state = draft
        self.batches.append(len(items))
        return result

    def tick(self, now: datetime) -> int:
        """Snapshots are a PostgreSQL concern; the twin takes none."""
        if self.down:
            raise DatabaseUnavailableError("memory store is down")
        return 0

    @staticmethod
    def _apply(state: MemoryState, item: ParsedEntry, result: BatchResult) -> None:
        event = item.event
        if isinstance(event, OrderEvent):
            try:
                state.orders[event.order_id] = apply_order_event(
                    state.orders.get(event.order_id), event
                )
                result.orders_written += 1
            except OrderEventRejectedError as exc:
                result.rejected.append((item, str(exc)))
        elif isinstance(event, FillEvent):
            order = state.orders.get(event.order_id)
            side = event.side or (order.side if order else None)
            if side is None:
                result.rejected.append((item, "fill without side for an unknown order"))
                return
            if event.fill_id in state.fills:
                result.fills_duplicate += 1
                return
            if order is None:
                state.orders[event.order_id] = placeholder_from_fill(event, side)
            state.fills[event.fill_id] = event
            position = state.positions.get(event.symbol) or accounting.new_position(event.symbol)
            outcome = accounting.apply_fill(position, accounting_fill(event, side))
            state.positions[event.symbol] = outcome.position
            result.fills_inserted += 1
        elif isinstance(event, MarkEvent) and event.symbol in state.positions:
            state.positions[event.symbol] = accounting.apply_mark(
                state.positions[event.symbol], event.price, event.timestamp
            )
