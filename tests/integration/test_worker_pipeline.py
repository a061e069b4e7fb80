"""End to end through real Redis into real PostgreSQL: accounting, idempotency, ordering.

Each test publishes events with XADD, runs a real worker in burst mode (``run --until-idle``),
and reads the rows back. Covers the worked examples of accounting.md, redelivery and duplicates,
fills before their orders, order status rules, and stats equal to a full re-aggregation.
"""

from __future__ import annotations

import itertools
from decimal import Decimal as D

import pytest

from consumer.settings import Settings
from tests.support.pipeline import (
    dead_letters,
    position,
    publish,
    publish_json,
    rows,
    run_until_idle,
    snapshot,
    worker_for,
)

_ids = itertools.count(1)


def trade(
    client,
    settings: Settings,
    symbol: str,
    fill: tuple[str, ...],
    *,
    ts: str = "2026-11-20T10:00:00Z",
) -> str:
    """Publish one filled order and its fill ``(side, qty, price[, fee])``; return the fill id."""
    side, qty, price, fee = (*fill, "0") if len(fill) == 3 else fill
    n = next(_ids)
    order_id, fill_id = f"ord-{n}", f"fill-{n}"
    publish(
        client,
        settings.orders_stream,
        {
            "order_id": order_id,
            "symbol": symbol,
            "side": side,
            "quantity": qty,
            "status": "FILLED",
            "filled_quantity": qty,
            "filled_price": price,
            "fees_usdt": fee,
            "timestamp": ts,
        },
    )
    publish(
        client,
        settings.fills_stream,
        {
            "fill_id": fill_id,
            "order_id": order_id,
            "symbol": symbol,
            "side": side,
            "quantity": qty,
            "price": price,
            "fees_usdt": fee,
            "timestamp": ts,
        },
    )
    return fill_id


WORKED = {
    "A": ([("BUY", "1", "100"), ("BUY", "1", "110"), ("SELL", "1", "120")], ("1", "105", "15")),
    "B": ([("BUY", "2", "100"), ("SELL", "3", "90")], ("-1", "90", "-20")),
    "C": ([("SELL", "1", "50", "0.05"), ("BUY", "1", "40", "0.04")], ("0", "50", "9.91")),
    "D": (
        [("BUY", "0.5", "30000"), ("BUY", "0.25", "31500"), ("SELL", "0.75", "30900")],
        ("0", "30500", "300"),
    ),
    "E": ([("BUY", "1", "100"), ("SELL", "1", "100", "0.1")], ("0", "100", "-0.1")),
    "F": (
        [
            ("BUY", "100", "8"),
            ("BUY", "100", "9"),
            ("SELL", "100", "10"),
            ("BUY", "150", "11"),
            ("SELL", "100", "12"),
            ("SELL", "150", "14"),
        ],
        ("0", "10", "950"),
    ),
    "G": (
        [
            ("SELL", "0.5", "60000", "30"),
            ("BUY", "0.2", "58000", "11.6"),
            ("BUY", "0.5", "59000", "29.5"),
            ("SELL", "0.2", "61000", "12.2"),
        ],
        ("0", "59000", "1016.7"),
    ),
    "H": ([("BUY", "1", "100"), ("SELL", "3", "110"), ("BUY", "2", "120")], ("0", "110", "-10")),
}


@pytest.mark.parametrize("example", sorted(WORKED))
def test_worked_examples_end_to_end(example, settings, redis_client, db_url):
    fills, (q, p, r) = WORKED[example]
    for fill in fills:
        trade(redis_client, settings, "BTCUSDT", fill)
    run_until_idle(settings)
    assert position(db_url, "BTCUSDT") == (D(q), D(p), D(r))


def test_worked_example_g_step_by_step_across_batches(settings, redis_client, db_url):
    """Each fill committed in its own run: stored (rounded) values carry over exactly."""
    expected = [
        ("-0.5", "60000", "-30"),
        ("-0.3", "60000", "358.4"),
        ("0.2", "59000", "628.9"),
        ("0", "59000", "1016.7"),
    ]
    for (side, qty, price, fee), want in zip(WORKED["G"][0], expected, strict=True):
        trade(redis_client, settings, "ETHUSDT", (side, qty, price, fee))
        run_until_idle(settings)
        assert position(db_url, "ETHUSDT") == tuple(D(v) for v in want)


