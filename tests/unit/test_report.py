"""The pure parts of ``consumer/report.py``: durations and window ends, the three renderings,
the plot."""

from __future__ import annotations

import builtins
import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from consumer import performance, report
from consumer.errors import PaperConsumerError
from consumer.performance import INFINITY, Snapshot

SINCE = datetime(2026, 11, 13, tzinfo=UTC)
UNTIL = datetime(2026, 11, 20, tzinfo=UTC)


def line(symbol: str, **overrides) -> report.Line:
    base = {
        "position_quantity": D("0.5"), "realized_pnl_usdt": D("12.50000000"),
        "unrealized_pnl_usdt": D(-2), "total_pnl_usdt": D("10.5"),
        "window_realized_pnl_usdt": D("3.25"), "trades": 4, "winning_trades": 3,
        "losing_trades": 1, "win_rate": D("0.75"), "orders": 5, "filled_orders": 4,
        "fill_rate": D("0.8"), "avg_slippage_pct": D("0.012345"), "fills": 6,
        "volume_usdt": D("12345.6"), "fees_usdt": D("1.2"),
    }  # fmt: skip
    return report.Line(symbol=symbol, **{**base, **overrides})


def perf(**overrides) -> performance.Performance:
    base = {
        "curve_basis": "equity", "snapshots": 6, "curve_start_usdt": D(1000),
        "curve_end_usdt": D(1080), "window_return": D("0.08"), "max_drawdown_usdt": D(110),
        "max_drawdown_pct": D("0.1"), "drawdown_peak_at": SINCE + timedelta(hours=1),
        "drawdown_trough_at": SINCE + timedelta(hours=2),
        "drawdown_recovered_at": SINCE + timedelta(hours=4), "current_drawdown_usdt": D(40),
        "current_drawdown_pct": D("0.0357"), "trade_drawdown_usdt": D(12),
        "gross_profit_usdt": D(35), "gross_loss_usdt": D(-12),
        "avg_win_usdt": D("11.66666667"), "avg_loss_usdt": D(-4), "profit_factor": D("2.9167"),
        "expectancy_usdt": D("3.28571429"), "max_win_streak": 2, "max_loss_streak": 3,
        "avg_holding_s": D("4628.571"), "return_days": 4, "sharpe": D("5.5151"),
        "sortino": D("13.5093"), "gross_pnl_usdt": D(9), "fee_share": D("0.0356"),
    }  # fmt: skip
    return performance.Performance(**{**base, **overrides})


def sample() -> report.Report:
    quiet = line("ETHUSDT", win_rate=None, fill_rate=None, avg_slippage_pct=None, trades=0)
    quiet_perf = perf(
        curve_basis="pnl", max_drawdown_pct=None, current_drawdown_pct=None, window_return=None,
        profit_factor=None, sharpe=None, sortino=None, avg_win_usdt=None, avg_holding_s=None,
        fee_share=None,
    )  # fmt: skip
    return report.Report(
        since=SINCE,
        until=UNTIL,
        now=UNTIL,
        total_pnl_usdt=D("21.00000000"),
        account=line("ALL", total_pnl_usdt=D(21)),
        symbols=[line("BTCUSDT"), quiet],
        performance={"ALL": perf(), "BTCUSDT": perf(profit_factor=INFINITY), "ETHUSDT": quiet_perf},
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30m", timedelta(minutes=30)), ("24h", timedelta(hours=24)), ("7d", timedelta(days=7)),
     ("2w", timedelta(days=14)), (" 90D ", timedelta(days=90))],
)  # fmt: skip
def test_parse_duration(text, expected):
    assert report.parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "7", "0d", "-1d", "1y", "1.5d", "99999999999999d"])
def test_parse_duration_refuses(text):
    with pytest.raises(ValueError, match="duration"):
        report.parse_duration(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2026-11-20", datetime(2026, 11, 20, tzinfo=UTC)),
     ("2026-11-20T10:30", datetime(2026, 11, 20, 10, 30, tzinfo=UTC)),
     ("2026-11-20T10:30Z", datetime(2026, 11, 20, 10, 30, tzinfo=UTC)),
     ("2026-11-20T11:30+01:00", datetime(2026, 11, 20, 10, 30, tzinfo=UTC)),
     ("7d", timedelta(days=7))],
)  # fmt: skip
def test_parse_moment(text, expected):
    got = report.parse_moment(text)
    assert got == expected
    if isinstance(got, datetime):
        assert got.utcoffset() == timedelta(0)


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-01", "0d"])
def test_parse_moment_refuses(text):
    with pytest.raises(ValueError, match="ISO date"):
        report.parse_moment(text)


