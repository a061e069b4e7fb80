"""The signed per-date terms one batch adds to ``paper_stats_sums`` (migration 005).

The daily statistics are averages and totals over orders (by the UTC date of ``created_at``),
fills and per-fill P&L rows (by the UTC date of ``filled_at``). ``paper_stats_sums`` keeps their
exact counts and NUMERIC sums per date; a batch adds, per date, its orders as they stand after
it and subtracts them as they stood before it, adds the fills and P&L rows it inserted, and
moves the latency of an order's older fills when the order's ``created_at`` moved (each fold
step computes its own terms, ``step_terms.stat_terms``; a batch merges them). The store then
derives the touched ``paper_trading_stats`` rows from the sums (``db/stats.py``).

Every value has the digits PostgreSQL stores or computes (``step_terms.py`` rounds the fold's
values as the columns store them and divides the fee % as ``numeric_div`` does), so each term is
what the reference SQL (``db/stats.py`` ``REAGGREGATE_STATS``) would see. Sums are exact (no
rounding context) and keep the scale PostgreSQL's ``sum()`` gives: the largest scale of its
terms, or 0 when there are none. Latency is computed here:
``extract(epoch FROM filled_at - created_at) * 1000`` for a fill within 24 hours of its order
(PostgreSQL's epoch of an interval is microseconds at scale 6, so the milliseconds have scale 6).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, ROUND_HALF_EVEN, Context, Decimal

FILLED_STATUSES = frozenset({"FILLED", "PARTIAL", "PARTIALLY_FILLED"})
PARTIAL_STATUSES = frozenset({"PARTIAL", "PARTIALLY_FILLED"})
LATENCY_WINDOW = timedelta(hours=24)

# Additions never round: a sum holds every digit of its terms, as NUMERIC does.
EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, rounding=ROUND_HALF_EVEN)
_EXACT = EXACT
_ZERO = Decimal(0)
_MS_PER_S = Decimal(1000)


def utc_date(moment: datetime) -> date:
    """``(moment AT TIME ZONE 'UTC')::date``."""
    return moment.astimezone(UTC).date()


def latency_ms(filled_at: datetime, created_at: datetime) -> Decimal | None:
    """Milliseconds from order to fill as PostgreSQL computes them, or None outside
    ``[created_at, created_at + 24 h)`` (not a latency: an older order, or a fill stamped
    before its order)."""
    gap = filled_at - created_at
    if gap < timedelta(0) or gap >= LATENCY_WINDOW:
        return None
    micros = (gap.days * 86_400 + gap.seconds) * 1_000_000 + gap.microseconds
    return _EXACT.multiply(Decimal(micros).scaleb(-6, _EXACT), _MS_PER_S)


@dataclass(frozen=True, slots=True)
class OrderRow:
    """An order row as the statistics see it."""

    created_at: datetime
    status: str
    slippage_pct: Decimal | None


@dataclass(slots=True)
class DaySums:
    """One date's signed delta; the field names are ``paper_stats_sums`` columns."""

    total_orders: int = 0
    filled_orders: int = 0
    partial_fills: int = 0
    rejected_orders: int = 0
    cancelled_orders: int = 0
    slippage_n: int = 0
    slippage_sum: Decimal = _ZERO
    fee_pct_n: int = 0
    fee_pct_sum: Decimal = _ZERO
    latency_n: int = 0
    latency_sum_ms: Decimal = _ZERO
    volume_usdt: Decimal = _ZERO
    fees_usdt: Decimal = _ZERO
    realized_pnl_usdt: Decimal = _ZERO

    def add(self, other: DaySums) -> None:
        """``other``'s terms added to these (exactly)."""
        for name in COLUMNS:
            mine, theirs = getattr(self, name), getattr(other, name)
            if isinstance(theirs, Decimal):
                setattr(self, name, _EXACT.add(mine, theirs))
            else:
                setattr(self, name, mine + theirs)

    def is_zero(self) -> bool:
        return all(getattr(self, f.name) == 0 for f in fields(self))


COLUMNS = tuple(f.name for f in fields(DaySums))


class BatchSums:
    """The terms of one batch, by date (see the module doc)."""

    def __init__(self) -> None:
        self._days: dict[date, DaySums] = {}

    def _day(self, moment: datetime) -> DaySums:
        day = utc_date(moment)
        sums = self._days.get(day)
        if sums is None:
            sums = self._days[day] = DaySums()
        return sums

    def touch(self, moment: datetime) -> None:
        """The date of ``moment`` is touched (its stats row is written) even without terms."""
        self._day(moment)

    def add_order(self, row: OrderRow, sign: int) -> None:
        """The order ``row`` counted (+1, as it stands now) or taken back (-1, as it was)."""
        day = self._day(row.created_at)
        day.total_orders += sign
        if row.status in FILLED_STATUSES:
            day.filled_orders += sign
        if row.status in PARTIAL_STATUSES:
            day.partial_fills += sign
        if row.status == "REJECTED":
            day.rejected_orders += sign
        if row.status == "CANCELLED":
            day.cancelled_orders += sign
        if row.slippage_pct is not None:
            day.slippage_n += sign
            day.slippage_sum = _EXACT.add(
                day.slippage_sum, _EXACT.multiply(Decimal(sign), row.slippage_pct)
            )

    def add_fill(
        self,
        filled_at: datetime,
        order_created_at: datetime,
        volume: Decimal | None,
        fees: Decimal | None,
        fee_pct: Decimal | None,
    ) -> None:
        """A fill inserted by the batch, with its order's ``created_at`` as it stands now."""
        day = self._day(filled_at)
        if volume is not None:
            day.volume_usdt = _EXACT.add(day.volume_usdt, volume)
        if fees is not None:
            day.fees_usdt = _EXACT.add(day.fees_usdt, fees)
        if fee_pct is not None:
            day.fee_pct_n += 1
            day.fee_pct_sum = _EXACT.add(day.fee_pct_sum, fee_pct)
        self.add_latency(filled_at, order_created_at, 1)

    def add_latency(self, filled_at: datetime, order_created_at: datetime, sign: int) -> None:
        """A fill's latency against ``order_created_at``, counted or taken back."""
        latency = latency_ms(filled_at, order_created_at)
        if latency is None:
            return
        day = self._day(filled_at)
        day.latency_n += sign
        day.latency_sum_ms = _EXACT.add(day.latency_sum_ms, _EXACT.multiply(Decimal(sign), latency))

    def add_pnl(self, filled_at: datetime, realized: Decimal | None) -> None:
        """A per-fill P&L row inserted by the batch."""
        day = self._day(filled_at)
        if realized is not None:
            day.realized_pnl_usdt = _EXACT.add(day.realized_pnl_usdt, realized)

    def dates(self) -> set[date]:
        """Every date a term named, whether or not its terms cancel out."""
        return set(self._days)

    def merge(self, other: BatchSums) -> None:
        """Add ``other``'s terms (and dates) to these."""
        for day, theirs in other._days.items():
            mine = self._days.get(day)
            if mine is None:
                mine = self._days[day] = DaySums()
            mine.add(theirs)

    def changed(self) -> dict[date, DaySums]:
        """The dates whose sums move, in date order (a date whose terms cancel out is left
        alone, as ``paper_stats_sums`` would not change)."""
        return {d: s for d, s in sorted(self._days.items()) if not s.is_zero()}
