"""``report``, ``snapshot`` and ``prune`` on databases the real worker populated.

The report book (window: 2026-11-20 00:00 UTC on):

    11-19 23:00  p1 SOL BUY 10 @ 20, fee 0.2            (before the window)
    11-20 10:00  o1 BTC BUY 1 @ 100, fee 0.10, slip 0.1
          11:00  o2 BTC SELL 1 @ 110, fee 0.22, slip 0.3  → trip +9.68 (10 − 0.1 − 0.22)
          11:30  o3 ETH BUY 1 @ 50;  12:00 o4 ETH SELL 1 @ 49  → trip −1
          13:00  o5 ETH BUY 1 REJECTED
          14:00  mark SOL 21                                 → SOL unrealized +10
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from consumer import cli, report, retention
from tests.support.feed import Feed
from tests.support.pipeline import rows, run_until_idle, snapshot
from tests.support.roles import runtime_login

SINCE = datetime(2026, 11, 20, tzinfo=UTC)
NOW = datetime(2026, 11, 20, 15, tzinfo=UTC)


@pytest.fixture
def book(settings, redis_client, db_url):
    feed = Feed(redis_client, settings)
    h = timedelta(hours=1)
    feed.trade("p1", "SOLUSDT", "BUY", "10", "20", SINCE - h, fee="0.2")
    feed.trade("o1", "BTCUSDT", "BUY", "1", "100", SINCE + 10 * h, fee="0.10", slippage="0.1")
    feed.trade("o2", "BTCUSDT", "SELL", "1", "110", SINCE + 11 * h, fee="0.22", slippage="0.3")
    feed.trade("o3", "ETHUSDT", "BUY", "1", "50", SINCE + 11.5 * h)
    feed.trade("o4", "ETHUSDT", "SELL", "1", "49", SINCE + 12 * h)
    feed.order("o5", SINCE + 13 * h, symbol="ETHUSDT", side="BUY", quantity="1",
               status="REJECTED")  # fmt: skip
    feed.mark("SOLUSDT", "21", SINCE + 14 * h)
    run_until_idle(settings)
    return db_url


def values(line: report.Line) -> tuple:
    return tuple(getattr(line, name) for name in report.LINE_FIELDS)


def test_report_numbers(book):
    got = report.gather(book, SINCE, NOW)
    assert got.total_pnl_usdt == D("18.48")  # 9.68 − 1 − 0.2 realized, +10 unrealized
    assert values(got.account) == (
        "ALL", D(10), D("8.48"), D(10), D("18.48"), D("8.68"), 2, 1, 1, D("0.5"),
        5, 4, D("0.8"), D("0.2"), 4, D(309), D("0.32"),
    )  # fmt: skip
    assert [values(line) for line in got.symbols] == [
        ("BTCUSDT", D(0), D("9.68"), D(0), D("9.68"), D("9.68"), 1, 1, 0, D(1),
         2, 2, D(1), D("0.2"), 2, D(210), D("0.32")),
        ("ETHUSDT", D(0), D(-1), D(0), D(-1), D(-1), 1, 0, 1, D(0),
         3, 2, D("0.6667"), None, 2, D(99), D(0)),
        ("SOLUSDT", D(10), D("-0.2"), D(10), D("9.8"), D(0), 0, 0, 0, None,
         0, 0, None, None, 0, D(0), D(0)),
    ]  # fmt: skip
    table = report.render_table(got)
    assert "18.48" in table
    assert "50.00%" in table  # win rate
    assert "80.00%" in table  # fill rate


def test_report_command_json_csv_and_plot(book, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("DATABASE_URL", book)
    assert (
        cli.main(["--log-level", "error", "report", "--since", "100000d", "--format", "json"]) == 0
    )
    body = json.loads(capsys.readouterr().out)
    assert body["total_pnl_usdt"] == "18.48"
    assert body["account"]["trades"] == 2
    assert [s["symbol"] for s in body["symbols"]] == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]

    assert (
        cli.main(["--log-level", "error", "report", "--since", "100000d", "--format", "csv"]) == 0
    )
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["symbol"] for r in table] == ["BTCUSDT", "ETHUSDT", "SOLUSDT", "ALL"]
    assert table[-1]["realized_pnl_usdt"] == "8.48"

    png = tmp_path / "pnl.png"
    argv = ["--log-level", "error", "report", "--since", "100000d", "--plot", str(png)]
    assert cli.main(argv) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_snapshot_command_prints_a_manual_snapshot(book, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", book)
    monkeypatch.setenv("PAPER_START_BALANCE_USDT", "1000")
    assert cli.main(["--log-level", "error", "snapshot", "--format", "json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["snapshot_type"] == "MANUAL"
    assert D(body["total_pnl_usdt"]) == D("18.48")
    assert D(body["equity_usdt"]) == D("1018.48")
    (_manual,) = rows(
        book, "SELECT snapshot_type FROM paper_pnl_snapshots WHERE snapshot_type = 'MANUAL'"
    )
    assert cli.main(["--log-level", "error", "snapshot"]) == 0
    assert "MANUAL snapshot at" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# prune
# --------------------------------------------------------------------------------------------


@pytest.fixture
def aged(settings, redis_client, db_url):
    """Old (100 days) and recent (10 days) history; cut-off at 90 days."""
    now = datetime.now(UTC).replace(microsecond=0)
    old = (now - timedelta(days=100)).replace(hour=10, minute=0, second=0)
    new = now - timedelta(days=10)
    m = timedelta(minutes=1)
    feed = Feed(redis_client, settings)
    feed.trade("old-fill", "BTCUSDT", "BUY", "1", "100", old + 50 * m)  # has a fill: kept
    feed.order("old-rej", old + 55 * m, symbol="BTCUSDT", side="BUY", quantity="1",
               status="REJECTED")  # fmt: skip
    feed.order("old-failed", old + 56 * m, symbol="ETHUSDT", side="SELL", quantity="1",
               status="FAILED")  # fmt: skip
    feed.order("old-open", old + 57 * m, symbol="ETHUSDT", side="BUY", quantity="1",
               status="SUBMITTED")  # fmt: skip
    # Partly filled, then cancelled: it has a fill, so it stays.
    feed.order("old-cxl", old + 58 * m, symbol="ETHUSDT", side="BUY", quantity="2",
               status="CANCELLED", filled_quantity="1", filled_price="50")  # fmt: skip
    feed.fill("old-cxl-f", "old-cxl", "ETHUSDT", "BUY", "1", "50", old + 58 * m)
    feed.mark("BTCUSDT", "101", old + 70 * m)  # crosses 11:00
    feed.trade("old-sell", "BTCUSDT", "SELL", "1", "102", old + timedelta(hours=14, minutes=1))
    feed.order("new-rej", new, symbol="BTCUSDT", side="BUY", quantity="1", status="REJECTED")
    feed.trade("new-fill", "SOLUSDT", "BUY", "1", "20", new + m)
    run_until_idle(settings)
    return db_url, now - timedelta(days=90)


def test_prune_deletes_only_what_nothing_depends_on(aged, pg_server_url):
    dsn, cutoff = aged
    before = snapshot(dsn)
    old_hourly = [
        r for r in before["snapshots"]
        if r["snapshot_type"] == "HOURLY" and r["snapshot_time"] < cutoff
    ]  # fmt: skip
    assert len(old_hourly) == 14  # 11:00 … 00:00 of the old day
    assert any(
        r["snapshot_type"] == "DAILY" and r["snapshot_time"] < cutoff for r in before["snapshots"]
    )

    with runtime_login(pg_server_url, dsn, "prune-pw") as runtime_dsn:
        dry = retention.prune(runtime_dsn, cutoff, dry_run=True)
        assert dry.rows == {"hourly_snapshots": 14, "orders_without_fills": 2, "snapshot_parts": 0}
        assert snapshot(dsn) == before  # a dry run changes nothing
        done = retention.prune(runtime_dsn, cutoff, batch_size=5)
    assert done.rows == {"hourly_snapshots": 14, "orders_without_fills": 2, "snapshot_parts": 0}
    # 5 + 5 + 4, then 2 (< 5) ends each loop; no part is prunable: ETHUSDT's clock (old day,
    # 10:58) is the horizon, and BTCUSDT's parts end after it.
    assert done.batches == 3 + 1 + 1
    assert (
        "deleted 14 hourly snapshots, 2 orders without fills, 0 snapshot parts" in done.describe()
    )

    after = snapshot(dsn)
    assert after["snapshots"] == [r for r in before["snapshots"] if r not in old_hourly]
    assert [o["order_id"] for o in after["orders"]] == sorted(
        o["order_id"] for o in before["orders"] if o["order_id"] not in ("old-rej", "old-failed")
    )
    for table in ("fills", "positions", "round_trips", "fill_pnl", "stats", "clock"):
        assert after[table] == before[table], table
    # Nothing left to prune: a second run deletes nothing.
    again = retention.prune(dsn, cutoff)
    assert again.rows == {"hourly_snapshots": 0, "orders_without_fills": 0, "snapshot_parts": 0}


def test_prune_command(aged, monkeypatch, capsys):
    dsn, _ = aged
    monkeypatch.setenv("DATABASE_URL", dsn)
    assert cli.main(["--log-level", "error", "prune", "--older-than", "90d", "--dry-run"]) == 0
    assert (
        "would delete 14 hourly snapshots, 2 orders without fills, 0 snapshot parts"
        in capsys.readouterr().out
    )
    argv = ["--log-level", "error", "prune", "--older-than", "90d", "--batch-size", "100"]
    assert cli.main(argv) == 0
    assert (
        "deleted 14 hourly snapshots, 2 orders without fills, 0 snapshot parts"
        in capsys.readouterr().out
    )