def test_resolve_counts_a_duration_back_from_now():
    assert report.resolve(timedelta(days=7), UNTIL) == SINCE
    assert report.resolve(SINCE, UNTIL) == SINCE
    assert report.resolve(None, UNTIL) is None


def test_table():
    text = report.render_table(sample())
    assert "2026-11-13 00:00 → 2026-11-20 00:00 UTC" in text
    assert "total P&L now        21.00 USDT" in text
    assert "75.00%  (3 winning, 1 losing of 4 closed round trips)" in text
    assert "80.00%  (4 of 5 orders)" in text
    assert "0.0123%" in text
    rows = text.splitlines()
    header = next(i for i, r in enumerate(rows) if r.startswith("symbol"))
    assert rows[header + 2].split() == ["BTCUSDT", "12.50", "-2.00", "10.50", "3.25", "4",
                                        "75.00%", "80.00%", "12,345.60", "1.20"]  # fmt: skip
    assert rows[header + 3].split()[6:8] == ["-", "-"]  # no trips, no orders: no rate


def test_table_performance_lines():
    rows = report.render_table(sample()).splitlines()
    assert (
        "equity curve         1,000.00 → 1,080.00 USDT, return 8.00%  (6 snapshots of equity)"
        in rows
    )
    assert (
        "max drawdown         110.00 USDT (10.00%)  peak 2026-11-13 01:00 → trough 2026-11-13"
        " 02:00, recovered 2026-11-13 04:00"
    ) in rows
    assert "current drawdown     40.00 USDT (3.57%)" in rows
    assert "profit factor        2.92  (won 35.00 / lost 12.00 USDT)" in rows
    assert "expectancy           3.29 USDT per round trip  (avg win 11.67, avg loss -4.00)" in rows
    assert "streaks              longest 2 winning, 3 losing in a row  (avg holding 1h 17m)" in rows
    assert "Sharpe / Sortino     5.52 / 13.51  (4 daily returns, annualised ×√365)" in rows
    assert "fees                 1.20 USDT = 3.56% of gross P&L 9.00 USDT" in rows
    header = next(i for i, r in enumerate(rows) if r.split()[:3] == ["symbol", "max", "DD"])
    assert rows[header + 2].split() == ["BTCUSDT", "110.00", "40.00", "12.00", "inf", "3.29",
                                        "11.67", "-4.00", "2/3", "1h", "17m", "5.52", "13.51",
                                        "3.56%"]  # fmt: skip
    assert rows[header + 3].split()[4] == "-"  # ETHUSDT: no profit factor


def test_table_without_snapshots_says_so():
    empty = perf(curve_basis=None, snapshots=0, max_drawdown_usdt=None)
    got = report.Report(SINCE, None, UNTIL, D(0), line("ALL"), [], {"ALL": empty})
    text = report.render_table(got)
    assert "P&L report  2026-11-13 00:00 → now (2026-11-20 00:00) UTC" in text
    assert "no snapshot in the window: no drawdown, Sharpe or Sortino" in text
    assert "max drawdown" not in text


def test_table_without_a_start_balance_says_there_is_no_percent():
    pnl = perf(curve_basis="pnl", window_return=None, max_drawdown_pct=None)
    got = report.Report(None, None, UNTIL, D(0), line("ALL"), [], {"ALL": pnl})
    text = report.render_table(got)
    assert "P&L report  all history → now (2026-11-20 00:00) UTC" in text
    assert "return -  (6 snapshots of total P&L, no start balance: no %)" in text
    assert "max drawdown         110.00 USDT (-)" in text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (D(12), "12s"), (D(250), "4m 10s"), (D(3900), "1h 05m"),
     (D(2 * 86400 + 3 * 3600 + 59), "2d 03h")],
)  # fmt: skip
def test_holding_times(seconds, text):
    assert report._held(seconds) == text