def test_redelivered_and_duplicated_fills_change_nothing(settings, redis_client, db_url):
    fill_id = trade(redis_client, settings, "BTCUSDT", ("BUY", "1", "100"))
    run_until_idle(settings)
    before = snapshot(db_url)
    # The same fill published again (a publisher retry), and the whole stream replayed to a
    # second consumer group against the same database.
    ((_, fields),) = redis_client.xrange(settings.fills_stream, count=1)
    assert fields["fill_id"] == fill_id
    publish(redis_client, settings.fills_stream, fields)
    run_until_idle(settings)
    run_until_idle(settings.model_copy(update={"group": "replay-group"}))
    after = snapshot(db_url)
    assert after["fills"] == before["fills"]
    assert after["positions"] == before["positions"]
    assert after["stats"] == before["stats"]
    assert position(db_url, "BTCUSDT") == (D(1), D(100), D(0))


def test_duplicate_fill_inside_one_batch_counts_once(settings, redis_client, db_url):
    fill = {
        "fill_id": "dup-1",
        "order_id": "o-dup",
        "symbol": "SOLUSDT",
        "side": "BUY",
        "quantity": "2",
        "price": "10",
    }
    publish(redis_client, settings.fills_stream, fill)
    publish(redis_client, settings.fills_stream, fill)
    worker = run_until_idle(settings)
    assert worker.totals.fills == 1
    assert worker.totals.duplicates == 1
    assert position(db_url, "SOLUSDT") == (D(2), D(10), D(0))


def test_fill_before_its_order_is_stored_and_completed_later(settings, redis_client, db_url):
    publish(
        redis_client,
        settings.fills_stream,
        {
            "fill_id": "f-early",
            "order_id": "o-late",
            "symbol": "BTCUSDT",
            "side": "BUY",
            "quantity": "0.4",
            "price": "100",
            "timestamp": "2026-11-20T10:00:05Z",
        },
    )
    run_until_idle(settings)
    (placeholder,) = rows(db_url, "SELECT * FROM paper_orders WHERE order_id = 'o-late'")
    assert placeholder["side"] == "BUY"
    assert placeholder["quantity"] == D("0.4")
    assert position(db_url, "BTCUSDT") == (D("0.4"), D(100), D(0))

    publish(
        redis_client,
        settings.orders_stream,
        {
            "order_id": "o-late",
            "symbol": "BTCUSDT",
            "side": "BUY",
            "quantity": "1",
            "order_type": "LIMIT",
            "price": "100",
            "status": "PARTIALLY_FILLED",
            "filled_quantity": "0.4",
            "filled_price": "100",
            "timestamp": "2026-11-20T10:00:00Z",
        },
    )
    run_until_idle(settings)
    (order,) = rows(db_url, "SELECT * FROM paper_orders WHERE order_id = 'o-late'")
    assert order["quantity"] == D(1)
    assert order["order_type"] == "LIMIT"
    assert order["status"] == "PARTIALLY_FILLED"
    assert order["fill_ratio"] == D("0.4")
    assert "placeholder_from_fill" not in (order["metadata"] or {})
    assert order["created_at"].isoformat() == "2026-11-20T10:00:00+00:00"
    # The position moved once, by the fill only.
    assert position(db_url, "BTCUSDT") == (D("0.4"), D(100), D(0))


def test_order_status_never_moves_backwards(settings, redis_client, db_url):
    base = {"order_id": "o-st", "symbol": "BTCUSDT", "side": "SELL", "quantity": "1"}
    for status in ("PENDING", "SUBMITTED", "CANCELLED", "SUBMITTED", "FILLED"):
        publish(redis_client, settings.orders_stream, {**base, "status": status})
    publish(
        redis_client,
        settings.orders_stream,
        {"order_id": "o-st", "rejection_reason": "late detail fills an empty field"},
    )
    run_until_idle(settings)
    (order,) = rows(
        db_url,
        "SELECT status, rejection_reason, submitted_at FROM paper_orders WHERE order_id = 'o-st'",
    )
    assert order["status"] == "CANCELLED"
    assert order["rejection_reason"] == "late detail fills an empty field"
    assert order["submitted_at"] is not None


