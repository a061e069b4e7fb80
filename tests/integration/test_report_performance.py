"""``paper-consumer report``'s drawdown, round-trip statistics, Sharpe, Sortino and fees on real
PostgreSQL tables seeded by hand, through the command's table, JSON and CSV output.

The worked book (start balance 1000; docs/report.md walks through the same numbers):

Snapshots (equity = 1000 + total P&L; symbol_pnl BTC / ETH):

    11-19 12:00  MANUAL  1500         (before every window below)
    11-20 00:00  HOURLY+DAILY 1000    BTC 0,  ETH 0       closes 11-19
    11-21 00:00  HOURLY+DAILY 1020    BTC 30, ETH −10     closes 11-20
    11-22 00:00  DAILY   1009.8       BTC 30, ETH −20.2   closes 11-21
    11-22 12:00  HOURLY  990          BTC 10, ETH −20
    11-23 00:00  DAILY   1029.996     BTC 50, ETH −20.004 closes 11-22
    11-24 00:00  DAILY   1019.69604   BTC 40, ETH −20.30396 closes 11-23
    11-25 06:00  MANUAL  3000         (after the window)

Round trips (opened → closed, P&L):

    BTC  11-19 08:00 → 11-19 10:00  +100   (before the window)
    BTC  11-20 01:00 → 11-20 03:00  +30
    ETH  11-20 04:00 → 11-20 20:00  −10
    ETH  11-21 02:00 → 11-21 06:00  −10.2
    BTC  11-22 01:00 → 11-22 11:00  −20
    BTC  11-22 13:00 → 11-22 23:00  +40
    ETH  11-25 00:00 → 11-25 01:00  −50    (after the window)

Fills in the window: BTC 1 @ 100, fee 0.5, realized +29.5; ETH 1 @ 50, fee 0.5, realized −10.5.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import psycopg
import pytest
from psycopg.types.json import Jsonb

from consumer import cli, report
from tests.support.feed import Feed
from tests.support.pipeline import run_until_idle

START = datetime(2026, 11, 20, tzinfo=UTC)
H = timedelta(hours=1)
DAY = 24 * H
WINDOW = ["--since", "2026-11-20", "--until", "2026-11-25"]

INSERT_SNAPSHOT = """
INSERT INTO paper_pnl_snapshots (snapshot_time, snapshot_type, total_pnl_usdt,
    realized_pnl_usdt, unrealized_pnl_usdt, balance_usdt, equity_usdt, symbol_pnl)
VALUES (%s, %s, %s, %s, 0, %s, %s, %s)
"""
INSERT_TRIP = """
INSERT INTO paper_round_trips (closing_fill_id, symbol, direction, opened_at, closed_at,
    quantity, max_quantity, entry_avg_price, exit_avg_price, realized_pnl_usdt, fees_usdt,
    fills, close_reason)
VALUES (%s, %s, 'LONG', %s, %s, 1, 1, 100, 100, %s, 0, 2, 'FLAT')
"""
INSERT_ORDER = """
INSERT INTO paper_orders (order_id, symbol, side, quantity, filled_quantity, filled_price,
    status, fees_usdt, created_at, filled_at)
