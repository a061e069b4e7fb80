"""What one fold step adds to the daily statistics and to its symbols' snapshot parts. Pure.

A ``FoldStep`` (``fold.py``) knows every row it writes, so the terms the database layer used to
derive from the rows PostgreSQL returned are computed here, with the digits PostgreSQL would
store and compute:

- a value written to a ``DECIMAL(p,s)`` column is rounded to ``s`` places half away from zero,
  PostgreSQL's numeric rounding (``column``), and keeps exactly ``s`` places (its scale);
- a fill's volume ``quantity * price`` is the exact product of its stored amounts (scale 16);
- a fill's fee % ``fees_usdt / (quantity * price) * 100`` is PostgreSQL's ``numeric_div``
  (``numeric_divide``: the quotient's scale from ``select_div_scale``, at least 16 significant
  digits and not less than either operand's scale, the exact quotient rounded half away from
  zero at that scale), then an exact product;
- sums are exact and keep the largest scale of their terms, as ``sum(numeric)`` does
  (``daily_sums.BatchSums``).

``StepFacts`` is what a step hands over (the order rows before and after it, the older fills
whose latency moved with their order's ``created_at``, the new fills with their orders'
``created_at``, the realized P&L of each new fill); ``stat_terms`` turns it into signed per-date
terms for ``paper_stats_sums``. ``symbol_totals`` is a step's contribution to each symbol's round
trips, volume and fees, which a snapshot part adds to the symbol's totals before the batch
(``part_values``: the part as ``_SYMBOL_STATE`` in ``db/pnl_snapshots.py`` would read it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import MAX_EMAX, MIN_EMIN, ROUND_DOWN, ROUND_HALF_UP, Context, Decimal

from consumer import accounting, daily_sums
from consumer.events import FillEvent
from consumer.orders import OrderState

AMOUNT_PLACES = 8  # DECIMAL(18,8): quantities, prices, fees, P&L
SLIPPAGE_PLACES = 6  # DECIMAL(10,6)
_EXACT = daily_sums.EXACT
_HUNDRED = Decimal(100)
# PostgreSQL's numeric.c: NUMERIC_MIN_SIG_DIGITS, DEC_DIGITS (base 10000), display scale bounds.
_MIN_SIG_DIGITS, _DEC_DIGITS, _MAX_DISPLAY_SCALE = 16, 4, 1000


_QUANTA: dict[int, Decimal] = {}
_TRUNCATING: dict[int, Context] = {}


def _quantum(places: int) -> Decimal:
    quantum = _QUANTA.get(places)
    if quantum is None:
        quantum = _QUANTA[places] = Decimal(1).scaleb(-places)
    return quantum


def column(value: Decimal, places: int = AMOUNT_PLACES) -> Decimal:
    """``value`` as a ``DECIMAL(_, places)`` column stores it: rounded half away from zero
    (``ROUND_HALF_UP`` on the magnitude), with exactly ``places`` decimals."""
    return value.quantize(_quantum(places), rounding=ROUND_HALF_UP, context=_EXACT)


def _scale(value: Decimal) -> int:
    """PostgreSQL's display scale of ``value`` (a numeric of its digits)."""
    if not value.is_finite():
        raise ValueError(f"not a finite number: {value}")
    return max(0, -int(value.as_tuple().exponent))


def _weight_and_first_digit(value: Decimal) -> tuple[int, int]:
    """PostgreSQL's base-10000 weight of ``value``'s first non-zero digit, and that digit
    (0, 0 for zero)."""
    if value.is_zero():
        return 0, 0
    weight = value.adjusted() // _DEC_DIGITS
    first = int(abs(value).scaleb(-_DEC_DIGITS * weight, _EXACT))
    return weight, first


def division_scale(
    dividend: Decimal, divisor: Decimal, scales: tuple[int, int] | None = None
) -> int:
    """``select_div_scale``: the scale PostgreSQL gives ``dividend / divisor`` (``scales``:
    the operands' display scales, when known)."""
    weight1, first1 = _weight_and_first_digit(dividend)
    weight2, first2 = _weight_and_first_digit(divisor)
    quotient_weight = weight1 - weight2
    if first1 <= first2:
        quotient_weight -= 1
    scale1, scale2 = scales if scales is not None else (_scale(dividend), _scale(divisor))
    scale = max(_MIN_SIG_DIGITS - quotient_weight * _DEC_DIGITS, scale1, scale2, 0)
    return min(scale, _MAX_DISPLAY_SCALE)


def numeric_divide(
    dividend: Decimal, divisor: Decimal, scales: tuple[int, int] | None = None
) -> Decimal:
    """``dividend / divisor`` as PostgreSQL's ``numeric_div`` computes it (``divisor`` != 0):
    the exact quotient rounded half away from zero at ``division_scale`` decimals.

    The quotient is first truncated at least one digit past that scale, then rounded: the
    truncated digits are >= 5 exactly when the exact remainder is >= half a unit, so the one
    rounding is the exact quotient's."""
    scale = division_scale(dividend, divisor, scales)
    if dividend.is_zero():
        return Decimal(0).scaleb(-scale)
    # |quotient| < 10^(adjusted difference + 1): this many digits reach scale + 1 decimals.
    digits = max(dividend.adjusted() - divisor.adjusted() + scale + 2, 1)
    context = _TRUNCATING.get(digits)
    if context is None:
        context = _TRUNCATING[digits] = Context(
            prec=digits, rounding=ROUND_DOWN, Emax=MAX_EMAX, Emin=MIN_EMIN
        )
    quotient = context.divide(dividend, divisor)
    rounded = quotient.quantize(_quantum(scale), rounding=ROUND_HALF_UP, context=_EXACT)
    return rounded.copy_abs() if rounded.is_zero() else rounded  # no "-0" in PostgreSQL


