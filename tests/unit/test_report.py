"""The pure parts of ``consumer/report.py``: durations, the three renderings, the plot."""

from __future__ import annotations

import builtins
import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from consumer import report
from consumer.errors import PaperConsumerError

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


def sample() -> report.Report:
    quiet = line("ETHUSDT", win_rate=None, fill_rate=None, avg_slippage_pct=None, trades=0)
    return report.Report(
        since=SINCE,
        until=UNTIL,
        total_pnl_usdt=D("21.00000000"),
        account=line("ALL", total_pnl_usdt=D(21)),
        symbols=[line("BTCUSDT"), quiet],
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


def test_table_without_symbols():
    empty = report.Report(SINCE, UNTIL, D(0), line("ALL"), [])
    assert report.render_table(empty).endswith("no symbols traded yet")


def test_json_keeps_decimals_exact():
    body = json.loads(report.render_json(sample()))
    assert body["total_pnl_usdt"] == "21"
    assert body["since"] == "2026-11-13T00:00:00+00:00"
    btc = body["symbols"][0]
    assert btc["realized_pnl_usdt"] == "12.5"
    assert btc["trades"] == 4
    assert body["symbols"][1]["win_rate"] is None


def test_csv_has_one_row_per_symbol_then_all():
    table = list(csv.reader(io.StringIO(report.render_csv(sample()))))
    assert table[0] == list(report.LINE_FIELDS)
    assert [r[0] for r in table[1:]] == ["BTCUSDT", "ETHUSDT", "ALL"]
    assert table[1][report.LINE_FIELDS.index("volume_usdt")] == "12345.6"
    assert table[2][report.LINE_FIELDS.index("win_rate")] == ""


def test_plot_needs_matplotlib(monkeypatch, tmp_path):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    point = report.Point(UNTIL, D(1), D(1), {"BTCUSDT": D(1)})
    with pytest.raises(report.PlotUnavailableError, match=r"paper-consumer\[plot\]"):
        report.draw([point], tmp_path / "x.png")


def test_plot_draws_a_png(tmp_path):
    points = [
        report.Point(
            UNTIL + timedelta(hours=i), D(i), D(i // 2), {"BTCUSDT": D(i), "ETHUSDT": D(-i)}
        )
        for i in range(5)
    ]
    out = tmp_path / "pnl.png"
    report.draw(points, out)
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_plot_without_snapshots_says_so(tmp_path):
    with pytest.raises(PaperConsumerError, match="no P&L snapshots"):
        report.draw([], tmp_path / "x.png")
