"""Risk and trade statistics of a report window: drawdown, round trips, Sharpe, Sortino. Pure.

No I/O and no clock: ``report.py`` hands in the stored rows of the window (snapshots and closed
round trips, read by ``db/report_queries.py``) and gets back one ``Performance`` per symbol and one
for the account. The definitions are ``DEFINITIONS`` below (also the ``report --help`` epilog and
docs/report.md, where the worked examples are). Money stays ``Decimal``; ratios and fractions are
rounded to 4 places, averages of money to 8, holding times to the millisecond.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Literal

DAYS_PER_YEAR = 365
"""Crypto trades every day of the year: daily ratios are annualised with √365, not √252."""

INFINITY = Decimal("Infinity")
_RATIO = Decimal("0.0001")
_MONEY = Decimal("0.00000001")
_MILLIS = Decimal("0.001")
_ONE_MICROSECOND = timedelta(microseconds=1)

DEFINITIONS = f"""\
Window: --since and --until (a duration back from now such as 7d, or an ISO date or time, UTC
when no offset is given); default all history. Every time column is compared with
since <= t < until. "P&L now" (realized, unrealized, total, position) is the state now.

Equity curve: the snapshots in the window (paper_pnl_snapshots; one point per snapshot time),
equity_usdt = start balance + realized + unrealized. When a point has no equity (no
PAPER_START_BALANCE_USDT), the curve is total_pnl_usdt and every % figure and daily return is
undefined ("-"). Per symbol the curve is symbol_pnl[symbol].pnl (0 before the symbol's first
position); per-symbol % drawdowns are undefined (a symbol has no capital of its own).
Max drawdown: the largest fall of the curve from its running peak (the first one if tied), in
USDT and as a fraction of that peak; its start is the last time the curve stood at the peak,
its trough the lowest point, its recovery the first later point back at or above the peak
(none: not recovered). Current drawdown: running peak minus the last point. The curve starts
at the first snapshot of the window. Closed-trade drawdown: the same on the cumulative P&L of
the round trips closed in the window, starting from 0 (closed trades only, as in
freqtrade's backtest report).
Round trips (paper_round_trips, closed in the window, in closed_at order): a win has P&L > 0,
a loss < 0 (fees included), a zero one neither and it ends both streaks; average win / loss are
the mean P&L of the wins / losses; profit factor = gross wins / |gross losses| ("inf" when
there are wins but no loss, "-" without wins or losses); expectancy = mean P&L per round trip;
holding time = closed_at - opened_at.
Daily returns: the close of UTC day D is the last snapshot in (D 00:00, D+1 00:00] (the
midnight DAILY snapshot is the state at the end of D); a day without a snapshot keeps the
previous close; r_D = close_D / close_(D-1) - 1. Per symbol, r_D = (pnl_D - pnl_(D-1)) /
account equity close_(D-1) (its contribution to the account's return).
Sharpe = mean(r) / stdev(r) * sqrt({DAYS_PER_YEAR}) (sample stdev, n - 1; rf = 0; at least 2
daily returns). Sortino = mean(r) / DD * sqrt({DAYS_PER_YEAR}), DD = sqrt(mean(min(r, 0)^2))
over all days ("inf" when no day lost and mean > 0). {DAYS_PER_YEAR} days a year: crypto trades
every day.
Fees: the fees of the fills in the window; gross P&L = realized P&L of those fills + their fees
(before fees); fee share = fees / gross P&L, undefined when gross P&L <= 0.
"""


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """One point of the stored P&L history (one per snapshot time)."""

    time: datetime
    total_pnl: Decimal
    realized_pnl: Decimal
    equity: Decimal | None
    balance: Decimal | None
    per_symbol: Mapping[str, Decimal]


@dataclass(frozen=True)
class Trip:
    """One closed round trip; ``pnl`` is its realized P&L, fees included."""

    symbol: str
    opened_at: datetime
    closed_at: datetime
    pnl: Decimal


Point = tuple[datetime, Decimal]
Basis = Literal["equity", "pnl"]


@dataclass(frozen=True)
class Curve:
    basis: Basis
    points: Sequence[Point]


def account_curve(snapshots: Sequence[Snapshot]) -> Curve | None:
    """Equity when every point has it, else total P&L; None without snapshots."""
    if not snapshots:
        return None
    equity = [(s.time, s.equity) for s in snapshots if s.equity is not None]
    if len(equity) == len(snapshots):
        return Curve("equity", equity)
    return Curve("pnl", [(s.time, s.total_pnl) for s in snapshots])


def symbol_curve(snapshots: Sequence[Snapshot], symbol: str) -> Curve | None:
    """The symbol's total P&L at each snapshot (0 where it is absent); None without snapshots."""
    if not snapshots:
        return None
    return Curve("pnl", [(s.time, s.per_symbol.get(symbol, Decimal(0))) for s in snapshots])


# --------------------------------------------------------------------------------------------
# Drawdown
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Drawdown:
    """Max and current drawdown of a curve (``*_pct``: fractions of the peak, or None)."""

    max_usdt: Decimal
    max_pct: Decimal | None
    peak_at: datetime | None  # None: the curve never fell
    trough_at: datetime | None
    recovered_at: datetime | None  # None: not (yet) back at the peak, or never fell
    current_usdt: Decimal
    current_pct: Decimal | None


def _fraction(part: Decimal, whole: Decimal) -> Decimal | None:
    return (part / whole).quantize(_RATIO) if whole > 0 else None


def drawdown(points: Sequence[Point], *, relative: bool) -> Drawdown | None:
    """See ``DEFINITIONS``; ``relative``: the curve is equity, so % of the peak is defined."""
    if not points:
        return None
    peak_at, peak = points[0]
    worst = Decimal(0)
    worst_peak = peak
    worst_from: datetime | None = None
    worst_at: datetime | None = None
    worst_index = 0
    for index, (moment, value) in enumerate(points):
        if value >= peak:  # the episode starts the last time the curve stands at its peak
            peak_at, peak = moment, value
        if peak - value > worst:
            worst, worst_peak, worst_from, worst_at = peak - value, peak, peak_at, moment
            worst_index = index
    recovered_at = None
    if worst_at is not None:
        recovered_at = next((t for t, v in points[worst_index + 1 :] if v >= worst_peak), None)
    current = peak - points[-1][1]
    return Drawdown(
        max_usdt=worst,
        max_pct=_fraction(worst, worst_peak) if relative else None,
        peak_at=worst_from,
        trough_at=worst_at,
        recovered_at=recovered_at,
        current_usdt=current,
        current_pct=_fraction(current, peak) if relative else None,
    )


def max_fall(values: Sequence[Decimal]) -> Decimal:
    """The largest fall from a running peak of ``values`` (0 when they never fall)."""
    peak: Decimal | None = None
    worst = Decimal(0)
    for value in values:
        peak = value if peak is None or value > peak else peak
        worst = max(worst, peak - value)
    return worst


# --------------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TripStats:
    trades: int
    wins: int
    losses: int
    gross_profit_usdt: Decimal
    gross_loss_usdt: Decimal  # ≤ 0
    avg_win_usdt: Decimal | None
    avg_loss_usdt: Decimal | None  # < 0
    profit_factor: Decimal | None  # INFINITY: wins and no loss
    expectancy_usdt: Decimal | None
    max_win_streak: int
    max_loss_streak: int
    avg_holding_s: Decimal | None
    trade_drawdown_usdt: Decimal | None


def _mean(values: Sequence[Decimal], quantum: Decimal) -> Decimal | None:
    return (sum(values, Decimal(0)) / len(values)).quantize(quantum) if values else None


def _longest(outcomes: Sequence[int], sign: int) -> int:
    longest = run = 0
    for outcome in outcomes:
        run = run + 1 if outcome == sign else 0
        longest = max(longest, run)
    return longest


def trip_stats(trips: Sequence[Trip]) -> TripStats:
    """Statistics of ``trips``, which must be in closed_at order (see ``DEFINITIONS``)."""
    pnls = [t.pnl for t in trips]
    wins = [p for p in pnls if p > 0]
    losses = [p for p in pnls if p < 0]
    gross_profit = sum(wins, Decimal(0))
    gross_loss = sum(losses, Decimal(0))
    if losses:
        profit_factor: Decimal | None = (gross_profit / -gross_loss).quantize(_RATIO)
    else:
        profit_factor = INFINITY if wins else None
    holding = [Decimal((t.closed_at - t.opened_at) // _ONE_MICROSECOND) / 1_000_000 for t in trips]
    cumulative: list[Decimal] = [Decimal(0)]
    for pnl in pnls:
        cumulative.append(cumulative[-1] + pnl)
    outcomes = [(p > 0) - (p < 0) for p in pnls]
    return TripStats(
        trades=len(trips),
        wins=len(wins),
        losses=len(losses),
        gross_profit_usdt=gross_profit,
        gross_loss_usdt=gross_loss,
        avg_win_usdt=_mean(wins, _MONEY),
        avg_loss_usdt=_mean(losses, _MONEY),
        profit_factor=profit_factor,
        expectancy_usdt=_mean(pnls, _MONEY),
        max_win_streak=_longest(outcomes, 1),
        max_loss_streak=_longest(outcomes, -1),
        avg_holding_s=_mean(holding, _MILLIS),
        trade_drawdown_usdt=max_fall(cumulative) if trips else None,
    )


# --------------------------------------------------------------------------------------------
# Daily returns, Sharpe, Sortino
# --------------------------------------------------------------------------------------------


def _day_of(moment: datetime) -> date:
    """The UTC day a snapshot closes: one at 00:00 exactly is the state at the end of the day
    before (``moment`` is timezone-aware; PostgreSQL returns UTC for timestamptz)."""
    return (moment - _ONE_MICROSECOND).date()


def daily_closes(points: Sequence[Point]) -> list[tuple[date, Decimal]]:
    """One close per UTC day from the first to the last day with a point (gaps: the previous
    close). ``points`` are in time order."""
    last: dict[date, Decimal] = {}
    for moment, value in points:
        last[_day_of(moment)] = value
    if not last:
        return []
    days = sorted(last)
    closes: list[tuple[date, Decimal]] = []
    day = days[0]
    while day <= days[-1]:
        closes.append((day, last.get(day, closes[-1][1] if closes else Decimal(0))))
        day += timedelta(days=1)
    return closes


def daily_returns(
    closes: Sequence[tuple[date, Decimal]], base: Sequence[tuple[date, Decimal]] | None = None
) -> list[Decimal]:
    """``(c_D - c_(D-1)) / b_(D-1)`` with ``b`` = ``base`` (same days) or ``closes`` itself;
    a day after a base close ≤ 0 has no return."""
    base = closes if base is None else base
    if [d for d, _ in base] != [d for d, _ in closes]:
        raise ValueError("daily_returns: closes and base must cover the same days")
    return [
        (value - closes[i - 1][1]) / base[i - 1][1]
        for i, (_, value) in enumerate(closes)
        if i > 0 and base[i - 1][1] > 0
    ]


def sharpe(returns: Sequence[Decimal]) -> Decimal | None:
    """mean / sample stdev × √365; None with fewer than 2 returns or no variation."""
    if len(returns) < 2:
        return None
    mean = sum(returns, Decimal(0)) / len(returns)
    variance = sum(((r - mean) ** 2 for r in returns), Decimal(0)) / (len(returns) - 1)
    if variance == 0:
        return None
    return (mean / variance.sqrt() * Decimal(DAYS_PER_YEAR).sqrt()).quantize(_RATIO)


def sortino(returns: Sequence[Decimal]) -> Decimal | None:
    """mean / √mean(min(r, 0)²) × √365; INFINITY when no day lost and the mean is positive."""
    if len(returns) < 2:
        return None
    mean = sum(returns, Decimal(0)) / len(returns)
    downside = sum((min(r, Decimal(0)) ** 2 for r in returns), Decimal(0)) / len(returns)
    if downside == 0:
        return INFINITY if mean > 0 else None
    return (mean / downside.sqrt() * Decimal(DAYS_PER_YEAR).sqrt()).quantize(_RATIO)


# --------------------------------------------------------------------------------------------
# One symbol or the account
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Performance:
    """Everything the report adds per symbol and for the account (``ALL``)."""

    curve_basis: Basis | None  # None: no snapshot in the window
    snapshots: int
    curve_start_usdt: Decimal | None
    curve_end_usdt: Decimal | None
    window_return: Decimal | None
    max_drawdown_usdt: Decimal | None
    max_drawdown_pct: Decimal | None
    drawdown_peak_at: datetime | None
    drawdown_trough_at: datetime | None
    drawdown_recovered_at: datetime | None
    current_drawdown_usdt: Decimal | None
    current_drawdown_pct: Decimal | None
    trade_drawdown_usdt: Decimal | None
    gross_profit_usdt: Decimal
    gross_loss_usdt: Decimal
    avg_win_usdt: Decimal | None
    avg_loss_usdt: Decimal | None
    profit_factor: Decimal | None
    expectancy_usdt: Decimal | None
    max_win_streak: int
    max_loss_streak: int
    avg_holding_s: Decimal | None
    return_days: int
    sharpe: Decimal | None
    sortino: Decimal | None
    gross_pnl_usdt: Decimal
    fee_share: Decimal | None


PERFORMANCE_FIELDS = tuple(Performance.__dataclass_fields__)


def fee_share(fees: Decimal, gross: Decimal) -> Decimal | None:
    return _fraction(fees, gross)


def evaluate(
    curve: Curve | None,
    trips: Sequence[Trip],
    *,
    fees_usdt: Decimal,
    window_realized_usdt: Decimal,
    return_base: Curve | None = None,
) -> Performance:
    """The performance of one curve and its round trips. ``return_base``: the account's equity
    curve, for a symbol's contribution returns (None: the curve's own returns when it is equity,
    none when it is P&L)."""
    points = curve.points if curve else []
    relative = curve is not None and curve.basis == "equity"
    dd = drawdown(points, relative=relative)
    stats = trip_stats(trips)
    if return_base is not None and return_base.basis == "equity":
        returns = daily_returns(daily_closes(points), daily_closes(return_base.points))
    elif relative:
        returns = daily_returns(daily_closes(points))
    else:
        returns = []
    start = points[0][1] if points else None
    end = points[-1][1] if points else None
    gross = window_realized_usdt + fees_usdt
    return Performance(
        curve_basis=curve.basis if curve else None,
        snapshots=len(points),
        curve_start_usdt=start,
        curve_end_usdt=end,
        window_return=(
            _fraction(end - start, start)
            if relative and start is not None and end is not None
            else None
        ),
        max_drawdown_usdt=dd.max_usdt if dd else None,
        max_drawdown_pct=dd.max_pct if dd else None,
        drawdown_peak_at=dd.peak_at if dd else None,
        drawdown_trough_at=dd.trough_at if dd else None,
        drawdown_recovered_at=dd.recovered_at if dd else None,
        current_drawdown_usdt=dd.current_usdt if dd else None,
        current_drawdown_pct=dd.current_pct if dd else None,
        trade_drawdown_usdt=stats.trade_drawdown_usdt,
        gross_profit_usdt=stats.gross_profit_usdt,
        gross_loss_usdt=stats.gross_loss_usdt,
        avg_win_usdt=stats.avg_win_usdt,
        avg_loss_usdt=stats.avg_loss_usdt,
        profit_factor=stats.profit_factor,
        expectancy_usdt=stats.expectancy_usdt,
        max_win_streak=stats.max_win_streak,
        max_loss_streak=stats.max_loss_streak,
        avg_holding_s=stats.avg_holding_s,
        return_days=len(returns),
        sharpe=sharpe(returns),
        sortino=sortino(returns),
        gross_pnl_usdt=gross,
        fee_share=fee_share(fees_usdt, gross),
    )
