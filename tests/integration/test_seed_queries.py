"""Every query of the seed README ("Common Queries", "Monitoring", "Verify Migration") as shipped
in ``sql/queries/``, run on a database the real worker populated from published events.

The book (times relative to D = two UTC dates ago, so the queries' now()-windows hold them):

    D 10:00  b1 BUY  1 BTCUSDT @ 100, fee 0.10, slippage 0.1  FILLED
    D 10:30  e1 BUY  2 ETHUSDT @ 50,            slippage 0.2  FILLED
    D 11:00  b2 SELL 1 BTCUSDT @ 110, fee 0.11, slippage 0.3  FILLED  → BTC flat, trip +9.79
    D 12:00  b3 BUY  1 BTCUSDT                                REJECTED
    D 13:00  mark ETHUSDT 55                                  → ETH unrealized +10
    D 14:00  s1 SELL 1 SOLUSDT @ 20 (no slippage given)       FILLED
    D+1 00:30 mark SOLUSDT 22                                 → SOL unrealized −2; crosses
             15:00 … 00:00 (HOURLY) and D+1 00:00 (DAILY, state before the mark: 19.79)
    then, published last (their event time is behind the clock, so they cross nothing):
    now−10 days e2 BUY 1 ETHUSDT SUBMITTED;  now−40 days e3 BUY 1 ETHUSDT REJECTED

Total P&L = 9.79 + 10 − 2 = 17.79.
"""

from __future__ import annotations

import importlib.resources
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import psycopg
import pytest

from tests.support.feed import Feed
from tests.support.pipeline import rows, run_until_idle

QUERIES_DIR = Path(__file__).resolve().parents[2] / "sql" / "queries"
QUERY_FILES = sorted(p.name for p in QUERIES_DIR.glob("*.sql"))

PAPER_TABLES = [
    "paper_consumer_offsets", "paper_event_ledger", "paper_fill_pnl", "paper_fills",
    "paper_orders", "paper_pnl_clock", "paper_pnl_snapshot_parts", "paper_pnl_snapshots",
    "paper_positions", "paper_round_trips", "paper_schema_migrations", "paper_shard_leases",
    "paper_shard_members", "paper_stats_sums", "paper_symbol_clocks", "paper_trading_stats",
]  # fmt: skip


def day_d() -> datetime:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=2)


@pytest.fixture
def book(settings, redis_client, db_url):
    d = day_d()
    h = timedelta(hours=1)
    feed = Feed(redis_client, settings)
    feed.trade("b1", "BTCUSDT", "BUY", "1", "100", d + 10 * h, fee="0.10", slippage="0.1")
    feed.trade("e1", "ETHUSDT", "BUY", "2", "50", d + 10.5 * h, slippage="0.2")
    feed.trade("b2", "BTCUSDT", "SELL", "1", "110", d + 11 * h, fee="0.11", slippage="0.3")
    feed.order("b3", d + 12 * h, symbol="BTCUSDT", side="BUY", quantity="1", status="REJECTED")
    feed.mark("ETHUSDT", "55", d + 13 * h)
    feed.trade("s1", "SOLUSDT", "SELL", "1", "20", d + 14 * h)
    feed.mark("SOLUSDT", "22", d + 24.5 * h)
    now = datetime.now(UTC)
    feed.order("e2", now - timedelta(days=10), symbol="ETHUSDT", side="BUY", quantity="1",
               status="SUBMITTED")  # fmt: skip
    feed.order("e3", now - timedelta(days=40), symbol="ETHUSDT", side="BUY", quantity="1",
               status="REJECTED")  # fmt: skip
    run_until_idle(settings)
    return db_url


def run_query(dsn: str, name: str) -> list[dict]:
    return rows(dsn, (QUERIES_DIR / name).read_text(encoding="utf-8"))


def test_every_seed_query_has_a_file_and_ships_in_the_package():
    assert QUERY_FILES == [
        "active_positions.sql", "daily_summary.sql", "fill_rate_by_symbol.sql",
        "index_usage.sql", "performance_over_time.sql", "slippage_analysis.sql",
        "table_sizes.sql", "verify_orders_structure.sql", "verify_tables.sql",
        "verify_total_pnl.sql", "verify_views.sql",
    ]  # fmt: skip
    shipped = importlib.resources.files("consumer.sql") / "queries"
    assert sorted(p.name for p in shipped.iterdir() if p.name.endswith(".sql")) == QUERY_FILES
    for name in QUERY_FILES:
        text = (QUERIES_DIR / name).read_text(encoding="utf-8")
        assert text.startswith("-- Seed README"), f"{name}: say where it comes from"
        assert "Changed" in text or "Unchanged" in text, f"{name}: say what changed"


