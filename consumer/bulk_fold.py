"""The bulk replay's in-memory bookkeeping: per-symbol snapshot parts and statistics dates. Pure.

The batches engine writes a symbol's snapshot part by reading its state from the tables
(``_SYMBOL_STATE`` in ``db/pnl_snapshots.py``). The bulk engine folds the whole history in memory
and writes nothing until the end, so it computes the same part from running per-symbol
aggregates instead, exactly as the SQL would see the stored rows:

- ``has_position``, ``realized``, ``unrealized``: the symbol's position row, if any, its values
  as the ``DECIMAL(18,8)`` columns store them (rounded half away from zero, PostgreSQL's
  numeric rounding); no row: false, 0, 0;
- ``trades``, ``winning``, ``losing``: the symbol's round trips so far, counted by the sign of
  their stored (rounded) realized P&L;
- ``volume``, ``fees``: ``sum(quantity * price)`` and ``sum(fees_usdt)`` of the symbol's fills
  so far, each column rounded as stored, the sums exact (unconstrained NUMERIC).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import astuple, dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Context, Decimal

from consumer import accounting, daily_sums
from consumer.fold import FoldStep

_EIGHT = Decimal("0.00000001")
# Exact sums of products of DECIMAL(18,8) values: far more digits than the default 28.
_EXACT = Context(prec=200)


def stored(value: Decimal) -> Decimal:
    """``value`` as a ``DECIMAL(18,8)`` column stores it (PostgreSQL rounds half away from
    zero, which is ``ROUND_HALF_UP`` on the magnitude)."""
    return value.quantize(_EIGHT, rounding=ROUND_HALF_UP, context=_EXACT)


def stored_or_zero(value: Decimal | None) -> Decimal:
    """A nullable ``DECIMAL(18,8)`` column as ``coalesce(column, 0)`` reads it."""
    return Decimal(0) if value is None else stored(value)


@dataclass
class SymbolTotals:
    """One symbol's round trips and fills so far (what ``_SYMBOL_STATE`` aggregates)."""

    trades: int = 0
    winning: int = 0
    losing: int = 0
    volume: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)


@dataclass(frozen=True)
class PartRow:
    """One ``paper_pnl_snapshot_parts`` row."""

    symbol: str
    after: datetime
    until: datetime
    has_position: bool
    realized: Decimal
    unrealized: Decimal
    trades: int
    winning: int
    losing: int
    volume: Decimal
    fees: Decimal

    def values(self) -> tuple[object, ...]:
        """The row's columns in ``paper_pnl_snapshot_parts`` order."""
        return astuple(self)


class BulkBook:
    """Running per-symbol totals and the statistics dates of a whole folded history."""

    def __init__(self) -> None:
        self.totals: dict[str, SymbolTotals] = {}
        # The dates the batches engine's statistics step touches: every written order's
        # created_at date and every new fill's date.
        self.stat_dates: set[date] = set()

    def add_step(self, step: FoldStep) -> None:
        """Count a fold step's new fills and round trips, and its dates."""
        for _, fill, _side in step.fills:
            totals = self.totals.setdefault(fill.symbol, SymbolTotals())
            volume = _EXACT.multiply(stored(fill.quantity), stored(fill.price))
            totals.volume = _EXACT.add(totals.volume, volume)
            totals.fees = _EXACT.add(totals.fees, stored_or_zero(fill.fees_usdt))
        for _, trip in step.trips:
            totals = self.totals.setdefault(trip.symbol, SymbolTotals())
            realized = stored(trip.realized_pnl)
            totals.trades += 1
            totals.winning += realized > 0
            totals.losing += realized < 0
        self.stat_dates.update(daily_sums.utc_date(o.created_at) for o in step.orders)
        self.stat_dates.update(daily_sums.utc_date(f.timestamp) for f, _ in step.fill_effects)

    def part(
        self,
        symbol: str,
        after: datetime,
        until: datetime,
        positions: dict[str, accounting.Position],
    ) -> PartRow:
        """The symbol's state as it stands, for boundaries in (after, until]."""
        totals = self.totals.get(symbol) or SymbolTotals()
        position = positions.get(symbol)
        return PartRow(
            symbol=symbol,
            after=after,
            until=until,
            has_position=position is not None,
            realized=stored_or_zero(position.realized_pnl if position is not None else None),
            unrealized=stored_or_zero(position.unrealized_pnl if position is not None else None),
            trades=totals.trades,
            winning=totals.winning,
            losing=totals.losing,
            volume=totals.volume,
            fees=totals.fees,
        )


def first_per_key(parts: Iterable[PartRow]) -> list[PartRow]:
    """The parts as ``ON CONFLICT (symbol, until_time) DO NOTHING`` keeps them: the first."""
    kept: dict[tuple[str, datetime], PartRow] = {}
    for part in parts:
        kept.setdefault((part.symbol, part.until), part)
    return list(kept.values())