def test_json_data_field_and_bot_style_strings(settings, redis_client, db_url):
    publish_json(
        redis_client,
        settings.orders_stream,
        {
            "order_id": "j-1",
            "symbol": "ethusdt",
            "side": "long",
            "quantity": 2,
            "status": "filled",
            "timestamp": 1763632800,
        },
    )
    publish_json(
        redis_client,
        settings.fills_stream,
        {
            "fill_id": "jf-1",
            "order_id": "j-1",
            "symbol": "ETHUSDT",
            "side": "LONG",
            "quantity": "2",
            "price": "3000.123456789",
            "fees_usdt": 0.5,
            "venue": "paper",
        },
    )
    run_until_idle(settings)
    (order,) = rows(db_url, "SELECT symbol, side, status, created_at FROM paper_orders")
    assert (order["symbol"], order["side"], order["status"]) == ("ETHUSDT", "BUY", "FILLED")
    (fill,) = rows(db_url, "SELECT price, metadata FROM paper_fills")
    assert fill["price"] == D("3000.12345679")  # 8 dp, half-even
    assert fill["metadata"]["venue"] == "paper"


def test_stats_equal_a_full_reaggregation(settings, redis_client, db_url):
    trade(redis_client, settings, "BTCUSDT", ("BUY", "1", "100", "0.1"), ts="2026-11-19T23:59:00Z")
    trade(
        redis_client, settings, "BTCUSDT", ("SELL", "1", "110", "0.11"), ts="2026-11-20T00:01:00Z"
    )
    publish(
        redis_client,
        settings.orders_stream,
        {
            "order_id": "rej-1",
            "symbol": "BTCUSDT",
            "side": "BUY",
            "quantity": "1",
            "status": "REJECTED",
            "rejection_reason": "risk",
            "timestamp": "2026-11-20T01:00:00Z",
        },
    )
    run_until_idle(settings.model_copy(update={"batch_max_entries": 2}))
    stats = {
        r["stat_date"].isoformat(): r for r in rows(db_url, "SELECT * FROM paper_trading_stats")
    }
    assert set(stats) == {"2026-11-19", "2026-11-20"}
    day = stats["2026-11-20"]
    assert (day["total_orders"], day["filled_orders"], day["rejected_orders"]) == (2, 1, 1)
    assert day["fill_rate"] == D("0.5")
    assert day["total_volume_usdt"] == D(110)
    assert day["total_fees_usdt"] == D("0.11")
    assert stats["2026-11-19"]["total_volume_usdt"] == D(100)
    # The function agrees with the stats definition of "filled" (FILLED + partial).
    (fn,) = rows(db_url, "SELECT get_paper_fill_rate('BTCUSDT', 100000) AS r")
    assert fn["r"] == D("0.6667")


def test_marks_move_unrealized_pnl(settings, redis_client, db_url):
    trade(redis_client, settings, "BTCUSDT", ("SELL", "0.5", "60000", "30"))
    publish(
        redis_client,
        settings.marks_stream,
        {"symbol": "BTCUSDT", "price": "59500", "timestamp": "2026-11-20T10:00:01Z"},
    )
    publish(
        redis_client,
        settings.marks_stream,  # stale: older than the mark above
        {"symbol": "BTCUSDT", "price": "1", "timestamp": "2026-11-20T09:00:00Z"},
    )
    run_until_idle(settings)
    (pos,) = rows(
        db_url,
        "SELECT current_price, unrealized_pnl_usdt, market_value_usdt, "
        "total_pnl_usdt FROM paper_positions",
    )
    assert pos["current_price"] == D(59500)
    assert pos["unrealized_pnl_usdt"] == D(250)
    assert pos["market_value_usdt"] == D(-29750)
    assert pos["total_pnl_usdt"] == D(220)