def fill_volume(fill: FillEvent) -> Decimal:
    """``quantity * price`` of the stored fill (exact, scale 16)."""
    return _EXACT.multiply(column(fill.quantity), column(fill.price))


_FEE_SCALES = (AMOUNT_PLACES, 2 * AMOUNT_PLACES)  # fees_usdt, quantity * price


def fee_pct(fees: Decimal, volume: Decimal) -> Decimal | None:
    """``fees_usdt / (quantity * price) * 100`` of stored values (``column`` and
    ``fill_volume``: scales 8 and 16); None for a zero volume."""
    if volume.is_zero():
        return None
    return _EXACT.multiply(numeric_divide(fees, volume, _FEE_SCALES), _HUNDRED)


def order_row(order: OrderState) -> daily_sums.OrderRow:
    """The statistics' view of an order row as ``paper_orders`` stores it."""
    slippage = order.slippage_pct
    return daily_sums.OrderRow(
        order.created_at,
        order.status.value,
        None if slippage is None else column(slippage, SLIPPAGE_PLACES),
    )


@dataclass
class StepFacts:
    """What one fold step changed that the daily statistics depend on.

    ``orders``: per key, the row stored under it before the step and after it (None: no row);
    ``latency_moves``: (filled_at, created_at before, created_at after) of every fill stored
    before the step whose order's ``created_at`` the step moved; ``fills``: the new fills with
    their order's ``created_at`` after the step (None: no order row, so not joined);
    ``pnl``: each new fill's time and realized P&L (unrounded)."""

    orders: dict[str, tuple[OrderState | None, OrderState | None]] = field(default_factory=dict)
    latency_moves: list[tuple[datetime, datetime, datetime]] = field(default_factory=list)
    fills: list[tuple[FillEvent, datetime | None]] = field(default_factory=list)
    pnl: list[tuple[datetime, Decimal]] = field(default_factory=list)


def stat_terms(facts: StepFacts, into: daily_sums.BatchSums | None = None) -> daily_sums.BatchSums:
    """The step's signed per-date terms (added to ``into`` when given): its order rows after
    (+) and before (-), its new fills and their P&L (+), and the latency of older fills of
    orders whose ``created_at`` moved (+ new, - old). Every date a term names is touched."""
    terms = into if into is not None else daily_sums.BatchSums()
    for before, after in facts.orders.values():
        if before is not None:
            terms.add_order(order_row(before), -1)
        if after is not None:
            terms.add_order(order_row(after), 1)
    for filled_at, old, new in facts.latency_moves:
        terms.add_latency(filled_at, new, 1)
        terms.add_latency(filled_at, old, -1)
    for fill, created_at in facts.fills:
        if created_at is None:  # the reference joins each fill to its order
            terms.touch(fill.timestamp)
            continue
        volume = fill_volume(fill)
        fees = column(fill.fees_usdt)
        terms.add_fill(fill.timestamp, created_at, volume, fees, fee_pct(fees, volume))
    for filled_at, realized in facts.pnl:
        terms.add_pnl(filled_at, column(realized))
    return terms


@dataclass
class SymbolTotals:
    """A symbol's round trips (counted by the sign of their stored realized P&L) and the
    ``sum(quantity * price)`` and ``sum(fees_usdt)`` of its fills, exact."""

    trades: int = 0
    winning: int = 0
    losing: int = 0
    volume: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)

    def add(self, other: SymbolTotals) -> None:
        self.trades += other.trades
        self.winning += other.winning
        self.losing += other.losing
        self.volume = _EXACT.add(self.volume, other.volume)
        self.fees = _EXACT.add(self.fees, other.fees)


def symbol_totals(
    fills: Iterable[FillEvent], trips: Iterable[accounting.ClosedTrip]
) -> dict[str, SymbolTotals]:
    """The contribution of new fills and the round trips they closed, per symbol."""
    totals: dict[str, SymbolTotals] = {}
    for fill in fills:
        t = totals.setdefault(fill.symbol, SymbolTotals())
        t.volume = _EXACT.add(t.volume, fill_volume(fill))
        t.fees = _EXACT.add(t.fees, column(fill.fees_usdt))
    for trip in trips:
        t = totals.setdefault(trip.symbol, SymbolTotals())
        realized = column(trip.realized_pnl)
        t.trades += 1
        t.winning += realized > 0
        t.losing += realized < 0
    return totals


@dataclass(frozen=True)
class PartValues:
    """The values of one ``paper_pnl_snapshot_parts`` row (its symbol and range aside)."""

    has_position: bool
    realized: Decimal
    unrealized: Decimal
    trades: int
    winning: int
    losing: int
    volume: Decimal
    fees: Decimal


def part_values(position: accounting.Position | None, totals: SymbolTotals | None) -> PartValues:
    """A symbol's part from its position (as ``paper_positions`` stores it; None: no row, so
    false, 0, 0) and its totals (None: no trips, no fills)."""
    t = totals or SymbolTotals()
    zero = Decimal(0)
    return PartValues(
        has_position=position is not None,
        realized=column(position.realized_pnl) if position is not None else zero,
        unrealized=column(position.unrealized_pnl) if position is not None else zero,
        trades=t.trades,
        winning=t.winning,
        losing=t.losing,
        volume=t.volume,
        fees=t.fees,
    )
