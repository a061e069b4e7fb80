"""Incremental daily statistics (migration 005): always equal to a re-aggregation from scratch.

A hypothesis property drives random batches through real Redis into real PostgreSQL — orders
and fills of a few order ids in any order (fills before their order make placeholders, which
later order events replace), order events that arrive late with an earlier timestamp (the
order's ``created_at`` moves, and with it the latency of fills already stored), every status
(partial, rejected, cancelled), duplicated fill ids, times on both sides of two UTC midnights
and more than a day after their order — and checks after every run that ``paper_trading_stats``
and ``paper_stats_sums`` equal what the tables give from scratch. Then: the migration's
back-fill equals the sums built incrementally, and two workers writing the same dates at once
lose no update and do not deadlock.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer import migrations
from consumer.settings import Settings
from tests.support.pipeline import property_settings, publish, rows, run_until_idle
from tests.support.stats import assert_stats_equal_full_reaggregation, stored_sums

BASE = datetime(2026, 11, 20, 22, 30, tzinfo=UTC)
ORDERS = [f"o{n}" for n in range(5)]


def _symbol(order_id: str) -> str:
    return "AAAUSDT" if int(order_id[1:]) % 2 else "BBBUSDT"


def _at(minutes: int, seconds: int) -> str:
    return (BASE + timedelta(minutes=minutes, seconds=seconds)).isoformat()


# Minutes from BASE: the day before, both sides of midnight (90 min on), the next midnight
# and beyond; some fills land more than a day after their order (no latency then).
MINUTES = st.integers(-600, 3000)


def _order(oid, side, status, filled, slippage, fee, minutes, seconds):  # noqa: PLR0917 - st.builds passes them by position
    optional = {"status": status, "filled_quantity": filled, "slippage_pct": slippage,
                "fees_usdt": fee}  # fmt: skip
    fields = {"order_id": oid, "symbol": _symbol(oid), "side": side, "quantity": "10",
              "timestamp": _at(minutes, seconds)}  # fmt: skip
    return ("order", {**fields, **{k: v for k, v in optional.items() if v is not None}})


def _fill(fid, oid, side, qty, price, fee, minutes, seconds):  # noqa: PLR0917 - st.builds passes them by position
    return ("fill", {"fill_id": f"f{fid}", "order_id": oid, "symbol": _symbol(oid), "side": side,
                     "quantity": qty, "price": price, "fees_usdt": fee,
                     "timestamp": _at(minutes, seconds)})  # fmt: skip


STATUSES = ["PENDING", "SUBMITTED", "PARTIALLY_FILLED", "PARTIAL", "FILLED", "REJECTED",
            "CANCELLED", "FAILED"]  # fmt: skip

ORDER = st.builds(
    _order,
    st.sampled_from(ORDERS),
    st.sampled_from(["BUY", "SELL"]),
    st.sampled_from([None, *STATUSES]),
    st.sampled_from([None, "0", "1", "2.5", "10"]),
    st.sampled_from([None, "0.1", "-0.05", "0.333333", "1.5"]),
    st.sampled_from([None, "0", "0.02"]),
    MINUTES,
    st.integers(0, 59),
)

FILL = st.builds(
    _fill,
    st.integers(0, 12),  # few fill ids: duplicates (same id, other fields) happen
    st.sampled_from(ORDERS),
    st.sampled_from(["BUY", "SELL"]),
    st.sampled_from(["0.5", "1", "2.25"]),
    st.sampled_from(["100", "101.5", "99.33333333"]),
    st.sampled_from(["0", "0.01", "0.33333333"]),
    MINUTES,
    st.integers(0, 59),
)

RUNS = st.lists(
    st.tuples(st.lists(st.one_of(ORDER, FILL), min_size=1, max_size=14), st.integers(1, 9)),
    min_size=1,
    max_size=4,
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(runs=RUNS)
def test_stats_equal_a_full_reaggregation_after_every_batch(runs, make_database, redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    base = property_settings(make_database(), redis_url, "s")
    stream_of = {"order": base.orders_stream, "fill": base.fills_stream}
    try:
        for entries, batch_size in runs:
            for kind, fields in entries:
                publish(client, stream_of[kind], fields)
            run_until_idle(base.model_copy(update={"batch_max_entries": batch_size}))
            assert_stats_equal_full_reaggregation(base.database_dsn())
    finally:
        client.delete(*stream_of.values(), base.dlq_stream, base.marks_stream or "")
        client.close()


def _trades(client: redis.Redis, settings: Settings, prefix: str, count: int) -> None:
    """``count`` orders, each with a fill, some fills first, spread over two UTC dates."""
    for n in range(count):
        order_id, minutes = f"{prefix}{n}", 7 * n
        order = {"order_id": order_id, "symbol": f"{prefix.upper()}USDT", "side": "BUY",
                 "quantity": "1", "status": ["FILLED", "REJECTED", "CANCELLED"][n % 3],
                 "slippage_pct": "0.05", "timestamp": _at(minutes, 0)}  # fmt: skip
        fill = {"fill_id": f"{prefix}f{n}", "order_id": order_id, "symbol": order["symbol"],
                "side": "BUY", "quantity": "1", "price": "100", "fees_usdt": "0.01",
                "timestamp": _at(minutes, 30)}  # fmt: skip
        pair = [(settings.fills_stream, fill), (settings.orders_stream, order)]
        for stream, fields in pair if n % 4 == 0 else reversed(pair):
            publish(client, stream, fields)


def test_the_migration_back_fills_the_sums_the_worker_builds(settings, redis_client, db_url):
    _trades(redis_client, settings, "bf", 40)
    run_until_idle(settings.model_copy(update={"batch_max_entries": 7}))
    built = stored_sums(db_url)
    assert len(built) == 2  # both sides of midnight
    stats = rows(db_url, "SELECT * FROM paper_trading_stats ORDER BY stat_date")

    # An existing database upgraded to 005: the sums come from the rows already there.
    migrations.downgrade(db_url, to=4)
    assert rows(db_url, "SELECT to_regclass('paper_stats_sums') AS t") == [{"t": None}]
    migrations.upgrade(db_url)
    assert stored_sums(db_url) == built
    assert rows(db_url, "SELECT * FROM paper_trading_stats ORDER BY stat_date") == stats

    # ... and the worker carries on from them.
    _trades(redis_client, settings, "bg", 30)
    run_until_idle(settings)
    assert_stats_equal_full_reaggregation(db_url)
    assert rows(db_url, "SELECT sum(total_orders) AS n FROM paper_trading_stats") == [{"n": 70}]


def test_two_workers_writing_the_same_dates_at_once(redis_url, make_database, redis_client):
    dsn = make_database()
    shards = [
        property_settings(dsn, redis_url, f"w{k}").model_copy(
            update={"batch_max_entries": 3, "consumer_name": f"w{k}-{uuid.uuid4().hex[:6]}"}
        )
        for k in range(2)
    ]
    for shard, prefix in zip(shards, ("ka", "kb"), strict=True):
        _trades(redis_client, shard, prefix, 60)
    errors: list[BaseException] = []

    def work(shard: Settings) -> None:
        try:
            run_until_idle(shard)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in shards]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert errors == []
        assert not any(t.is_alive() for t in threads)
        assert_stats_equal_full_reaggregation(dsn)
        got = rows(dsn, "SELECT sum(total_orders) AS n, count(*) AS d FROM paper_trading_stats")
        assert got == [{"n": 120, "d": 2}]
        with psycopg.connect(dsn) as conn:  # every batch of both committed (no lost batch)
            (committed,) = conn.execute(
                "SELECT sum(entries_committed) FROM paper_consumer_offsets"
            ).fetchone() or (0,)
        assert committed == 240
    finally:
        for shard in shards:
            redis_client.delete(*shard.streams(), shard.dlq_stream)