def test_progress_is_recorded_per_stream(settings, redis_client, db_url):
    trade(redis_client, settings, "BTCUSDT", ("BUY", "1", "100"))
    last_fill = redis_client.xrevrange(settings.fills_stream, count=1)[0][0]
    run_until_idle(settings)
    offsets = {r["stream_name"]: r for r in rows(db_url, "SELECT * FROM paper_consumer_offsets")}
    assert offsets[settings.fills_stream]["last_entry_id"] == last_fill
    assert offsets[settings.fills_stream]["entries_committed"] == 1
    assert dead_letters(redis_client, settings.dlq_stream) == []


def test_entries_redelivered_after_commit_are_applied_again_but_counted_once(
    settings, redis_client, db_url
):
    """A crash between COMMIT and XACK (or a group moved back) delivers committed entries
    again: they change nothing, and ``entries_committed`` counts each entry once."""
    trade(redis_client, settings, "BTCUSDT", ("BUY", "1", "100"))
    trade(redis_client, settings, "BTCUSDT", ("BUY", "1", "102"))
    run_until_idle(settings)
    for stream in (settings.orders_stream, settings.fills_stream):
        redis_client.xgroup_setid(stream, settings.group, "0")  # everything is delivered again
    trade(redis_client, settings, "BTCUSDT", ("SELL", "1", "110"))  # and one new trade after it
    newest = redis_client.xrevrange(settings.fills_stream, count=1)[0][0]
    worker = run_until_idle(settings)
    assert worker.totals.duplicates == 2  # the two redelivered fills
    offsets = {r["stream_name"]: r for r in rows(db_url, "SELECT * FROM paper_consumer_offsets")}
    assert offsets[settings.orders_stream]["entries_committed"] == 3
    assert offsets[settings.fills_stream]["entries_committed"] == 3
    assert offsets[settings.fills_stream]["last_entry_id"] == newest
    assert position(db_url, "BTCUSDT") == (D(1), D(101), D(9))


def test_a_backlog_of_a_busy_and_a_sparse_stream_is_drained_in_full_batches(
    settings, redis_client, db_url
):
    """Real Redis and PostgreSQL: three orders for each fill, 1,200 entries waiting. Entries
    read but held back for stream order never exceed two batches (they piled up by ~27 % of
    each read before; pipelined, one more batch is read while one commits), batches stay at
    least half full, and every row is there."""
    for n in range(300):
        for k in range(3):
            publish(redis_client, settings.orders_stream, {
                "order_id": f"o-{n}-{k}", "symbol": "BTCUSDT", "side": "BUY", "quantity": "1",
                "timestamp": "2026-11-20T10:00:00Z"})  # fmt: skip
        publish(redis_client, settings.fills_stream, {
            "fill_id": f"f-{n}", "order_id": f"o-{n}-0", "symbol": "BTCUSDT", "side": "BUY",
            "quantity": "1", "price": "100", "timestamp": "2026-11-20T10:00:01Z"})  # fmt: skip
    limit = 40
    fast = settings.model_copy(update={"batch_max_entries": limit, "batch_max_wait_ms": 0})
    streams = (settings.orders_stream, settings.fills_stream)
    read_ahead: list[int] = []
    with worker_for(fast) as worker:
        applied = worker.store.write_batch

        def watch(items, fence=None):  # read, not acknowledged: this batch and what waits
            read_ahead.append(sum(redis_client.xpending(s, fast.group)["pending"] for s in streams))
            return applied(items, fence)

        worker.store.write_batch = watch
        assert worker.run(until_idle=True) == 0
    ahead = 3 if fast.pipeline_commits else 2  # pipelined: one more batch read meanwhile
    assert max(read_ahead) <= ahead * limit, read_ahead
    assert len(read_ahead) <= 1200 // (limit // 2) + 2  # at least half full
    (counts,) = rows(db_url, "SELECT (SELECT count(*) FROM paper_orders) AS orders, "
                             "(SELECT count(*) FROM paper_fills) AS fills")  # fmt: skip
    assert counts == {"orders": 900, "fills": 300}
