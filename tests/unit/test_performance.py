"""``consumer/performance.py`` against hand-computed worked examples (docs/report.md has them
too). Each test's docstring carries the arithmetic; a result is checked to the places the module
rounds to (fractions and ratios 4, averages of money 8, holding times 3)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D

import pytest

from consumer import performance as perf
from consumer.performance import INFINITY, Curve, Snapshot, Trip

T0 = datetime(2026, 11, 20, tzinfo=UTC)
H = timedelta(hours=1)
M = timedelta(minutes=1)


def at(hours: float) -> datetime:
    return T0 + hours * H


def curve(*values: str | int) -> list[tuple[datetime, D]]:
    """One point an hour from T0."""
    return [(at(i), D(v)) for i, v in enumerate(values)]


# --------------------------------------------------------------------------------------------
# Drawdown
# --------------------------------------------------------------------------------------------


def test_max_and_current_drawdown_of_an_equity_curve():
    """Equity 1000, 1100, 990, 1050, 1120, 1080 (hourly from 00:00).

    Running peak: 1000, 1100, 1100, 1100, 1120, 1120. Falls: 0, 0, 110, 50, 0, 40.
    Max: 110 USDT = 110 / 1100 = 10 %, from the peak at 01:00 to the trough at 02:00; back at
    or above 1100 first at 04:00 (1120). Current: 1120 − 1080 = 40 = 40 / 1120 = 3.5714… %.
    """
    got = perf.drawdown(curve(1000, 1100, 990, 1050, 1120, 1080), relative=True)
    assert got == perf.Drawdown(
        max_usdt=D(110),
        max_pct=D("0.1000"),
        peak_at=at(1),
        trough_at=at(2),
        recovered_at=at(4),
        current_usdt=D(40),
        current_pct=D("0.0357"),
    )


def test_drawdown_starts_when_the_curve_leaves_its_peak_and_ties_keep_the_first():
    """P&L 100, 100, 90, 100, 90: the peak is held at 00:00 and 01:00, so the fall starts at
    01:00; it is 10 twice (02:00 and 04:00): the first counts, recovered at 03:00. A P&L curve
    has no % (relative=False)."""
    got = perf.drawdown(curve(100, 100, 90, 100, 90), relative=False)
    assert got is not None
    assert (got.max_usdt, got.peak_at, got.trough_at, got.recovered_at) == (
        D(10), at(1), at(2), at(3),
    )  # fmt: skip
    assert (got.max_pct, got.current_usdt, got.current_pct) == (None, D(10), None)


def test_all_losses_never_recover():
    """Equity 1000, 900, 800: max = current = 200 = 20 % of 1000; no recovery."""
    got = perf.drawdown(curve(1000, 900, 800), relative=True)
    assert got == perf.Drawdown(D(200), D("0.2"), at(0), at(2), None, D(200), D("0.2"))


@pytest.mark.parametrize("values", [(1, 2, 3), (5,)])
def test_a_curve_that_never_falls_has_no_drawdown_episode(values):
    got = perf.drawdown(curve(*values), relative=True)
    assert got == perf.Drawdown(D(0), D(0), None, None, None, D(0), D(0))


def test_no_points_no_drawdown():
    assert perf.drawdown([], relative=True) is None


def test_percent_is_undefined_at_a_peak_of_zero_or_less():
    """P&L-like values on an equity curve (a blown account): peak 0 → no %."""
    got = perf.drawdown(curve(0, -5), relative=True)
    assert got is not None
    assert (got.max_usdt, got.max_pct) == (D(5), None)


# --------------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------------


def trips(*spec: tuple[str, int]) -> list[Trip]:
    """(P&L, minutes held), one closing every 5 hours."""
    out = []
    for i, (pnl, minutes) in enumerate(spec):
        closed = at(5 * (i + 1))
        out.append(Trip("BTCUSDT", closed - minutes * M, closed, D(pnl)))
    return out


def test_round_trip_statistics_worked_example():
    """P&L (held): +10 (60 m), +5 (30 m), −4 (120 m), 0 (10 m), −6 (20 m), −2 (60 m), +20 (240 m).

    Wins 10, 5, 20: gross 35, average 35 / 3 = 11.66666667. Losses −4, −6, −2: gross −12,
    average −4. Profit factor 35 / 12 = 2.9167. Expectancy (35 − 12) / 7 = 3.28571429.
    Streaks W W L 0 L L W: 2 wins; losses 1, then the 0 ends it, then 2 → 2.
    Holding (60+30+120+10+20+60+240) m = 540 m = 32,400 s / 7 = 4,628.571 s.
    Closed-trade curve from 0: 0, 10, 15, 11, 11, 5, 3, 23 → peak 15, trough 3: 12.
    """
    got = perf.trip_stats(
        trips(("10", 60), ("5", 30), ("-4", 120), ("0", 10), ("-6", 20), ("-2", 60), ("20", 240))
    )
    assert got == perf.TripStats(
        trades=7,
        wins=3,
        losses=3,
        gross_profit_usdt=D(35),
        gross_loss_usdt=D(-12),
        avg_win_usdt=D("11.66666667"),
        avg_loss_usdt=D(-4),
        profit_factor=D("2.9167"),
        expectancy_usdt=D("3.28571429"),
        max_win_streak=2,
        max_loss_streak=2,
        avg_holding_s=D("4628.571"),
        trade_drawdown_usdt=D(12),
    )


def test_no_round_trip():
    got = perf.trip_stats([])
    assert got == perf.TripStats(0, 0, 0, D(0), D(0), None, None, None, None, 0, 0, None, None)


def test_one_winning_round_trip():
    """+9.68 held 1 h: profit factor infinite (a win, no loss), expectancy 9.68, no drawdown
    (the closed-trade curve 0 → 9.68 never falls)."""
    got = perf.trip_stats(trips(("9.68", 60)))
    assert (got.trades, got.wins, got.losses) == (1, 1, 0)
    assert got.profit_factor == INFINITY
    assert (got.avg_win_usdt, got.avg_loss_usdt, got.expectancy_usdt) == (
        D("9.68"), None, D("9.68"),
    )  # fmt: skip
    assert (got.max_win_streak, got.max_loss_streak) == (1, 0)
    assert (got.avg_holding_s, got.trade_drawdown_usdt) == (D(3600), D(0))


def test_all_losing_round_trips():
    """−1, −2, −3: profit factor 0 / 6 = 0, expectancy −6 / 3 = −2, 3 losses in a row;
    the closed-trade curve 0, −1, −3, −6 falls 6 from its starting peak 0."""
    got = perf.trip_stats(trips(("-1", 10), ("-2", 20), ("-3", 30)))
    assert got.profit_factor == 0
    assert (got.avg_win_usdt, got.avg_loss_usdt, got.expectancy_usdt) == (None, D(-2), D(-2))
    assert (got.max_win_streak, got.max_loss_streak) == (0, 3)
    assert (got.avg_holding_s, got.trade_drawdown_usdt) == (D(1200), D(6))


def test_breakeven_round_trips_only_have_no_profit_factor():
    got = perf.trip_stats(trips(("0", 5), ("0", 5)))
    assert (got.wins, got.losses, got.profit_factor, got.expectancy_usdt) == (0, 0, None, D(0))


# --------------------------------------------------------------------------------------------
# Daily returns, Sharpe, Sortino
# --------------------------------------------------------------------------------------------


def test_daily_closes_midnight_closes_the_day_before_and_gaps_keep_the_last_close():
    """Snapshots 11-20 12:00 → 990, 11-21 00:00 → 1000 (closes 11-20), 11-21 06:00 → 1030,
    11-23 18:00 → 1040. Days: 11-20 1000; 11-21 1030; 11-22 none → 1030; 11-23 1040."""
    points = [
        (at(12), D(990)),
        (at(24), D(1000)),
        (at(30), D(1030)),
        (at(3 * 24 + 18), D(1040)),
    ]
    assert perf.daily_closes(points) == [
        (date(2026, 11, 20), D(1000)),
        (date(2026, 11, 21), D(1030)),
        (date(2026, 11, 22), D(1030)),
        (date(2026, 11, 23), D(1040)),
    ]
    assert perf.daily_closes([]) == []


CLOSES = [D(1000), D(1020), D("1009.8"), D("1029.996"), D("1019.69604")]
"""Equity at five midnights: daily returns +2 %, −1 %, +2 %, −1 % exactly."""


def midnight_curve(values: list[D]) -> list[tuple[datetime, D]]:
    return [(at(24 * (i + 1)), v) for i, v in enumerate(values)]


def test_sharpe_and_sortino_worked_example():
    """r = 0.02, −0.01, 0.02, −0.01 (closes 1000, 1020, 1009.8, 1029.996, 1019.69604).

    mean = 0.02 / 4 = 0.005. Sample variance: deviations ±0.015, Σ squares 4 × 0.000225 =
    0.0009, / (4 − 1) = 0.0003; stdev = √0.0003 = 0.017320508.
    Sharpe = 0.005 / 0.017320508 × √365 = 0.288675135 × 19.104973174 = 5.5151.
    Downside: min(r, 0) = 0, −0.01, 0, −0.01; mean of squares 0.0002 / 4 = 0.00005;
    DD = √0.00005 = 0.007071068. Sortino = 0.005 / 0.007071068 × √365 = 0.707106781 ×
    19.104973174 = 13.5093.
    """
    returns = perf.daily_returns(perf.daily_closes(midnight_curve(CLOSES)))
    assert returns == [D("0.02"), D("-0.01"), D("0.02"), D("-0.01")]
    assert perf.sharpe(returns) == D("5.5151")
    assert perf.sortino(returns) == D("13.5093")


def test_contribution_returns_of_a_symbol():
    """Account equity closes 1000, 1020, 1009.8; BTC P&L closes 0, 30, 10.
    r = (30 − 0) / 1000 = 0.03, (10 − 30) / 1020 = −0.0196078…

    mean = (0.03 − 0.019607843) / 2 = 0.005196078; sample stdev = |0.03 + 0.019607843| / √2
    = 0.035078042; Sharpe = 0.005196078 / 0.035078042 × 19.104973174 = 2.8300.
    DD = √(0.019607843² / 2) = 0.013864839; Sortino = 0.005196078 / 0.013864839 ×
    19.104973174 = 7.1599.
    """
    base = perf.daily_closes(midnight_curve(CLOSES[:3]))
    btc = perf.daily_closes(midnight_curve([D(0), D(30), D(10)]))
    returns = perf.daily_returns(btc, base)
    assert returns[0] == D("0.03")
    assert returns[1].quantize(D("1e-9")) == D("-0.019607843")
    assert (perf.sharpe(returns), perf.sortino(returns)) == (D("2.8300"), D("7.1599"))
    with pytest.raises(ValueError, match="same days"):
        perf.daily_returns(btc, base[:2])


def test_ratios_need_two_returns_and_some_variation():
    assert perf.sharpe([]) is None
    assert perf.sharpe([D("0.01")]) is None
    assert perf.sortino([D("0.01")]) is None
    assert perf.sharpe([D("0.01"), D("0.01")]) is None  # stdev 0
    assert perf.sortino([D("0.01"), D("0.01")]) == INFINITY  # no losing day, mean > 0
    assert perf.sortino([D(0), D(0)]) is None


def test_a_return_needs_a_positive_previous_close():
    closes = [(date(2026, 11, d), v) for d, v in ((20, D(0)), (21, D(10)), (22, D(11)))]
    assert perf.daily_returns(closes) == [D("0.1")]


# --------------------------------------------------------------------------------------------
# evaluate: one symbol or the account
# --------------------------------------------------------------------------------------------


def snapshot(moment: datetime, equity: D | None, pnl: D, **per_symbol: D) -> Snapshot:
    balance = None if equity is None else equity
    return Snapshot(moment, pnl, pnl, equity, balance, per_symbol)


def test_account_curve_is_equity_only_when_every_point_has_it():
    with_equity = [snapshot(at(1), D(1000), D(0)), snapshot(at(2), D(1010), D(10))]
    assert perf.account_curve(with_equity) == Curve("equity", [(at(1), D(1000)), (at(2), D(1010))])
    mixed = [snapshot(at(1), None, D(0)), snapshot(at(2), D(1010), D(10))]
    assert perf.account_curve(mixed) == Curve("pnl", [(at(1), D(0)), (at(2), D(10))])
    assert perf.account_curve([]) is None


def test_symbol_curve_counts_an_absent_symbol_as_zero():
    points = [snapshot(at(1), None, D(0)), snapshot(at(2), None, D(5), BTCUSDT=D(5))]
    assert perf.symbol_curve(points, "BTCUSDT") == Curve("pnl", [(at(1), D(0)), (at(2), D(5))])
    assert perf.symbol_curve([], "BTCUSDT") is None


def test_evaluate_the_account_on_equity():
    """The Sharpe example's closes as the curve; one trip +20; fills in the window: realized
    8.68 after 0.32 fees → gross 9.00, fee share 0.32 / 9 = 3.56 %; return 1019.69604 / 1000
    − 1 = 1.97 %; max drawdown 1029.996 → 1019.69604 = 10.29996 (1.00 %), after the first
    fall 1020 → 1009.8 = 10.2 (1.00 %) — the larger one counts."""
    account = Curve("equity", midnight_curve(CLOSES))
    got = perf.evaluate(
        account,
        trips(("20", 60)),
        fees_usdt=D("0.32"),
        window_realized_usdt=D("8.68"),
    )
    assert (got.curve_basis, got.snapshots, got.window_return) == ("equity", 5, D("0.0197"))
    assert (got.curve_start_usdt, got.curve_end_usdt) == (D(1000), D("1019.69604"))
    assert (got.max_drawdown_usdt, got.max_drawdown_pct) == (D("10.29996"), D("0.0100"))
    assert (got.drawdown_peak_at, got.drawdown_trough_at) == (at(4 * 24), at(5 * 24))
    assert got.drawdown_recovered_at is None
    assert (got.return_days, got.sharpe, got.sortino) == (4, D("5.5151"), D("13.5093"))
    assert (got.gross_pnl_usdt, got.fee_share) == (D(9), D("0.0356"))
    assert (got.profit_factor, got.expectancy_usdt, got.trade_drawdown_usdt) == (
        INFINITY, D(20), D(0),
    )  # fmt: skip


def test_evaluate_without_a_start_balance_has_no_percent_and_no_returns():
    account = Curve("pnl", midnight_curve([D(0), D(20), D("9.8")]))
    got = perf.evaluate(account, [], fees_usdt=D(0), window_realized_usdt=D(0))
    assert (got.max_drawdown_usdt, got.max_drawdown_pct) == (D("10.2"), None)
    assert (got.window_return, got.return_days, got.sharpe, got.sortino) == (None, 0, None, None)
    assert got.fee_share is None  # gross P&L 0


def test_evaluate_a_window_without_snapshots():
    got = perf.evaluate(None, [], fees_usdt=D(0), window_realized_usdt=D(0))
    assert got.curve_basis is None
    assert got.snapshots == 0
    assert got.max_drawdown_usdt is None
    assert got.current_drawdown_usdt is None
    assert (got.return_days, got.sharpe) == (0, None)


def test_fee_share_is_undefined_without_a_gross_profit():
    """Realized −0.5 after 0.5 fees: gross 0 → undefined; realized −1 after 0.5: gross −0.5."""
    assert perf.fee_share(D("0.5"), D(0)) is None
    assert perf.fee_share(D("0.5"), D("-0.5")) is None
    assert perf.fee_share(D("0.5"), D(2)) == D("0.25")
