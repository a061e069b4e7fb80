"""Property: whatever the delivery history, the database ends in the reference state.

Hypothesis draws a sequence of trades (orders and their fills, sometimes the fill first), then a
delivery history: duplicated publishes, crashed reads left pending (redelivered later), varying
batch sizes and worker restarts between chunks. Through real Redis into real PostgreSQL the
result must equal (a) an independent reference model computed from the de-duplicated stream
(tests/support/reference.py, which does not use consumer.accounting), and (b) the rows a single
worker produces from the same streams in one pass, so batch boundaries and restarts never show.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import psycopg
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row
from pydantic import SecretStr

from consumer.db import stats as stats_sql
from tests.support import reference
from tests.support.pipeline import (
    SNAPSHOT_QUERIES,
    crash_read,
    property_settings,
    publish,
    rows,
    run_until_idle,
    snapshot,
)

START = datetime(2026, 11, 20, 21, 5, tzinfo=UTC)

TRADE = st.tuples(
    st.sampled_from(["AAAUSDT", "BBBUSDT"]),
    st.sampled_from(["BUY", "SELL"]),
    st.integers(1, 500).map(lambda n: D(n) / 100),  # quantity 0.01 .. 5.00
    st.integers(9000, 11000).map(lambda n: D(n) / 100),  # price 90.00 .. 110.00
    st.sampled_from([D(0), D("0.01"), D("0.33333333")]),  # fee
    st.booleans(),  # publish the fill before its order
)

HISTORY = st.fixed_dictionaries(
    {
        "trades": st.lists(TRADE, min_size=1, max_size=25),
        "duplicates": st.lists(st.integers(0, 10_000), max_size=6),
        "chunks": st.integers(1, 4),
        "batch_sizes": st.lists(st.integers(1, 40), min_size=4, max_size=4),
        "crash_reads": st.lists(st.integers(0, 5), min_size=4, max_size=4),
    }
)


def _time(n: int, extra_s: float = 0.0) -> str:
    """Trade n happens 17 minutes after trade n-1: the history crosses hours and a midnight."""
    return (START + timedelta(minutes=17 * n, seconds=extra_s)).isoformat()


def _entries(trades) -> list[tuple[str, dict[str, str]]]:
    """(stream kind, fields) in publish order."""
    out: list[tuple[str, dict[str, str]]] = []
    for n, (symbol, side, qty, price, fee, fill_first) in enumerate(trades):
        order = {"order_id": f"o{n}", "symbol": symbol, "side": side, "quantity": str(qty),
                 "status": "FILLED", "filled_quantity": str(qty), "filled_price": str(price),
                 "timestamp": _time(n)}  # fmt: skip
        fill = {"fill_id": f"f{n}", "order_id": f"o{n}", "symbol": symbol, "side": side,
                "quantity": str(qty), "price": str(price), "fees_usdt": str(fee),
                "timestamp": _time(n, 0.5)}  # fmt: skip
        pair = (
            [("fill", fill), ("order", order)] if fill_first else [("order", order), ("fill", fill)]
        )
        out.extend(pair)
    return out


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=HISTORY)
def test_any_delivery_history_ends_in_the_reference_state(history, make_database, redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    base = property_settings(make_database(), redis_url, "h")
    stream_of = {"order": base.orders_stream, "fill": base.fills_stream}
    try:
        entries = _entries(history["trades"])
        fills = [fields for kind, fields in entries if kind == "fill"]
        for k in history["duplicates"]:  # publisher retries: the same fill again, later on
            entries.insert(
                min(len(entries), k % (len(entries) + 1)), ("fill", fills[k % len(fills)])
            )
        published: list[dict[str, str]] = []
        size = -(-len(entries) // history["chunks"])
        for c in range(history["chunks"]):
            for kind, fields in entries[c * size : (c + 1) * size]:
                publish(client, stream_of[kind], fields)
                if kind == "fill":
                    published.append(fields)
            if history["crash_reads"][c]:
                # A worker of the same name read some entries and died before committing.
                crash_read(client, base, history["crash_reads"][c])
            run_until_idle(base.model_copy(update={"batch_max_entries": history["batch_sizes"][c]}))

        expected = reference.positions(
            reference.RefFill(f["fill_id"], f["symbol"], f["side"], D(f["quantity"]),
                              D(f["price"]), D(f["fees_usdt"]))
            for f in published
        )  # fmt: skip
        got = {
            r["symbol"]: (r["quantity"], r["avg_entry_price"], r["realized_pnl_usdt"])
            for r in rows(base.database_dsn(), "SELECT * FROM paper_positions")
        }
        assert got == expected
        assert len(rows(base.database_dsn(), "SELECT fill_id FROM paper_fills")) == len(
            history["trades"]
        )
        for stream in stream_of.values():
            assert client.xpending(stream, base.group)["pending"] == 0
        assert client.xlen(base.dlq_stream) == 0

        _assert_stats_equal_full_reaggregation(base.database_dsn())

        # The same streams in one pass, one big batch, into another database: identical rows.
        single = base.model_copy(
            update={"database_url": SecretStr(make_database()), "group": "one-pass",
                    "batch_max_entries": 10_000}
        )  # fmt: skip
        run_until_idle(single)
        assert snapshot(single.database_dsn()) == snapshot(base.database_dsn())
    finally:
        client.delete(*stream_of.values(), base.dlq_stream, base.marks_stream or "")
        client.close()


def _assert_stats_equal_full_reaggregation(dsn: str) -> None:
    """Recompute every date from scratch (inside a rolled-back transaction) and compare."""
    stats_query = SNAPSHOT_QUERIES["stats"]
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        kept = conn.execute(stats_query).fetchall()
        dates = [r["stat_date"] for r in kept]
        conn.execute("DELETE FROM paper_trading_stats")
        conn.execute(stats_sql.REAGGREGATE_STATS, {"dates": dates})
        conn.execute(stats_sql.REFRESH_CUMULATIVE_PNL, {"from": min(dates)})
        assert conn.execute(stats_query).fetchall() == kept
        conn.rollback()
