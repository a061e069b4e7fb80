"""Snapshots, round trips and daily statistics through the real worker, against hand-computed rows.

Covers: HOURLY and DAILY snapshots in event time (state before the crossing event), a restart
across a boundary giving the rows of a single run, the idle wall-clock tick (once, never twice),
MANUAL snapshots, balance and equity from a starting balance, ``symbol_pnl``, the win rate of
worked examples G and H, every column of ``paper_trading_stats`` for two hand-computed days
(with a late fill for the earlier one), and marks coalesced to one position write per symbol.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import psycopg
import pytest
from pydantic import SecretStr

from consumer import snapshots
from consumer.db import PostgresStore
from consumer.parse import parse_entry
from consumer.records import EntryKey, ParsedEntry, RawEntry
from tests.support.feed import Feed
from tests.support.pipeline import rows, run_until_idle, snapshot

DAY = datetime(2026, 11, 20, tzinfo=UTC)


def at(text: str) -> datetime:
    """``"10:50"`` or ``"+1 00:01"`` (next day) or ``"-1 23:00:00.100"`` → a time around DAY."""
    days, _, clock = text.rpartition(" ")
    hms = clock.split(":")
    seconds = float(hms[2]) if len(hms) > 2 else 0.0
    return DAY + timedelta(
        days=int(days or 0), hours=int(hms[0]), minutes=int(hms[1]), seconds=seconds
    )


def snapshot_rows(dsn: str) -> list[dict]:
    return rows(
        dsn,
        "SELECT snapshot_time, snapshot_type, total_pnl_usdt, realized_pnl_usdt, "
        "unrealized_pnl_usdt, balance_usdt, equity_usdt, total_trades, winning_trades, "
        "losing_trades, win_rate, total_volume_usdt, total_fees_usdt, symbol_pnl, metadata "
        "FROM paper_pnl_snapshots ORDER BY snapshot_time, snapshot_type",
    )


def publish_boundary_day(feed: Feed, part: int | None = None) -> None:
    """Events at 10:50, 11:10, 23:59 and 00:01 (next day); ``part`` 1 or 2 publishes half."""
    if part in (None, 1):
        feed.trade("o1", "BTCUSDT", "BUY", "1", "100", at("10:50"))
        feed.mark("BTCUSDT", "105", at("11:10"))  # crosses 11:00 (state: flat P&L 0)
    if part in (None, 2):
        feed.trade("o2", "BTCUSDT", "SELL", "1", "110", at("23:59"))  # crosses 12:00 … 23:00
        feed.mark("BTCUSDT", "110", at("+1 00:01"))  # crosses 00:00 + DAILY by BTCUSDT's clock
        # ETHUSDT's first event: crosses nothing by its own clock (it has none yet) and is
        # absent from the snapshots at or before 00:01.
        feed.trade("o3", "ETHUSDT", "BUY", "2", "50", at("+1 00:01"))


# --------------------------------------------------------------------------------------------
# Hour and day boundaries in event time
# --------------------------------------------------------------------------------------------


def test_hourly_and_daily_snapshots_at_event_time_boundaries(settings, redis_client, db_url):
    settings = settings.model_copy(update={"start_balance_usdt": D(10000)})
    publish_boundary_day(Feed(redis_client, settings))
    run_until_idle(settings)
    got = snapshot_rows(db_url)
    assert [(r["snapshot_time"], r["snapshot_type"]) for r in got] == [
        (at("11:00"), "HOURLY"),
        *[(at(f"{h}:00"), "HOURLY") for h in range(12, 24)],
        (at("+1 00:00"), "DAILY"),
        (at("+1 00:00"), "HOURLY"),
    ]

    def state(r):
        return (
            r["total_pnl_usdt"], r["realized_pnl_usdt"], r["unrealized_pnl_usdt"],
            r["balance_usdt"], r["equity_usdt"], r["total_trades"], r["winning_trades"],
            r["win_rate"], r["total_volume_usdt"], r["total_fees_usdt"],
        )  # fmt: skip

    # 11:00: long 1 @ 100 marked at its fill price, before the 11:10 mark.
    assert state(got[0]) == (0, 0, 0, 10000, 10000, 0, 0, 0, 100, 0)
    # 12:00 … 23:00: marked at 105, before the 23:59 sale.
    for r in got[1:13]:
        assert state(r) == (5, 0, 5, 10000, 10005, 0, 0, 0, 100, 0)
    # Midnight, DAILY and HOURLY alike: the sale done (+10, one winning trip), the 00:01 ETH buy
    # not yet applied.
    for r in got[13:]:
        assert state(r) == (10, 10, 0, 10010, 10010, 1, 1, 1, 210, 0)
        assert r["symbol_pnl"] == {
            "BTCUSDT": {"pnl": 10, "realized": 10, "unrealized": 0, "trades": 1, "volume": 210}
        }
        assert r["metadata"] == {"source": "event_time"}
    assert got[1]["symbol_pnl"] == {
        "BTCUSDT": {"pnl": 5, "realized": 0, "unrealized": 5, "trades": 0, "volume": 100}
    }


def test_without_a_start_balance_balance_and_equity_are_null(settings, redis_client, db_url):
    publish_boundary_day(Feed(redis_client, settings))
    run_until_idle(settings)
    got = snapshot_rows(db_url)
    assert got
    assert {(r["balance_usdt"], r["equity_usdt"]) for r in got} == {(None, None)}


@pytest.mark.parametrize("batch_max_entries", [1, 1000])
def test_a_restart_across_a_boundary_gives_the_rows_of_one_run(
    settings, redis_client, db_url, make_database, batch_max_entries
):
    settings = settings.model_copy(update={"batch_max_entries": batch_max_entries})
    feed = Feed(redis_client, settings)
    publish_boundary_day(feed, part=1)
    run_until_idle(settings)  # stops at 11:10, between the crossings
    publish_boundary_day(feed, part=2)
    run_until_idle(settings)

    single = settings.model_copy(
        update={"database_url": SecretStr(make_database()), "group": "single"}
    )
    run_until_idle(single)  # every event, one run, into a second database
    restarted, once = snapshot(db_url), snapshot(single.database_dsn())
    assert len(restarted["snapshots"]) == 15
    assert restarted == once


@pytest.mark.parametrize("fills_read", [0, 2])
def test_a_crash_with_one_stream_read_ahead_gives_the_snapshots_of_one_run(
    settings, redis_client, db_url, make_database, fills_read
):
    """A worker read orders far ahead of fills (XREADGROUP's COUNT cuts each stream apart) and
    died. On restart its pending orders must wait for the older fills it never read, or an
    hourly boundary would be crossed before those fills and the snapshot would miss them."""
    feed = Feed(redis_client, settings)
    for n in range(14):  # a trade every 10 minutes from 10:05 to 12:15: crosses 11:00 and 12:00
        feed.trade(f"o{n}", "BTCUSDT", "BUY" if n % 3 else "SELL", "1", str(100 + n),
                   at("10:05") + timedelta(minutes=10 * n))  # fmt: skip
    for name in settings.streams():
        redis_client.xgroup_create(name, settings.group, id="0", mkstream=True)
    redis_client.xreadgroup(settings.group, settings.consumer_name,
                            {settings.orders_stream: ">"}, count=10)  # fmt: skip
    if fills_read:
        redis_client.xreadgroup(settings.group, settings.consumer_name,
                                {settings.fills_stream: ">"}, count=fills_read)  # fmt: skip
    run_until_idle(settings.model_copy(update={"batch_max_entries": 3}))

    single = settings.model_copy(
        update={"database_url": SecretStr(make_database()), "group": "single"}
    )
    run_until_idle(single)
    restarted, once = snapshot(db_url), snapshot(single.database_dsn())
    assert [r["snapshot_time"] for r in restarted["snapshots"]] == [at("11:00"), at("12:00")]
    assert restarted == once


# --------------------------------------------------------------------------------------------
# Idle streams: the wall clock crosses the boundary (PostgresStore.tick)
# --------------------------------------------------------------------------------------------


def test_an_idle_tick_writes_the_crossed_snapshot_once(settings, redis_client, db_url):
    Feed(redis_client, settings).trade("o1", "BTCUSDT", "BUY", "1", "100", at("10:50"))
    run_until_idle(settings)
    assert snapshot_rows(db_url) == []
    store = PostgresStore(db_url, group=settings.group)
    store.open()
    try:
        assert store.tick(at("10:59:59")) == 0  # no boundary crossed yet
        assert store.tick(at("11:00:30")) == 1
        assert store.tick(at("11:00:45")) == 0  # a second tick does not duplicate it
        (row,) = snapshot_rows(db_url)
        assert (row["snapshot_time"], row["snapshot_type"]) == (at("11:00"), "HOURLY")
        assert row["metadata"] == {"source": "wall_clock"}
        assert row["total_volume_usdt"] == 100
        # The clock rests on the boundary: a late event stamped before it crosses nothing.
        assert rows(db_url, "SELECT event_time FROM paper_pnl_clock") == [
            {"event_time": at("11:00")}
        ]
        # Far behind the wall clock (a stopped worker, a backlog): leave it to the next event.
        late = at("11:00") + snapshots.IDLE_TRACKING_WINDOW + timedelta(hours=1)
        assert store.tick(late) == 0
    finally:
        store.close()
    Feed(redis_client, settings).mark("BTCUSDT", "101", at("10:59"))
    run_until_idle(settings)
    assert len(snapshot_rows(db_url)) == 1


def test_an_idle_tick_across_midnight_writes_hourly_and_daily(settings, redis_client, db_url):
    Feed(redis_client, settings).trade("o1", "BTCUSDT", "BUY", "1", "100", at("23:30"))
    run_until_idle(settings)
    store = PostgresStore(db_url, group=settings.group)
    store.open()
    try:
        assert store.tick(at("+1 00:00:05")) == 2
        assert store.tick(at("+1 00:00:10")) == 0
    finally:
        store.close()
    got = [(r["snapshot_time"], r["snapshot_type"]) for r in snapshot_rows(db_url)]
    assert got == [(at("+1 00:00"), "DAILY"), (at("+1 00:00"), "HOURLY")]


def test_snapshot_now_writes_a_manual_snapshot(settings, redis_client, db_url):
    # One Feed: its entry ids grow across the streams, so the mark comes after the fill (a
    # second Feed could give the mark the fill's millisecond or one before: read first, dropped).
    feed = Feed(redis_client, settings)
    feed.trade("o1", "BTCUSDT", "SELL", "2", "50", at("10:00"), fee="1")
    feed.mark("BTCUSDT", "45", at("10:01"))
    run_until_idle(settings)
    store = PostgresStore(db_url, group=settings.group, start_balance=D(500))
    store.open()
    moment = datetime(2026, 11, 20, 10, 17, 3, 123456, tzinfo=UTC)
    try:
        assert store.snapshot_now(moment) == 1
        assert store.snapshot_now(moment) == 0  # same moment: the unique key keeps one
    finally:
        store.close()
    (row,) = snapshot_rows(db_url)
    assert (row["snapshot_time"], row["snapshot_type"]) == (moment, "MANUAL")
    # Short 2 @ 50 marked at 45: unrealized +10, realized −1 (the fee).
    assert (row["realized_pnl_usdt"], row["unrealized_pnl_usdt"], row["total_pnl_usdt"]) == (
        -1,
        10,
        9,
    )
    assert (row["balance_usdt"], row["equity_usdt"]) == (499, 509)
    assert row["metadata"] == {"source": "manual"}
    assert row["symbol_pnl"] == {
        "BTCUSDT": {"pnl": 9, "realized": -1, "unrealized": 10, "trades": 0, "volume": 100}
    }


# --------------------------------------------------------------------------------------------
# Round trips and the win rate (accounting.md, examples G and H)
# --------------------------------------------------------------------------------------------


def test_win_rate_of_examples_g_and_h_is_three_quarters(settings, redis_client, db_url):
    feed = Feed(redis_client, settings)
    g = [("SELL", "0.5", "60000", "30"), ("BUY", "0.2", "58000", "11.6"),
         ("BUY", "0.5", "59000", "29.5"), ("SELL", "0.2", "61000", "12.2")]  # fmt: skip
    h = [("BUY", "1", "100", "0"), ("SELL", "3", "110", "0"), ("BUY", "2", "120", "0")]
    for n, (side, qty, price, fee) in enumerate(g):
        feed.trade(f"g{n}", "ETHUSDT", side, qty, price, at(f"10:0{n}"), fee=fee)
    for n, (side, qty, price, fee) in enumerate(h):
        feed.trade(f"h{n}", "BTCUSDT", side, qty, price, at(f"10:1{n}"), fee=fee)
    feed.mark("BTCUSDT", "120", at("11:00:01"))  # crosses 11:00
    run_until_idle(settings)

    trips = rows(
        db_url,
        "SELECT closing_fill_id, symbol, direction, realized_pnl_usdt, close_reason "
        "FROM paper_round_trips ORDER BY closed_at, closing_fill_id",
    )
    assert [tuple(t.values()) for t in trips] == [
        ("g2-f", "ETHUSDT", "SHORT", D("640.7"), "FLIP"),
        ("g3-f", "ETHUSDT", "LONG", D("376.0"), "FLAT"),
        ("h1-f", "BTCUSDT", "LONG", D(10), "FLIP"),
        ("h2-f", "BTCUSDT", "SHORT", D(-20), "FLAT"),
    ]
    (rate,) = rows(
        db_url,
        "SELECT round(count(*) FILTER (WHERE realized_pnl_usdt > 0)::numeric / count(*), 4) "
        "AS r FROM paper_round_trips",
    )
    assert rate["r"] == D("0.75")
    (snap,) = snapshot_rows(db_url)
    assert (snap["total_trades"], snap["winning_trades"], snap["losing_trades"]) == (4, 3, 1)
    assert snap["win_rate"] == D("0.75")
    assert snap["symbol_pnl"]["ETHUSDT"]["trades"] == 2
    assert snap["symbol_pnl"]["BTCUSDT"]["trades"] == 2
    assert snap["realized_pnl_usdt"] == D("1016.7") + D(-10)


# --------------------------------------------------------------------------------------------
# paper_trading_stats: every column, two hand-computed days and a late fill
# --------------------------------------------------------------------------------------------

STATS_COLUMNS = (
    "total_orders", "filled_orders", "partial_fills", "rejected_orders", "cancelled_orders",
    "fill_rate", "avg_slippage_pct", "avg_fee_pct", "avg_latency_ms", "total_volume_usdt",
    "total_fees_usdt", "daily_pnl_usdt", "cumulative_pnl_usdt",
)  # fmt: skip


def stats(dsn: str) -> dict[str, tuple]:
    got = rows(dsn, "SELECT * FROM paper_trading_stats ORDER BY stat_date")
    return {r["stat_date"].isoformat(): tuple(r[c] for c in STATS_COLUMNS) for r in got}


def order_and_fill(  # noqa: PLR0917 - one line per order below reads like the table
    feed: Feed,
    name: str,
    symbol: str,
    side: str,
    qty: str,
    price: str,
    created: str,
    filled: str,
    fee: str,
    slippage: str | None,
    status: str = "FILLED",
    order_qty: str | None = None,
) -> None:
    feed.order(
        name,
        at(created),
        symbol=symbol,
        side=side,
        quantity=order_qty or qty,
        status=status,
        filled_quantity=qty,
        filled_price=price,
        fees_usdt=fee,
        slippage_pct=slippage,
    )
    feed.fill(f"{name}-f", name, symbol, side, qty, price, at(filled), fee)


def test_every_stats_column_against_hand_computed_days(settings, redis_client, db_url):
    feed = Feed(redis_client, settings)
    # Day D−1 (2026-11-19): p1 SOL BUY 10 @ 20, fee 0.2 (0.1 % of 200), slippage 0.05, 100 ms.
    order_and_fill(feed, "p1", "SOLUSDT", "BUY", "10", "20", "-1 23:00", "-1 23:00:00.100",
                   "0.2", "0.05")  # fmt: skip
    # Day D (2026-11-20):
    # o1 BTC BUY 1 @ 100, fee 0.1 (0.1 %), slippage 0.10, latency 250 ms
    order_and_fill(feed, "o1", "BTCUSDT", "BUY", "1", "100", "10:00", "10:00:00.250", "0.1",
                   "0.10")  # fmt: skip
    # o2 BTC SELL 1 @ 110, fee 0.22 (0.2 %), slippage 0.30, 1000 ms: realized 10 − 0.22
    order_and_fill(feed, "o2", "BTCUSDT", "SELL", "1", "110", "11:00", "11:00:01", "0.22",
                   "0.30")  # fmt: skip
    # o3 ETH BUY 2, 1 filled @ 50, fee 0.025 (0.05 %), slippage 0.20, 500 ms: PARTIALLY_FILLED
    order_and_fill(feed, "o3", "ETHUSDT", "BUY", "1", "50", "12:00", "12:00:00.500", "0.025",
                   "0.20", status="PARTIALLY_FILLED", order_qty="2")  # fmt: skip
    feed.order("o4", at("13:00"), symbol="ETHUSDT", side="BUY", quantity="1", status="REJECTED")
    feed.order("o5", at("14:00"), symbol="ETHUSDT", side="BUY", quantity="1", status="CANCELLED")
    feed.order("o6", at("15:00"), symbol="BTCUSDT", side="BUY", quantity="1", status="SUBMITTED")
    run_until_idle(settings)

    # D: 6 orders; filled = FILLED + PARTIALLY_FILLED = 3 → fill rate 0.5; slippage avg of
    # 0.10, 0.30, 0.20 (o4–o6 carry none); fee % avg of 0.1, 0.2, 0.05 = 0.1166…; latency avg
    # of 250, 1000, 500 = 583.33 ms; volume 100 + 110 + 50; fees 0.1 + 0.22 + 0.025; P&L
    # −0.1 + (10 − 0.22) − 0.025 = 9.655.
    day_d = (6, 3, 1, 1, 1, D("0.5"), D("0.2"), D("0.116667"), D("583.33"), D(260), D("0.345"),
             D("9.655"))  # fmt: skip
    assert stats(db_url) == {
        "2026-11-19": (
            1,
            1,
            0,
            0,
            0,
            D(1),
            D("0.05"),
            D("0.1"),
            D(100),
            D(200),
            D("0.2"),
            D("-0.2"),
            D("-0.2"),
        ),
        "2026-11-20": (*day_d, D("9.455")),
    }

    # A late order and fill for D−1 (event time behind the clock): p2 SOL SELL 10 @ 21, fee 0.21
    # (0.1 %), slippage 0.15, 200 ms: realized 10 − 0.21 = 9.79. D−1 is re-aggregated and the
    # cumulative P&L of every later date moves with it.
    order_and_fill(feed, "p2", "SOLUSDT", "SELL", "10", "21", "-1 23:30", "-1 23:30:00.200",
                   "0.21", "0.15")  # fmt: skip
    run_until_idle(settings)
    assert stats(db_url) == {
        "2026-11-19": (
            2,
            2,
            0,
            0,
            0,
            D(1),
            D("0.1"),
            D("0.1"),
            D(150),
            D(410),
            D("0.41"),
            D("9.59"),
            D("9.59"),
        ),
        "2026-11-20": (*day_d, D("19.245")),
    }
    # The generated fill rate is get_paper_fill_rate's definition over that date.
    (fn,) = rows(db_url, "SELECT get_paper_fill_rate('ETHUSDT', 100000) AS r")
    assert fn["r"] == D("0.3333")  # o3 of o3, o4, o5


# --------------------------------------------------------------------------------------------
# Marks: the latest per symbol per batch, one position write each
# --------------------------------------------------------------------------------------------


def test_many_marks_in_one_batch_update_each_position_once(settings, redis_client, db_url):
    feed = Feed(redis_client, settings)
    feed.trade("o1", "BTCUSDT", "BUY", "1", "100", at("10:00"))
    feed.trade("o2", "ETHUSDT", "SELL", "2", "50", at("10:00"))
    run_until_idle(settings)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t_position_updates (symbol text)")
        conn.execute(
            "CREATE FUNCTION t_count_update() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN INSERT INTO t_position_updates VALUES (NEW.symbol); RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER t_count AFTER UPDATE ON paper_positions "
            "FOR EACH ROW EXECUTE FUNCTION t_count_update()"
        )
    items = []
    for n in range(1, 201):
        symbol, base = ("BTCUSDT", 100) if n % 2 else ("ETHUSDT", 50)
        fields = {
            "symbol": symbol,
            "price": str(base + n),
            "timestamp": (at("10:00") + timedelta(seconds=n)).isoformat(),
        }
        entry_id = f"{1_800_000_000_000 + n}-0"
        event = parse_entry("mark", fields, entry_id)
        items.append(
            ParsedEntry(RawEntry(EntryKey(settings.marks_stream, entry_id), fields), event)
        )
    store = PostgresStore(db_url, group=settings.group)
    store.open()
    try:
        result = store.write_batch(items)
    finally:
        store.close()
    assert result.positions_written == 2
    updates = rows(db_url, "SELECT symbol, count(*) AS n FROM t_position_updates GROUP BY 1")
    assert sorted((r["symbol"], r["n"]) for r in updates) == [("BTCUSDT", 1), ("ETHUSDT", 1)]
    positions = rows(
        db_url,
        "SELECT symbol, current_price, unrealized_pnl_usdt FROM paper_positions ORDER BY symbol",
    )
    # The last marks: BTC 100 + 199 (n = 199), ETH 50 + 200 (n = 200).
    assert [tuple(p.values()) for p in positions] == [
        ("BTCUSDT", D(299), D(199)),
        ("ETHUSDT", D(250), D(-400)),
    ]
