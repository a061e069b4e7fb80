"""The bot's own messages (bot-dialect.md) through real Redis into real PostgreSQL.

Real-shaped entries (tests/support/bot.py: strings everywhere, epoch seconds, None keys missing,
aliases, lowercase values, ERROR, PARTIAL, 54-character ids) mixed with contract messages on the
default streams; duplicates, redeliveries and the audit copy; both arrival orders of request and
result; partial results growing; a results-only run against the reference model; the Redis
eviction-policy warning.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal as D

import pytest
import redis
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pydantic import SecretStr
from structlog.testing import capture_logs

from consumer.settings import Settings
from tests.support import reference
from tests.support.bot import T0, derived_price, request, result
from tests.support.pipeline import (
    crash_read,
    dead_letters,
    position,
    property_settings,
    publish,
    rows,
    run_until_idle,
    snapshot,
)
from tests.support.stats import assert_stats_equal_full_reaggregation

HEX32 = "0123456789abcdef" * 2
SHUTDOWN_ID = f"SHUTDOWN_{HEX32}"
UNWIND_CLIENT = f"paper-unwind-{SHUTDOWN_ID}"  # 54 characters, as the bot's unwind orders


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def orders_by_id(dsn: str) -> dict[str, dict]:
    return {r["order_id"]: r for r in rows(dsn, "SELECT * FROM paper_orders")}


def fills_of(dsn: str, order_id: str) -> list[tuple[str, D, D, D]]:
    return [
        (r["fill_id"], r["quantity"], r["price"], r["fees_usdt"])
        for r in rows(
            dsn,
            "SELECT * FROM paper_fills WHERE order_id = %(o)s ORDER BY filled_at, fill_id",
            {"o": order_id},
        )
    ]


def test_requests_and_results_link_in_either_order_beside_contract_messages(
    settings: Settings, redis_client, db_url
):
    orders, fills = settings.orders_stream, settings.fills_stream
    # A contract order and fill on the same streams.
    publish(redis_client, orders, {"order_id": "c-1", "symbol": "ETHUSDT", "side": "BUY",
            "quantity": "2", "status": "FILLED", "filled_quantity": "2",
            "filled_price": "3000", "timestamp": "2026-11-18T11:00:00Z"})  # fmt: skip
    publish(redis_client, fills, {"fill_id": "cf-1", "order_id": "c-1", "symbol": "ETHUSDT",
            "side": "BUY", "quantity": "2", "price": "3000", "timestamp": T0 - 390})  # fmt: skip
    # Request first, its result 2 s later.
    publish(redis_client, orders, request("BTCUSDT-1795000000", quantity="0.01", ts=T0))
    publish(redis_client, fills, result("MOCK_12345678", client_id="BTCUSDT-1795000000",
            quantity="0.01", price="84010.5", ts=T0 + 2))  # fmt: skip
    # Result first (lowercase values), its request delivered late but stamped 3 s earlier.
    publish(redis_client, fills, result("PAPER_0123456789ab", client_id="BTCUSDT-1795000100",
            side="sell", status="filled", symbol="btcusdt", quantity="0.004",
            price="84100.0", ts=T0 + 103))  # fmt: skip
    publish(redis_client, orders, request("BTCUSDT-1795000100", side="SELL", quantity="0.004",
            ts=T0 + 100))  # fmt: skip
    # A request whose result never comes.
    publish(redis_client, orders, request("BTCUSDT-1795000200", ts=T0 + 200))

    run_until_idle(settings)

    assert dead_letters(redis_client, settings.dlq_stream) == []
    got = orders_by_id(db_url)
    assert set(got) == {"c-1", "MOCK_12345678", "PAPER_0123456789ab", "BTCUSDT-1795000200"}
    first, second, waiting = (
        got["MOCK_12345678"], got["PAPER_0123456789ab"], got["BTCUSDT-1795000200"]
    )  # fmt: skip
    assert (first["client_id"], first["status"], first["created_at"]) == (
        "BTCUSDT-1795000000", "FILLED", at(T0)
    )  # fmt: skip
    assert (first["filled_quantity"], first["filled_price"], first["filled_at"]) == (
        D("0.01"), D("84010.5"), at(T0 + 2)
    )  # fmt: skip
    assert (second["client_id"], second["side"], second["status"], second["created_at"]) == (
        "BTCUSDT-1795000100", "SELL", "FILLED", at(T0 + 100)
    )  # fmt: skip
    assert (waiting["status"], waiting["client_id"], waiting["created_at"]) == (
        "PENDING", "BTCUSDT-1795000200", at(T0 + 200)
    )  # fmt: skip
    assert waiting["price"] is None  # a signal price is not a limit price
    # Everything the bot said is in metadata.
    for row in (first, second):
        meta = row["metadata"]
        assert meta["signal_id"] == f"SIG_{row['client_id']}"
        assert (meta["stop_loss_pct"], meta["reason"]) == ("0.02", "momentum breakout")
        assert (meta["strategy_id"], meta["bot_id"], meta["signal_price"]) == (
            "paper", "cdb-bot-1", "84000.0"
        )  # fmt: skip
    assert first["metadata"]["bot_status"] == "FILLED"
    assert second["metadata"]["bot_status"] == "filled"
    assert waiting["metadata"]["signal_id"] == "SIG_BTCUSDT-1795000200"

    assert fills_of(db_url, "MOCK_12345678") == [
        ("MOCK_12345678:0.01", D("0.01"), D("84010.5"), D(0))
    ]
    assert fills_of(db_url, "PAPER_0123456789ab") == [
        ("PAPER_0123456789ab:0.004", D("0.004"), D("84100"), D(0))
    ]
    assert position(db_url, "BTCUSDT") == (D("0.006"), D("84010.5"), D("0.3580"))
    assert position(db_url, "ETHUSDT") == (D(2), D(3000), D(0))
    (stats,) = rows(db_url, "SELECT * FROM paper_trading_stats WHERE stat_date = '2026-11-18'")
    # Latency: request -> result for the bot (2 s and 3 s), order -> fill for the contract (10 s).
    assert stats["avg_latency_ms"] == D(5000)
    assert (stats["total_orders"], stats["filled_orders"]) == (4, 3)


def test_partial_results_grow_into_fills_and_repeats_never_add_one(
    settings: Settings, redis_client, db_url
):
    audit = f"{settings.fills_stream}.order_results"
    both = settings.model_copy(update={"results_stream": audit})
    partial = result("MOCK_00000001", quantity="1.0", filled="0.4", price="100.0",
                     status="PARTIAL", ts=T0, client_id="BTCUSDT-1")  # fmt: skip
    full = result("MOCK_00000001", quantity="1.0", filled="1.0", price="101.0",
                  status="FILLED", ts=T0 + 5, client_id="BTCUSDT-1")  # fmt: skip
    # The bot reports a partial execution as FILLED with filled < quantity.
    short = result("MOCK_00000002", quantity="2.0", filled="0.5", price="50.0", symbol="ETHUSDT",
                   status="FILLED", ts=T0 + 1, aliases="only")  # fmt: skip
    try:
        for fields in (partial, short, partial, full):
            publish(redis_client, settings.fills_stream, fields)
            publish(redis_client, audit, fields)  # the audit copy
        run_until_idle(both)
        publish(redis_client, settings.fills_stream, full)  # a late duplicate, another run
        publish(redis_client, settings.fills_stream, partial)
        run_until_idle(both)
    finally:
        redis_client.delete(audit)

    assert dead_letters(redis_client, settings.dlq_stream) == []
    second_price = derived_price(D("1.0"), D("101.0"), D("0.4"), D("100.0"))
    assert second_price == D("101.66666667")
    assert fills_of(db_url, "MOCK_00000001") == [
        ("MOCK_00000001:0.4", D("0.4"), D(100), D(0)),
        ("MOCK_00000001:1", D("0.6"), second_price, D(0)),
    ]
    got = orders_by_id(db_url)
    order = got["MOCK_00000001"]
    assert (order["status"], order["filled_quantity"], order["filled_price"]) == (
        "FILLED", D(1), D(101)
    )  # fmt: skip
    assert order["filled_at"] == at(T0)  # the first (partial) execution
    assert position(db_url, "BTCUSDT") == (D(1), D(101), D(0))
    short_row = got["MOCK_00000002"]
    assert (short_row["status"], short_row["metadata"]["bot_status"]) == (
        "PARTIALLY_FILLED", "FILLED"
    )  # fmt: skip
    assert fills_of(db_url, "MOCK_00000002") == [("MOCK_00000002:0.5", D("0.5"), D(50), D(0))]


def test_rejects_errors_fees_and_long_ids(settings: Settings, redis_client, db_url):
    fills = settings.fills_stream
    publish(redis_client, settings.orders_stream, request(UNWIND_CLIENT, side="SELL",
            quantity="0.02", ts=T0))  # fmt: skip
    publish(redis_client, fills, result(SHUTDOWN_ID, client_id=UNWIND_CLIENT, side="SELL",
            quantity="0.02", status="REJECTED", error_message="Order blocked by bot shutdown",
            ts=T0 + 1))  # fmt: skip
    publish(redis_client, fills, result("DRY_RUN_x-1", quantity="0.5", status="ERROR",
            error_message="exchange timeout", ts=T0 + 2))  # fmt: skip
    publish(redis_client, fills, result("PAPER_aaaaaaaaaaaa", quantity="0.5", price="2000.0",
            symbol="ETHUSDT", ts=T0 + 3, metadata={
                "slippage_pct": 0.05, "fee_amount": 0.6, "fee_type": "taker", "fee_pct": 0.06,
                "base_price": 1999.0, "is_partial": False}))  # fmt: skip
    publish(redis_client, fills, result("PAPER_bbbbbbbbbbbb", quantity="1", status="REJECTED",
            price="0.0", ts=T0 + 4,
            metadata={"rejection_reason": "insufficient balance"}))  # fmt: skip
    run_until_idle(settings)

    assert dead_letters(redis_client, settings.dlq_stream) == []
    got = orders_by_id(db_url)
    assert len(UNWIND_CLIENT) == 54
    shut = got[SHUTDOWN_ID]
    assert (shut["client_id"], shut["status"], shut["error_message"], shut["created_at"]) == (
        UNWIND_CLIENT, "REJECTED", "Order blocked by bot shutdown", at(T0)
    )  # fmt: skip
    assert UNWIND_CLIENT not in got  # re-keyed, not left behind
    failed = got["DRY_RUN_x-1"]
    assert (failed["status"], failed["metadata"]["bot_status"]) == ("FAILED", "ERROR")
    paid = got["PAPER_aaaaaaaaaaaa"]
    assert (paid["fees_usdt"], paid["fee_type"], paid["slippage_pct"]) == (
        D("0.6"), "TAKER", D("0.05")
    )  # fmt: skip
    assert paid["metadata"]["base_price"] == "1999.0"
    assert paid["metadata"]["is_partial"] is False
    assert fills_of(db_url, "PAPER_aaaaaaaaaaaa") == [
        ("PAPER_aaaaaaaaaaaa:0.5", D("0.5"), D(2000), D("0.6"))
    ]
    rejected = got["PAPER_bbbbbbbbbbbb"]
    assert (rejected["status"], rejected["rejection_reason"], rejected["filled_price"]) == (
        "REJECTED", "insufficient balance", None
    )  # fmt: skip
    assert rows(db_url, "SELECT count(*) AS n FROM paper_fills")[0]["n"] == 1
    assert position(db_url, "ETHUSDT") == (D("0.5"), D(2000), D("-0.6"))


RESULTS_ONLY = [  # (order id, symbol, side, [(cumulative filled, average price)], quantity)
    ("MOCK_10000001", "BTCUSDT", "BUY", [("0.01", "84000.0")], "0.01"),
    ("MOCK_10000002", "BTCUSDT", "BUY", [("0.01", "85000.0"), ("0.03", "85500.0")], "0.03"),
    ("MOCK_10000003", "BTCUSDT", "SELL", [("0.025", "86000.0")], "0.025"),
    ("MOCK_10000004", "ETHUSDT", "SELL", [("1.5", "3000.0")], "1.5"),
    ("MOCK_10000005", "ETHUSDT", "BUY", [("0.5", "2950.0"), ("2.5", "2975.5")], "2.5"),
    ("MOCK_10000006", "BTCUSDT", "SELL", [("0.02", "83000.0")], "0.02"),
]


def test_a_results_only_run_gives_the_reference_positions(settings: Settings, redis_client):
    rate = D("0.001")
    run = settings.model_copy(update={"bot_default_fee_rate": rate})
    expected: list[reference.RefFill] = []
    ts = T0
    for order_id, symbol, side, steps, quantity in RESULTS_ONLY:
        previous, previous_avg = D(0), D(0)
        for cumulative, avg in steps:
            ts += 7
            status = "FILLED" if cumulative == quantity else "PARTIAL"
            fields = result(order_id, symbol=symbol, side=side, quantity=quantity,
                            filled=cumulative, price=avg, status=status, ts=ts)  # fmt: skip
            publish(redis_client, settings.fills_stream, fields)
            publish(redis_client, settings.fills_stream, fields)  # a publisher retry
            total = D(cumulative)
            price = derived_price(total, D(avg), previous, previous_avg)
            fee = (rate * (total - previous) * price).quantize(D("0.00000001"))
            expected.append(reference.RefFill(f"{order_id}:{total.normalize():f}", symbol, side,
                                              total - previous, price, fee))  # fmt: skip
            previous, previous_avg = total, D(avg)

    run_until_idle(run)

    dsn = run.database_dsn()
    assert dead_letters(redis_client, settings.dlq_stream) == []
    got = {
        r["symbol"]: (r["quantity"], r["avg_entry_price"], r["realized_pnl_usdt"])
        for r in rows(dsn, "SELECT * FROM paper_positions")
    }
    assert got == reference.positions(expected)
    stored = rows(dsn, "SELECT fill_id, quantity, price, fees_usdt FROM paper_fills ORDER BY 1")
    assert [(r["fill_id"], r["quantity"], r["price"], r["fees_usdt"]) for r in stored] == sorted(
        (f.fill_id, f.quantity, f.price, f.fee) for f in expected
    )
    (pnl,) = rows(dsn, "SELECT sum(realized_pnl_usdt) AS r FROM paper_fill_pnl")
    assert pnl["r"] == sum(p[2] for p in got.values())


def test_invalid_bot_messages_are_dead_lettered_with_a_reason(
    settings: Settings, redis_client, db_url
):
    publish(redis_client, settings.fills_stream,
            result("MOCK_1", quantity="1", filled="1", price=None))  # fmt: skip
    publish(redis_client, settings.orders_stream, request("C-1", quantity="-1"))
    run_until_idle(settings)
    reasons = [f["error"] for f in dead_letters(redis_client, settings.dlq_stream)]
    assert any(r.startswith("price: required when filled_quantity is above 0") for r in reasons)
    assert any(r.startswith("quantity: must be greater than 0") for r in reasons)
    assert rows(db_url, "SELECT * FROM paper_orders") == []


def test_results_and_requests_are_independent_of_batch_boundaries(
    settings: Settings, redis_client, make_database
):
    """The same bot history in batches of one entry, and in one batch: identical rows."""
    orders, fills = settings.orders_stream, settings.fills_stream
    history = [
        (fills, result("MOCK_2", client_id="C-2", quantity="1", filled="0.5", price="10.0",
                       status="PARTIAL", ts=T0 + 2)),
        (orders, request("C-1", quantity="1", ts=T0)),
        (orders, request("C-2", quantity="1", ts=T0 + 1)),
        (fills, result("MOCK_1", client_id="C-1", quantity="1", price="11.0", ts=T0 + 3)),
        (orders, request("C-1", quantity="1", ts=T0)),  # repeated request
        (fills, result("MOCK_2", client_id="C-2", quantity="1", price="12.0", ts=T0 + 4)),
        (orders, request("C-3", quantity="1", ts=T0 + 5)),
    ]  # fmt: skip
    for stream, fields in history:
        publish(redis_client, stream, fields)
    run_until_idle(settings.model_copy(update={"batch_max_entries": 1}))
    one_pass = settings.model_copy(
        update={
            "database_url": SecretStr(make_database()),
            "group": "one-pass",
            "batch_max_entries": 1000,
        }
    )
    run_until_idle(one_pass)
    assert snapshot(one_pass.database_dsn()) == snapshot(settings.database_dsn())
    got = orders_by_id(settings.database_dsn())
    assert set(got) == {"MOCK_1", "MOCK_2", "C-3"}
    assert got["MOCK_2"]["created_at"] == at(T0 + 1)


# --- the Redis eviction policy -------------------------------------------------------------------


@pytest.fixture
def eviction_policy(redis_client):
    """Set maxmemory-policy on the test Redis; restore exactly the previous value after."""
    previous = redis_client.config_get("maxmemory-policy")["maxmemory-policy"]
    yield lambda policy: redis_client.config_set("maxmemory-policy", policy)
    redis_client.config_set("maxmemory-policy", previous)


@pytest.mark.parametrize(
    ("policy", "warned"),
    [("allkeys-lru", True), ("allkeys-random", True), ("volatile-lru", False),
     ("noeviction", False)],
)  # fmt: skip
def test_worker_warns_at_start_when_redis_can_evict_its_streams(
    settings: Settings, eviction_policy, policy, warned
):
    eviction_policy(policy)
    with capture_logs() as logs:
        run_until_idle(settings)
    warnings = [e for e in logs if e["event"] == "redis_eviction_policy_can_evict_streams"]
    assert bool(warnings) is warned
    if warned:
        assert warnings[0]["policy"] == policy
        assert warnings[0]["log_level"] == "warning"
        assert "noeviction" in warnings[0]["detail"]
    assert not [e for e in logs if e["event"] == "redis_eviction_policy_unchecked"]


def test_worker_says_when_the_policy_cannot_be_checked(settings: Settings, redis_client):
    user, password = f"paper_noconfig_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    redis_client.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["~*"],
                             channels=["*"], commands=["+@all", "-config"])  # fmt: skip
    try:
        url = redis.Redis.from_url(settings.redis_dsn()).connection_pool.connection_kwargs
        db = url.get("db", 0)
        if "path" in url:  # embedded Redis on a unix socket
            address = f"unix://{user}:{password}@{url['path']}?db={db}"
        else:
            address = f"redis://{user}:{password}@{url['host']}:{url['port']}/{db}"
        limited = settings.model_copy(update={"redis_url": SecretStr(address)})
        with capture_logs() as logs:
            run_until_idle(limited)
    finally:
        redis_client.acl_deluser(user)
    (unchecked,) = [e for e in logs if e["event"] == "redis_eviction_policy_unchecked"]
    assert unchecked["log_level"] == "warning"
    assert "CONFIG GET" in unchecked["reason"]


# --- property: any delivery history of bot messages ends in the reference state ------------------

BOT_TRADE = st.tuples(
    st.sampled_from(["AAAUSDT", "BBBUSDT"]),
    st.sampled_from(["BUY", "SELL"]),
    st.integers(1, 250).map(lambda n: D(n) / 50),  # quantity 0.02 .. 5.00 (halves are exact)
    st.integers(9000, 11000).map(lambda n: D(n) / 100),  # first execution price
    st.integers(9000, 11000).map(lambda n: D(n) / 100),  # final average price
    st.booleans(),  # executed in two steps (a partial result first)
    st.sampled_from(["before", "after", "none"]),  # the request, relative to the results
    st.sampled_from([None, D("0.05")]),  # fee_amount on the final result
)

BOT_HISTORY = st.fixed_dictionaries(
    {
        "trades": st.lists(BOT_TRADE, min_size=1, max_size=15),
        "duplicates": st.lists(st.integers(0, 10_000), max_size=6),
        "chunks": st.integers(1, 3),
        "batch_sizes": st.lists(st.integers(1, 30), min_size=3, max_size=3),
        "crash_reads": st.lists(st.integers(0, 4), min_size=3, max_size=3),
    }
)


def _bot_entries(trades):
    """(stream kind, fields) in publish order, and the fills the results must derive."""
    out: list[tuple[str, dict[str, str]]] = []
    expected: list[reference.RefFill] = []
    for n, (symbol, side, qty, p1, avg, two_steps, req, fee) in enumerate(trades):
        ts = T0 + 1000 * n  # 16.7 minutes apart: the history crosses hours
        order_id, client_id = f"PAPER_{n:012x}", f"{symbol}-{ts}"
        meta = {"fee_amount": fee, "fee_type": "TAKER"} if fee is not None else None
        results = []
        if two_steps:
            half = qty / 2
            results.append(
                result(
                    order_id,
                    symbol=symbol,
                    side=side,
                    quantity=qty,
                    filled=half,
                    price=p1,
                    status="PARTIAL",
                    ts=ts + 1,
                    client_id=client_id,
                )
            )
            price2 = derived_price(qty, avg, half, p1)
            expected.append(
                reference.RefFill(f"{order_id}:{half.normalize():f}", symbol, side, half, p1, D(0))
            )
            expected.append(
                reference.RefFill(
                    f"{order_id}:{qty.normalize():f}", symbol, side, qty - half, price2, fee or D(0)
                )
            )
        else:
            expected.append(
                reference.RefFill(
                    f"{order_id}:{qty.normalize():f}", symbol, side, qty, avg, fee or D(0)
                )
            )
        results.append(
            result(
                order_id,
                symbol=symbol,
                side=side,
                quantity=qty,
                price=avg,
                ts=ts + 2,
                client_id=client_id,
                metadata=meta,
            )
        )
        entries = [("fill", fields) for fields in results]
        ask = ("order", request(client_id, symbol=symbol, side=side, quantity=qty, ts=ts))
        if req == "before":
            entries.insert(0, ask)
        elif req == "after":
            entries.append(ask)
        out.extend(entries)
    return out, expected  # fmt: skip


@hsettings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=BOT_HISTORY)
def test_any_delivery_history_of_bot_messages_ends_in_the_reference_state(
    history, make_database, redis_url
):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    base = property_settings(make_database(), redis_url, "b")
    stream_of = {"order": base.orders_stream, "fill": base.fills_stream}
    try:
        entries, expected = _bot_entries(history["trades"])
        for k in history["duplicates"]:  # the bot re-publishing an entry, later on
            original = k % len(entries)
            entries.insert(original + 1 + k % (len(entries) - original), entries[original])
        size = -(-len(entries) // history["chunks"])
        for c in range(history["chunks"]):
            for kind, fields in entries[c * size : (c + 1) * size]:
                publish(client, stream_of[kind], fields)
            if history["crash_reads"][c]:  # a worker read some entries and died
                crash_read(client, base, history["crash_reads"][c])
            run_until_idle(base.model_copy(update={"batch_max_entries": history["batch_sizes"][c]}))

        dsn = base.database_dsn()
        assert client.xlen(base.dlq_stream) == 0
        got = {
            r["symbol"]: (r["quantity"], r["avg_entry_price"], r["realized_pnl_usdt"])
            for r in rows(dsn, "SELECT * FROM paper_positions")
        }
        assert got == reference.positions(expected)
        stored = rows(dsn, "SELECT fill_id, quantity, price, fees_usdt FROM paper_fills")
        assert sorted(
            (r["fill_id"], r["quantity"], r["price"], r["fees_usdt"]) for r in stored
        ) == (sorted((f.fill_id, f.quantity, f.price, f.fee) for f in expected))
        orders = orders_by_id(dsn)
        assert len(orders) == len(history["trades"])  # requests linked, never left behind
        assert_stats_equal_full_reaggregation(dsn)  # request rows re-keyed and merged included
        for n, trade in enumerate(history["trades"]):
            row = orders[f"PAPER_{n:012x}"]
            requested = trade[6] != "none"
            assert row["created_at"] == at(T0 + 1000 * n + (0 if requested else 1 + (not trade[5])))
            assert row["status"] == "FILLED"

        single = base.model_copy(
            update={"database_url": SecretStr(make_database()), "group": "one-pass",
                    "batch_max_entries": 10_000}
        )  # fmt: skip
        run_until_idle(single)
        one_pass, restarted = snapshot(single.database_dsn()), snapshot(dsn)
        assert one_pass == restarted
    finally:
        client.delete(*stream_of.values(), base.dlq_stream, base.marks_stream or "")
        client.close()


def test_a_result_without_a_symbol_adds_to_its_orders_stored_position(
    settings: Settings, redis_client, db_url
):
    """A result that names no symbol makes its fill on the stored order's symbol: that
    position is read (and locked) like any other, never started afresh over the stored row."""
    first = result("MOCK_00000011", quantity="1.0", filled="0.4", price="100.0",
                   status="PARTIAL", ts=T0, client_id="BTCUSDT-11")  # fmt: skip
    other = result("MOCK_00000012", quantity="1.0", price="100.0", ts=T0 + 1)
    publish(redis_client, settings.fills_stream, first)
    publish(redis_client, settings.fills_stream, other)
    run_until_idle(settings)
    assert position(db_url, "BTCUSDT") == (D("1.4"), D(100), D(0))

    rest = result("MOCK_00000011", quantity="1.0", filled="1.0", price="100.0",
                  status="FILLED", ts=T0 + 5, client_id="BTCUSDT-11")  # fmt: skip
    del rest["symbol"]
    publish(redis_client, settings.fills_stream, rest)
    run_until_idle(settings)
    assert dead_letters(redis_client, settings.dlq_stream) == []
    assert fills_of(db_url, "MOCK_00000011")[-1][:2] == ("MOCK_00000011:1", D("0.6"))
    assert position(db_url, "BTCUSDT") == (D(2), D(100), D(0))
    assert_stats_equal_full_reaggregation(db_url)