@pytest.mark.parametrize("name", QUERY_FILES)
def test_each_file_runs_with_psql(book, name):
    psql = shutil.which("psql")
    assert psql, "psql must be on PATH for these tests"
    result = subprocess.run(
        [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(QUERIES_DIR / name), "-d", book],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_verify_tables(book):
    assert [r["table_name"] for r in run_query(book, "verify_tables.sql")] == PAPER_TABLES


def test_verify_orders_structure(book):
    columns = {r["column_name"]: r for r in run_query(book, "verify_orders_structure.sql")}
    assert list(columns)[:3] == ["order_id", "client_id", "symbol"]
    assert len(columns) == 21
    assert columns["order_id"]["column_type"] == "character varying(100)"
    assert columns["order_id"]["nullable"] is False
    assert columns["quantity"]["column_type"] == "numeric(18,8)"
    assert columns["slippage_pct"]["column_type"] == "numeric(10,6)"
    assert columns["created_at"]["column_type"] == "timestamp with time zone"
    assert columns["order_type"]["column_default"] == "'MARKET'::character varying"
    assert "filled_quantity / quantity" in columns["fill_ratio"]["generation_expression"]


def test_verify_views(book):
    assert [r["view_name"] for r in run_query(book, "verify_views.sql")] == [
        "v_paper_active_positions",
        "v_paper_daily_summary",
        "v_paper_recent_orders",
    ]


def test_verify_total_pnl(book):
    assert run_query(book, "verify_total_pnl.sql") == [{"get_paper_total_pnl": D("17.79")}]


def test_daily_summary(book):
    d = day_d().date()
    got = [
        (
            r["trade_date"],
            r["symbol"],
            r["total_orders"],
            r["filled_orders"],
            r["rejected_orders"],
            r["total_volume_usdt"],
            r["total_fees_usdt"],
            r["avg_slippage_pct"],
        )
        for r in run_query(book, "daily_summary.sql")
    ]
    # e2 (10 days ago) and e3 (40 days ago) are outside the 7-day window.
    assert got == [
        (d, "BTCUSDT", 3, 2, 1, D(210), D("0.21"), D("0.2")),
        (d, "ETHUSDT", 1, 1, 0, D(100), D(0), D("0.2")),
        (d, "SOLUSDT", 1, 1, 0, D(20), D(0), None),
    ]


def test_daily_summary_uses_utc_dates_whatever_the_session_time_zone(book):
    query = (QUERIES_DIR / "daily_summary.sql").read_text(encoding="utf-8")
    with psycopg.connect(book) as conn:
        conn.execute("SET TIME ZONE 'Pacific/Kiritimati'")  # UTC+14
        far_east = conn.execute(query).fetchall()
        conn.execute("SET TIME ZONE 'Pacific/Pago_Pago'")  # UTC-11
        far_west = conn.execute(query).fetchall()
    assert far_east == far_west
    assert {r[0] for r in far_east} == {day_d().date()}


def test_active_positions(book):
    got = [
        (r["symbol"], r["quantity"], r["unrealized_pnl_usdt"], r["total_pnl_usdt"])
        for r in run_query(book, "active_positions.sql")
    ]
    assert got == [("ETHUSDT", D(2), D(10), D(10)), ("SOLUSDT", D(-1), D(-2), D(-2))]


def test_fill_rate_by_symbol(book):
    got = [
        (r["symbol"], r["fill_rate_7d"], r["fill_rate_30d"])
        for r in run_query(book, "fill_rate_by_symbol.sql")
    ]
    assert got == [
        ("ETHUSDT", D(1), D("0.5")),  # 30 days: e1 FILLED, e2 SUBMITTED (e3 is 40 days old)
        ("SOLUSDT", D(1), D(1)),
        ("BTCUSDT", D("0.6667"), D("0.6667")),  # b1, b2 FILLED; b3 REJECTED
    ]


def test_performance_over_time(book):
    got = run_query(book, "performance_over_time.sql")
    # One DAILY snapshot: D+1 00:00, the state before the SOL mark that crossed midnight.
    assert got == [
        {
            "date": (day_d() + timedelta(days=1)).date(),
            "total_pnl_usdt": D("19.79"),
            "win_rate": D(1),
            "total_trades": 1,
        }
    ]


def test_slippage_analysis(book):
    got = [
        (r["symbol"], r["avg_slippage"], r["median_slippage"], r["max_slippage"])
        for r in run_query(book, "slippage_analysis.sql")
    ]
    assert got == [
        ("BTCUSDT", D("0.2"), pytest.approx(0.2), D("0.3")),
        ("ETHUSDT", D("0.2"), pytest.approx(0.2), D("0.2")),
        ("SOLUSDT", None, None, None),  # no slippage reported: last
    ]


def test_table_sizes(book):
    got = run_query(book, "table_sizes.sql")
    assert sorted(r["tablename"] for r in got) == PAPER_TABLES
    assert {r["schemaname"] for r in got} == {"public"}
    assert all(r["size"].endswith(("bytes", "kB", "MB")) for r in got)
    sizes = rows(
        book,
        "SELECT tablename, pg_total_relation_size(format('%I.%I', schemaname, tablename)) AS n "
        "FROM pg_tables WHERE tablename LIKE 'paper\\_%'",
    )
    by_name = {r["tablename"]: r["n"] for r in sizes}
    ordered = [by_name[r["tablename"]] for r in got]
    assert ordered == sorted(ordered, reverse=True)


def test_index_usage(book):
    got = run_query(book, "index_usage.sql")
    expected = rows(
        book,
        "SELECT tablename, indexname FROM pg_indexes "
        "WHERE schemaname = 'public' AND tablename LIKE 'paper\\_%'",
    )
    assert sorted((r["tablename"], r["indexname"]) for r in got) == sorted(
        (r["tablename"], r["indexname"]) for r in expected
    )
    scans = [r["index_scans"] for r in got]
    assert scans == sorted(scans, reverse=True)
    assert ("paper_orders", "paper_orders_pkey") in {(r["tablename"], r["indexname"]) for r in got}


def test_the_seed_index_usage_query_itself_fails(book):
    """Why index_usage.sql differs from the README: the view has no such columns."""
    seed = (
        "SELECT schemaname, tablename, indexname, idx_scan as index_scans "
        "FROM pg_stat_user_indexes WHERE schemaname = 'public' AND tablename LIKE 'paper_%' "
        "ORDER BY idx_scan DESC"
    )
    with pytest.raises(psycopg.errors.UndefinedColumn):
        rows(book, seed)
