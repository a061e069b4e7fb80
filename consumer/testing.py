"""In-memory twin of ``PostgresStore`` for fast unit tests of the worker loop.

``MemoryStore`` runs the same pure fold as the real store (``fold.Fold``) over dicts — one
batch applied atomically or not at all, fills de-duplicated by id, positions moved only by new
fills, bot requests and results linked — and keeps only its storage and its fault switches: be
*down* (``DatabaseUnavailableError``) or refuse entries (``RejectedByDatabaseError``), so the
loop's retry and split paths run in milliseconds. The daily statistics' sums are kept as the
fold steps compute them (``MemoryState.stats_sums``, what ``paper_stats_sums`` would hold: the
same terms the real store adds); snapshots are PostgreSQL's concern (the twin takes none). The
real store is always tested against a real PostgreSQL; this twin never stands in for it there.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from consumer import accounting, daily_sums
from consumer.errors import DatabaseUnavailableError, RejectedByDatabaseError
from consumer.events import FillEvent
from consumer.fold import BatchResult, FillVersion, Fold
from consumer.orders import OrderState
from consumer.records import ParsedEntry


@dataclass
class MemoryState:
    orders: dict[str, OrderState] = field(default_factory=dict)
    fills: dict[str, FillEvent] = field(default_factory=dict)
    positions: dict[str, accounting.Position] = field(default_factory=dict)
    # Per new fill: its time and realized P&L (paper_fill_pnl).
    fill_pnl: dict[str, tuple[datetime, Decimal]] = field(default_factory=dict)
    # paper_stats_sums: every batch's terms added (a date whose terms cancel keeps its row).
    stats_sums: dict[date, daily_sums.DaySums] = field(default_factory=dict)


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
        versions = {
            fid: FillVersion.of(f, f.side or draft.orders[f.order_id].side)
            for fid, f in draft.fills.items()
        }
        filled: dict[str, Decimal] = {}
        times: dict[str, list[datetime]] = {}
        for f in draft.fills.values():
            filled[f.order_id] = filled.get(f.order_id, Decimal(0)) + f.quantity
            times.setdefault(f.order_id, []).append(f.timestamp)
        fold = Fold(
            draft.orders,
            draft.positions,
            set(draft.fills),
            fill_versions=versions,
            filled=filled,
            fill_times=times,
        )
        step = fold.apply(items, result)
        for _, fill, _side in step.fills:
            draft.fills[fill.fill_id] = fill
        for fill, outcome in step.fill_effects:
            draft.fill_pnl[fill.fill_id] = (fill.timestamp, outcome.realized_delta)
        terms = step.stat_terms()
        result.stat_dates = sorted(terms.dates())
        for day in result.stat_dates:
            draft.stats_sums.setdefault(day, daily_sums.DaySums())
        for day, delta in terms.changed().items():  # APPLY_STATS_SUMS
            draft.stats_sums[day].add(delta)
        result.orders_written = len(step.orders)
        result.fills_inserted = len(step.fills)
        result.positions_written = len(step.positions)
        self.state = draft
        self.batches.append(len(items))
        return result

    def tick(self, now: datetime) -> int:
        """Snapshots are a PostgreSQL concern; the twin takes none."""
        if self.down:
            raise DatabaseUnavailableError("memory store is down")
        return 0