VALUES (%s, %s, 'BUY', 1, 1, %s, 'FILLED', %s, %s, %s)
"""
INSERT_FILL = """
INSERT INTO paper_fills (fill_id, order_id, symbol, quantity, price, fees_usdt, filled_at)
VALUES (%s, %s, %s, 1, %s, %s, %s)
"""
INSERT_FILL_PNL = """
INSERT INTO paper_fill_pnl (fill_id, symbol, filled_at, realized_pnl_usdt, position_quantity)
VALUES (%s, %s, %s, %s, 0)
"""


def seed_snapshot(conn, moment, kind, equity, start_balance="1000", **per_symbol):
    total = D(equity) - D(start_balance) if start_balance is not None else D(equity)
    body = {symbol: {"pnl": str(pnl)} for symbol, pnl in per_symbol.items()}
    has_balance = start_balance is not None
    conn.execute(
        INSERT_SNAPSHOT,
        (moment, kind, total, total, D(start_balance) + total if has_balance else None,
         D(equity) if has_balance else None, Jsonb(body)),
    )  # fmt: skip


def seed_trip(conn, trip_id, symbol, opened, closed, pnl):  # noqa: PLR0917 - a trip's fields
    conn.execute(INSERT_TRIP, (trip_id, symbol, opened, closed, D(pnl)))


def seed_fill(conn, fill_id, symbol, price, fee, realized, moment):  # noqa: PLR0917
    conn.execute(INSERT_ORDER, (fill_id, symbol, D(price), D(fee), moment, moment))
    conn.execute(INSERT_FILL, (fill_id, fill_id, symbol, D(price), D(fee), moment))
    conn.execute(INSERT_FILL_PNL, (fill_id, symbol, moment, D(realized)))


@pytest.fixture
def worked(db_url):
    d = START
    with psycopg.connect(db_url) as conn:
        seed_snapshot(conn, d - 12 * H, "MANUAL", "1500")
        for kind in ("HOURLY", "DAILY"):
            seed_snapshot(conn, d, kind, "1000")
            seed_snapshot(conn, d + DAY, kind, "1020", BTCUSDT="30", ETHUSDT="-10")
        seed_snapshot(conn, d + 2 * DAY, "DAILY", "1009.8", BTCUSDT="30", ETHUSDT="-20.2")
        seed_snapshot(conn, d + 2 * DAY + 12 * H, "HOURLY", "990", BTCUSDT="10", ETHUSDT="-20")
        seed_snapshot(conn, d + 3 * DAY, "DAILY", "1029.996", BTCUSDT="50", ETHUSDT="-20.004")
        seed_snapshot(conn, d + 4 * DAY, "DAILY", "1019.69604", BTCUSDT="40", ETHUSDT="-20.30396")
        seed_snapshot(conn, d + 5 * DAY + 6 * H, "MANUAL", "3000")
        seed_trip(conn, "t0", "BTCUSDT", d - 16 * H, d - 14 * H, "100")
        seed_trip(conn, "t1", "BTCUSDT", d + 1 * H, d + 3 * H, "30")
        seed_trip(conn, "t2", "ETHUSDT", d + 4 * H, d + 20 * H, "-10")
        seed_trip(conn, "t3", "ETHUSDT", d + DAY + 2 * H, d + DAY + 6 * H, "-10.2")
        seed_trip(conn, "t4", "BTCUSDT", d + 2 * DAY + 1 * H, d + 2 * DAY + 11 * H, "-20")
        seed_trip(conn, "t5", "BTCUSDT", d + 2 * DAY + 13 * H, d + 2 * DAY + 23 * H, "40")
        seed_trip(conn, "t6", "ETHUSDT", d + 5 * DAY, d + 5 * DAY + H, "-50")
        seed_fill(conn, "f1", "BTCUSDT", "100", "0.5", "29.5", d + 2 * H)
        seed_fill(conn, "f2", "ETHUSDT", "50", "0.5", "-10.5", d + 5 * H)
        seed_fill(conn, "f3", "ETHUSDT", "50", "9", "-9", d + 5 * DAY)  # after the window
    return db_url


def run(monkeypatch, capsys, dsn, *argv):
    monkeypatch.setenv("DATABASE_URL", dsn)
    assert cli.main(["--log-level", "error", "report", *argv]) == 0
    return capsys.readouterr().out


def as_json(monkeypatch, capsys, dsn, *argv):
    return json.loads(run(monkeypatch, capsys, dsn, *argv, "--format", "json"))


def test_the_worked_book_account(worked, monkeypatch, capsys):
    """The account, window 11-20 00:00 → 11-25 00:00 (the MANUAL points, t0, t6, f3 are out).

    Curve 1000, 1020, 1009.8, 990, 1029.996, 1019.69604 (one point at 00:00 of 11-20 and 11-21:
    HOURLY and DAILY hold the same state). Return 19.69604 / 1000 = 1.97 %.
    Max drawdown: peak 1020 (11-21 00:00) → trough 990 (11-22 12:00) = 30 = 30 / 1020 = 2.94 %,
    recovered 11-23 00:00 (1029.996). Current: 1029.996 − 1019.69604 = 10.29996 = 1.00 %.
    Daily closes 11-19 … 11-23: 1000, 1020, 1009.8, 1029.996, 1019.69604 (990 is intraday) →
    returns +2 %, −1 %, +2 %, −1 %: Sharpe 5.5151, Sortino 13.5093 (tests/unit/
    test_performance.py::test_sharpe_and_sortino_worked_example has the arithmetic).
    Round trips +30, −10, −10.2, −20, +40 (closed_at order): wins 70, losses −40.2; profit factor
    70 / 40.2 = 1.7413; expectancy 29.8 / 5 = 5.96; average win 35, loss −13.4; streaks W L L L
    W: 1 and 3. Holding 2 + 16 + 4 + 10 + 10 = 42 h / 5 = 8.4 h = 30,240 s. Closed-trade curve
    0, 30, 20, 9.8, −10.2, 29.8: 30 → −10.2 = 40.2.
    Fees 0.5 + 0.5 = 1; realized 29.5 − 10.5 = 19; gross 20; fee share 1 / 20 = 5 %.
    """
    body = as_json(monkeypatch, capsys, worked, *WINDOW)
    assert (body["since"], body["until"]) == (
        "2026-11-20T00:00:00+00:00", "2026-11-25T00:00:00+00:00",
    )  # fmt: skip
    account = body["account"]
    assert (account["trades"], account["winning_trades"], account["losing_trades"]) == (5, 2, 3)
    assert (account["fees_usdt"], account["window_realized_pnl_usdt"]) == ("1", "19")
    assert account["performance"] == {
        "curve_basis": "equity",
        "snapshots": 6,
        "curve_start_usdt": "1000",
        "curve_end_usdt": "1019.69604",
        "window_return": "0.0197",
        "max_drawdown_usdt": "30",
        "max_drawdown_pct": "0.0294",
        "drawdown_peak_at": "2026-11-21T00:00:00+00:00",
        "drawdown_trough_at": "2026-11-22T12:00:00+00:00",
        "drawdown_recovered_at": "2026-11-23T00:00:00+00:00",
        "current_drawdown_usdt": "10.29996",
        "current_drawdown_pct": "0.01",
        "trade_drawdown_usdt": "40.2",
        "gross_profit_usdt": "70",
        "gross_loss_usdt": "-40.2",
        "avg_win_usdt": "35",
        "avg_loss_usdt": "-13.4",
        "profit_factor": "1.7413",
        "expectancy_usdt": "5.96",
        "max_win_streak": 1,
        "max_loss_streak": 3,
        "avg_holding_s": "30240",
        "return_days": 4,
        "sharpe": "5.5151",
        "sortino": "13.5093",
        "gross_pnl_usdt": "20",
        "fee_share": "0.05",
    }


def test_the_worked_book_per_symbol(worked, monkeypatch, capsys):
    """BTC: curve 0, 30, 30, 10, 50, 40 → peak 30 held until 11-22 00:00, trough 10 at 12:00:
    20, recovered 11-23 00:00 (50); current 50 − 40 = 10; no % (a symbol has no capital).
    Trips +30, −20, +40: profit factor 70 / 20 = 3.5, expectancy 50 / 3 = 16.66666667, streaks
    1 / 1, holding (2 + 10 + 10) h / 3 = 26,400 s, closed-trade curve 0, 30, 10, 50: 20.
    Contribution returns: closes 0, 30, 30, 50, 40 over account closes 1000, 1020, 1009.8,
    1029.996: 30 / 1000 = 0.03, 0, 20 / 1009.8 = 0.0198059, −10 / 1029.996 = −0.0097088;
    mean 0.0100243, sample stdev 0.0181162, DD √(0.0097088² / 4) = 0.0048544;
    Sharpe 0.0100243 / 0.0181162 × 19.104973 = 10.5714; Sortino 0.0100243 / 0.0048544 ×
    19.104973 = 39.4517. Fee 0.5 of gross 30: 1.67 %.
    ETH: curve 0, −10, −20.2, −20, −20.004, −20.30396 → 20.30396 from the peak 0 at 11-20,
    never recovered. Trips −10, −10.2 (all losses): profit factor 0, expectancy −10.1, 2 losses
    in a row, holding (16 + 4) h / 2 = 36,000 s, closed-trade drawdown 20.2. Returns −0.01,
    −10.2 / 1020 = −0.01, 0.196 / 1009.8 = 0.0001941, −0.29996 / 1029.996 = −0.0002912 (BTC's
    and ETH's add up to the account's +2 %, −1 %, +2 %, −1 %): mean −0.0050243, stdev 0.0057489,
    DD 0.0070726; Sharpe −16.6970, Sortino −13.5720. Gross −10.5 + 0.5 = −10: no fee share.
    """
    symbols = {s["symbol"]: s for s in as_json(monkeypatch, capsys, worked, *WINDOW)["symbols"]}
    assert sorted(symbols) == ["BTCUSDT", "ETHUSDT"]
    btc, eth = symbols["BTCUSDT"]["performance"], symbols["ETHUSDT"]["performance"]
    assert (btc["curve_basis"], btc["max_drawdown_usdt"], btc["max_drawdown_pct"]) == (
        "pnl", "20", None,
    )  # fmt: skip
    assert (btc["drawdown_peak_at"], btc["drawdown_trough_at"], btc["drawdown_recovered_at"]) == (
        "2026-11-22T00:00:00+00:00", "2026-11-22T12:00:00+00:00", "2026-11-23T00:00:00+00:00",
    )  # fmt: skip
    assert (btc["current_drawdown_usdt"], btc["window_return"]) == ("10", None)
    assert (btc["profit_factor"], btc["expectancy_usdt"], btc["avg_holding_s"]) == (
        "3.5", "16.66666667", "26400",
    )  # fmt: skip
    assert (btc["max_win_streak"], btc["max_loss_streak"], btc["trade_drawdown_usdt"]) == (
        1, 1, "20",
    )  # fmt: skip
    assert (btc["return_days"], btc["sharpe"], btc["sortino"]) == (4, "10.5714", "39.4517")
    assert btc["fee_share"] == "0.0167"

    assert (eth["max_drawdown_usdt"], eth["drawdown_peak_at"], eth["drawdown_recovered_at"]) == (
        "20.30396", "2026-11-20T00:00:00+00:00", None,
    )  # fmt: skip
    assert (eth["profit_factor"], eth["expectancy_usdt"], eth["avg_win_usdt"]) == (
        "0", "-10.1", None,
    )  # fmt: skip
    assert (eth["max_win_streak"], eth["max_loss_streak"], eth["avg_holding_s"]) == (
        0, 2, "36000",
    )  # fmt: skip
    assert (eth["trade_drawdown_usdt"], eth["sharpe"], eth["sortino"]) == (
        "20.2", "-16.697", "-13.572",
    )  # fmt: skip
    assert (eth["gross_pnl_usdt"], eth["fee_share"]) == ("-10", None)


def test_the_worked_book_as_a_table_and_csv(worked, monkeypatch, capsys):
    rows = run(monkeypatch, capsys, worked, *WINDOW).splitlines()
    assert rows[0] == "P&L report  2026-11-20 00:00 → 2026-11-25 00:00 UTC"
    expected = [
        "equity curve         1,000.00 → 1,019.70 USDT, return 1.97%  (6 snapshots of equity)",
        "max drawdown         30.00 USDT (2.94%)  peak 2026-11-21 00:00 → trough 2026-11-22 12:00,"
        " recovered 2026-11-23 00:00",
        "current drawdown     10.30 USDT (1.00%)",
        "closed-trade DD      40.20 USDT  (cumulative P&L of the round trips, from 0)",
        "profit factor        1.74  (won 70.00 / lost 40.20 USDT)",
        "expectancy           5.96 USDT per round trip  (avg win 35.00, avg loss -13.40)",
        "streaks              longest 1 winning, 3 losing in a row  (avg holding 8h 24m)",
        "Sharpe / Sortino     5.52 / 13.51  (4 daily returns, annualised ×√365)",
        "fees                 1.00 USDT = 5.00% of gross P&L 20.00 USDT",
    ]
    assert rows[rows.index(expected[0]) : rows.index(expected[0]) + len(expected)] == expected
    risk = next(i for i, row in enumerate(rows) if row.split()[:3] == ["symbol", "max", "DD"])
    assert rows[risk + 2].split() == ["BTCUSDT", "20.00", "10.00", "20.00", "3.50", "16.67",
                                      "35.00", "-20.00", "1/1", "7h", "20m", "10.57", "39.45",
                                      "1.67%"]  # fmt: skip
    assert rows[risk + 3].split() == ["ETHUSDT", "20.30", "20.30", "20.20", "0.00", "-10.10",
                                      "-", "-10.10", "0/2", "10h", "00m", "-16.70", "-13.57",
                                      "-"]  # fmt: skip

    table = list(csv.DictReader(io.StringIO(run(monkeypatch, capsys, worked, *WINDOW,
                                                "--format", "csv"))))  # fmt: skip
    assert [r["symbol"] for r in table] == ["BTCUSDT", "ETHUSDT", "ALL"]
    assert table[-1]["max_drawdown_usdt"] == "30"
    assert table[-1]["profit_factor"] == "1.7413"
    assert table[-1]["drawdown_recovered_at"] == "2026-11-23T00:00:00+00:00"
    assert table[1]["max_drawdown_pct"] == ""  # per symbol: undefined
    assert table[1]["avg_win_usdt"] == ""


def test_a_window_with_no_snapshot(worked, monkeypatch, capsys):
    """11-20 01:00 → 23:00 holds t1 (+30) and t2 (−10) and both fills, but no snapshot (the
    ones at 00:00 of 11-20 and 11-21 are outside): no curve, no drawdown, no Sharpe; the round
    trips still count: profit factor 30 / 10 = 3, expectancy 10, closed-trade drawdown 10."""
    argv = ["--since", "2026-11-20T01:00", "--until", "2026-11-20T23:00"]
    account = as_json(monkeypatch, capsys, worked, *argv)["account"]["performance"]
    assert (account["curve_basis"], account["snapshots"], account["max_drawdown_usdt"]) == (
        None, 0, None,
    )  # fmt: skip
    assert (account["drawdown_peak_at"], account["current_drawdown_usdt"]) == (None, None)
    assert (account["return_days"], account["sharpe"], account["sortino"]) == (0, None, None)
    assert (account["profit_factor"], account["expectancy_usdt"]) == ("3", "10")
    assert account["trade_drawdown_usdt"] == "10"
    text = run(monkeypatch, capsys, worked, *argv)
    assert "no snapshot in the window: no drawdown, Sharpe or Sortino" in text
    assert "max drawdown" not in text


def test_a_window_of_losses_only(worked, monkeypatch, capsys):
    """11-20 04:00 → 11-22 12:00: trips −10, −10.2, −20 (t4 closed at 11:00); snapshots 1020
    (11-21 00:00) and 1009.8 (11-22 00:00); the 990 at 12:00 is the excluded end.
    Profit factor 0 / 40.2 = 0; expectancy −40.2 / 3 = −13.4; 3 losses in a row; closed-trade
    drawdown 40.2. Curve: 10.2 = 1 % from 1020, not recovered. Closes 11-20 1020, 11-21 1009.8:
    a single return (−1 %), too few for Sharpe or Sortino."""
    argv = ["--since", "2026-11-20T04:00Z", "--until", "2026-11-22T12:00:00+00:00"]
    body = as_json(monkeypatch, capsys, worked, *argv)
    account = body["account"]["performance"]
    assert (account["profit_factor"], account["expectancy_usdt"], account["avg_win_usdt"]) == (
        "0", "-13.4", None,
    )  # fmt: skip
    assert (account["max_win_streak"], account["max_loss_streak"]) == (0, 3)
    assert account["trade_drawdown_usdt"] == "40.2"
    assert (account["max_drawdown_usdt"], account["max_drawdown_pct"]) == ("10.2", "0.01")
    assert account["drawdown_recovered_at"] is None
    assert (account["return_days"], account["sharpe"], account["sortino"]) == (1, None, None)
    assert body["account"]["win_rate"] == "0"
    text = run(monkeypatch, capsys, worked, *argv)
    assert (
        "fees                 0.50 USDT, gross P&L -10.00 USDT (no fee share: gross P&L ≤ 0)"
        in text
    )
    # The fills of the window: f2 (ETH, −10.5 after a 0.5 fee): gross −10, no fee share.
    assert (account["gross_pnl_usdt"], account["fee_share"]) == ("-10", None)


def test_the_default_window_is_all_history(worked, monkeypatch, capsys):
    """No --since / --until: every row counts. Curve 1500, 1000, …, 3000 → max drawdown 1500 →
    990 = 510 = 34 %; trips +100 … −50: 7; fees 0.5 + 0.5 + 9 = 10."""
    account = as_json(monkeypatch, capsys, worked)["account"]
    assert (account["trades"], account["fees_usdt"]) == (7, "10")
    risk = account["performance"]
    assert (risk["snapshots"], risk["max_drawdown_usdt"], risk["max_drawdown_pct"]) == (
        8, "510", "0.34",
    )  # fmt: skip
    assert risk["drawdown_peak_at"] == "2026-11-19T12:00:00+00:00"


def test_the_empty_history(db_url, monkeypatch, capsys):
    body = as_json(monkeypatch, capsys, db_url)
    assert (body["total_pnl_usdt"], body["symbols"]) == ("0", [])
    account = body["account"]
    assert (account["trades"], account["fees_usdt"]) == (0, "0")
    assert account["performance"] == {
        "curve_basis": None, "snapshots": 0, "curve_start_usdt": None, "curve_end_usdt": None,
        "window_return": None, "max_drawdown_usdt": None, "max_drawdown_pct": None,
        "drawdown_peak_at": None, "drawdown_trough_at": None, "drawdown_recovered_at": None,
        "current_drawdown_usdt": None, "current_drawdown_pct": None,
        "trade_drawdown_usdt": None, "gross_profit_usdt": "0", "gross_loss_usdt": "0",
        "avg_win_usdt": None, "avg_loss_usdt": None, "profit_factor": None,
        "expectancy_usdt": None, "max_win_streak": 0, "max_loss_streak": 0,
        "avg_holding_s": None, "return_days": 0, "sharpe": None, "sortino": None,
        "gross_pnl_usdt": "0", "fee_share": None,
    }  # fmt: skip
    text = run(monkeypatch, capsys, db_url)
    assert "P&L report  all history → now" in text
    assert "no snapshot in the window" in text
    assert "profit factor        -  (won 0.00 / lost 0.00 USDT)" in text
    assert text.rstrip().endswith("no symbols traded yet")
    table = list(csv.DictReader(io.StringIO(run(monkeypatch, capsys, db_url, "--format", "csv"))))
    assert [(r["symbol"], r["trades"], r["sharpe"]) for r in table] == [("ALL", "0", "")]


def test_one_trade(db_url, monkeypatch, capsys):
    """One round trip, +9.68 held 1 h (BTC 1 @ 100 → 110, fees 0.10 + 0.22), and the two
    snapshots around it without a start balance: total P&L 0 at 10:00, 9.68 at 11:00.
    Profit factor infinite, expectancy 9.68, no drawdown of either kind, no % (no start balance),
    no daily return. Gross 9.68 + 0.32 = 10: fee share 3.2 %."""
    d = START + 10 * H
    with psycopg.connect(db_url) as conn:
        seed_snapshot(conn, d, "HOURLY", "0", start_balance=None)
        seed_snapshot(conn, d + H, "HOURLY", "9.68", start_balance=None, BTCUSDT="9.68")
        seed_trip(conn, "t1", "BTCUSDT", d, d + H, "9.68")
        seed_fill(conn, "f1", "BTCUSDT", "100", "0.10", "-0.10", d)
        seed_fill(conn, "f2", "BTCUSDT", "110", "0.22", "9.78", d + H)
    body = as_json(monkeypatch, capsys, db_url)
    (btc,) = body["symbols"]
    for risk in (body["account"]["performance"], btc["performance"]):
        assert (risk["curve_basis"], risk["snapshots"], risk["curve_end_usdt"]) == (
            "pnl", 2, "9.68",
        )  # fmt: skip
        assert (risk["max_drawdown_usdt"], risk["max_drawdown_pct"]) == ("0", None)
        assert (risk["drawdown_peak_at"], risk["current_drawdown_usdt"]) == (None, "0")
        assert (risk["profit_factor"], risk["expectancy_usdt"], risk["avg_win_usdt"]) == (
            "Infinity", "9.68", "9.68",
        )  # fmt: skip
        assert (risk["max_win_streak"], risk["avg_holding_s"]) == (1, "3600")
        assert (risk["trade_drawdown_usdt"], risk["return_days"], risk["sharpe"]) == (
            "0", 0, None,
        )  # fmt: skip
        assert (risk["gross_pnl_usdt"], risk["fee_share"]) == ("10", "0.032")
    text = run(monkeypatch, capsys, db_url)
    assert "(2 snapshots of total P&L, no start balance: no %)" in text
    assert "profit factor        inf  (won 9.68 / lost 0.00 USDT)" in text
    assert "max drawdown         0.00 USDT (-)  peak - → trough -, recovered -" in text


def test_since_after_until_is_refused(db_url, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", db_url)
    argv = ["--log-level", "error", "report", "--since", "2026-11-21", "--until", "2026-11-20"]
    assert cli.main(argv) == cli.EXIT_USAGE
    assert "--since must be before --until" in capsys.readouterr().err


def test_the_plot_shades_the_drawdown_of_the_window(worked, monkeypatch, capsys, tmp_path):
    png = tmp_path / "equity.png"
    run(monkeypatch, capsys, worked, *WINDOW, "--plot", str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_on_rows_the_worker_wrote(settings, redis_client, db_url):
    """The worker's own rows (no start balance): BTC +9.68 (10:00 → 11:00), ETH −1 (11:30 →
    12:00). Profit factor 9.68 / 1 = 9.68, expectancy 8.68 / 2 = 4.34, holding (3600 + 1800) /
    2 = 2700 s; the snapshots are of total P&L, so no % and no daily return."""
    feed = Feed(redis_client, settings)
    feed.trade("o1", "BTCUSDT", "BUY", "1", "100", START + 10 * H, fee="0.10")
    feed.trade("o2", "BTCUSDT", "SELL", "1", "110", START + 11 * H, fee="0.22")
    feed.trade("o3", "ETHUSDT", "BUY", "1", "50", START + 11.5 * H)
    feed.trade("o4", "ETHUSDT", "SELL", "1", "49", START + 12 * H)
    feed.mark("ETHUSDT", "49", START + 14 * H)  # crosses 13:00 and 14:00 by ETH's clock
    run_until_idle(settings)
    got = report.gather(db_url, START, START + DAY, now=START + DAY)
    risk = got.performance["ALL"]
    assert (risk.profit_factor, risk.expectancy_usdt, risk.avg_holding_s) == (
        D("9.68"), D("4.34"), D(2700),
    )  # fmt: skip
    assert (risk.max_win_streak, risk.max_loss_streak) == (1, 1)
    assert risk.curve_basis == "pnl"
    assert risk.snapshots > 0
    assert (risk.max_drawdown_pct, risk.return_days, risk.sharpe) == (None, 0, None)
    assert (risk.gross_pnl_usdt, risk.fee_share) == (D(9), D("0.0356"))  # 0.32 / (8.68 + 0.32)