def test_table_without_symbols():
    empty = report.Report(SINCE, UNTIL, UNTIL, D(0), line("ALL"), [])
    assert report.render_table(empty).endswith("no symbols traded yet")


def test_json_keeps_decimals_exact():
    body = json.loads(report.render_json(sample()))
    assert body["total_pnl_usdt"] == "21"
    assert body["since"] == "2026-11-13T00:00:00+00:00"
    btc = body["symbols"][0]
    assert btc["realized_pnl_usdt"] == "12.5"
    assert btc["trades"] == 4
    assert body["symbols"][1]["win_rate"] is None
    assert body["until"] == "2026-11-20T00:00:00+00:00"
    assert body["generated_at"] == "2026-11-20T00:00:00+00:00"
    risk = body["account"]["performance"]
    assert set(risk) == set(performance.PERFORMANCE_FIELDS)
    assert risk["max_drawdown_usdt"] == "110"
    assert risk["drawdown_peak_at"] == "2026-11-13T01:00:00+00:00"
    assert risk["max_win_streak"] == 2
    assert risk["sharpe"] == "5.5151"
    assert body["symbols"][0]["performance"]["profit_factor"] == "Infinity"
    assert body["symbols"][1]["performance"]["sharpe"] is None


def test_json_of_an_open_window():
    got = report.Report(None, None, UNTIL, D(0), line("ALL"), [])
    body = json.loads(report.render_json(got))
    assert (body["since"], body["until"]) == (None, None)
    assert "performance" not in body["account"]


def test_csv_has_one_row_per_symbol_then_all():
    table = list(csv.reader(io.StringIO(report.render_csv(sample()))))
    assert table[0] == list(report.LINE_FIELDS + performance.PERFORMANCE_FIELDS)
    assert [r[0] for r in table[1:]] == ["BTCUSDT", "ETHUSDT", "ALL"]
    column = report.CSV_FIELDS.index
    assert table[1][column("volume_usdt")] == "12345.6"
    assert table[2][column("win_rate")] == ""
    assert table[1][column("profit_factor")] == "Infinity"
    assert table[2][column("sharpe")] == ""
    assert table[3][column("drawdown_recovered_at")] == "2026-11-13T04:00:00+00:00"
    assert table[3][column("avg_holding_s")] == "4628.571"


def test_plot_needs_matplotlib(monkeypatch, tmp_path):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    point = Snapshot(UNTIL, D(1), D(1), None, None, {"BTCUSDT": D(1)})
    with pytest.raises(report.PlotUnavailableError, match=r"paper-consumer\[plot\]"):
        report.draw([point], tmp_path / "x.png")


@pytest.mark.parametrize("start_balance", [None, D(1000)])
def test_plot_draws_a_png(tmp_path, start_balance):
    values = [D(v) for v in (0, 100, -10, 50, 120, 80)]
    points = [
        Snapshot(
            UNTIL + timedelta(hours=i),
            v,
            v / 2,
            None if start_balance is None else start_balance + v,
            None if start_balance is None else start_balance + v / 2,
            {"BTCUSDT": v, "ETHUSDT": -v},
        )
        for i, v in enumerate(values)
    ]
    out = tmp_path / "pnl.png"
    report.draw(points, out)
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_underwater_adds_the_points_where_the_curve_regains_its_peak():
    """1, 3, 2, 5, 4 an hour apart: from 2 (02:00) to 5 (03:00) the line passes the peak 3 a
    third of the way, at 02:20; the shaded area between curve and peak is then exact."""
    times = [UNTIL + timedelta(hours=i) for i in range(5)]
    got_t, got_v, peaks = report.underwater(times, [1.0, 3.0, 2.0, 5.0, 4.0])
    assert got_t == [*times[:3], UNTIL + timedelta(hours=2, minutes=20), *times[3:]]
    assert got_v == [1.0, 3.0, 2.0, 3.0, 5.0, 4.0]
    assert peaks == [1.0, 3.0, 3.0, 3.0, 5.0, 5.0]


def test_plot_without_snapshots_says_so(tmp_path):
    with pytest.raises(PaperConsumerError, match="no P&L snapshots"):
        report.draw([], tmp_path / "x.png")
