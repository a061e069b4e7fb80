"""The synthetic bot (consumer/publisher.py) against fakeredis: counts, determinism, contract.

Every valid entry it publishes must pass ``parse_entry`` and every malformed one must fail it, or
the demo's dead-letter count would not match what the publisher reports.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import fakeredis
import pytest

from consumer.events import FillEvent, InvalidEventError, OrderEvent, OrderStatus
from consumer.parse import parse_entry
from consumer.publisher import DEFAULT_SYMBOLS, TAKER_FEE_RATE, Publisher

STREAMS = {"orders_stream": "o", "fills_stream": "f", "marks_stream": "m"}
KINDS = {"o": "order", "f": "fill", "m": "mark"}
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def make(client=None, **kwargs) -> Publisher:
    options = {"seed": 7, "start": START, "run_id": "r1", **STREAMS, **kwargs}
    return Publisher(client or fakeredis.FakeRedis(decode_responses=True), **options)


def published(client) -> dict[str, list[tuple[str, dict[str, str]]]]:
    return {name: client.xrange(name) for name in KINDS}


def test_counts_match_what_is_on_the_streams():
    client = fakeredis.FakeRedis(decode_responses=True)
    stats = make(client, malformed_ratio=0.05).publish(1500)

    on_streams = published(client)
    assert stats.events == 1500 == sum(len(entries) for entries in on_streams.values())
    assert stats.malformed > 0
    assert stats.orders > 0
    assert stats.fills > 0
    assert stats.marks > 0
    valid = defaultdict(int)
    for name, entries in on_streams.items():
        for entry_id, fields in entries:
            try:
                parse_entry(KINDS[name], fields, entry_id)
            except InvalidEventError:
                continue
            valid[name] += 1
    assert (valid["o"], valid["f"], valid["m"]) == (stats.orders, stats.fills, stats.marks)


def test_every_valid_entry_parses_and_every_malformed_one_fails():
    publisher = make(malformed_ratio=0.1)
    kinds = defaultdict(int)
    for entry in publisher.entries(3000):
        kinds[entry.kind] += 1
        kind = KINDS[entry.stream]
        if entry.kind == "malformed":
            with pytest.raises(InvalidEventError):
                parse_entry(kind, entry.fields, "1-0")
        else:
            assert kind == entry.kind
            parse_entry(kind, entry.fields, "1-0")
    assert min(kinds.values()) > 0
    assert set(kinds) == {"order", "fill", "mark", "malformed"}


def test_same_seed_same_entries_other_seed_other_entries():
    first, second = fakeredis.FakeRedis(), fakeredis.FakeRedis()
    third = fakeredis.FakeRedis()
    stats = [make(c, seed=s).publish(800) for c, s in ((first, 3), (second, 3), (third, 4))]
    fields = [[f for name in KINDS for _, f in c.xrange(name)] for c in (first, second, third)]

    counts = [(s.orders, s.new_orders, s.fills, s.marks, s.malformed) for s in stats]
    assert counts[0] == counts[1]
    assert fields[0] == fields[1]
    assert fields[0] != fields[2]


def test_the_order_life_cycle_is_consistent():
    """Fills add up to the order, FILLED means fully filled, fees are 0.1 % taker."""
    publisher = make(malformed_ratio=0)
    orders: dict[str, list[OrderEvent]] = defaultdict(list)
    fills: dict[str, list[FillEvent]] = defaultdict(list)
    for n, entry in enumerate(publisher.entries(5000)):
        event = parse_entry(KINDS[entry.stream], entry.fields, f"{n + 1}-0")
        if isinstance(event, OrderEvent):
            orders[event.order_id].append(event)
        elif isinstance(event, FillEvent):
            fills[event.order_id].append(event)
            assert event.fees_usdt == (event.quantity * event.price * TAKER_FEE_RATE).quantize(
                Decimal("0.00000001")
            )
            assert event.fee_type == "TAKER"

    assert set(fills) <= set(orders)  # an order's first event always comes before its fills
    statuses = defaultdict(int)
    for order_id, events in orders.items():
        assert events[0].status == OrderStatus.PENDING
        assert events[0].metadata == {"strategy": "random_walk", "run_id": "r1"}
        assert {e.symbol for e in events} == {events[0].symbol}
        filled = sum((f.quantity for f in fills[order_id]), Decimal(0))
        assert filled <= events[0].quantity
        assert {f.side for f in fills[order_id]} <= {events[0].side}
        last = events[-1]
        statuses[last.status] += 1
        if last.status == OrderStatus.FILLED:
            assert filled == last.filled_quantity == events[0].quantity
            assert 1 <= len(fills[order_id]) <= 3
        if last.status == OrderStatus.REJECTED:
            assert last.rejection_reason
            assert not fills[order_id]
    assert {OrderStatus.FILLED, OrderStatus.REJECTED, OrderStatus.CANCELLED} <= set(statuses)
    assert any(len(f) > 1 for f in fills.values())  # partial fills happen


def test_timestamps_follow_the_simulated_clock_or_the_wall_clock():
    simulated = [e.fields for e in make(malformed_ratio=0, marks_stream=None).entries(50)]
    times = [datetime.fromisoformat(f["timestamp"]) for f in simulated if "timestamp" in f]
    assert times == sorted(times)
    assert START < times[0] <= times[-1] < START + timedelta(minutes=5)

    live = make(start=None, malformed_ratio=0)
    event = parse_entry("order", live.next_entry().fields, "1-0")
    assert abs(event.timestamp - datetime.now(UTC)) < timedelta(seconds=5)


def test_ids_carry_the_run_so_two_runs_never_collide():
    client = fakeredis.FakeRedis(decode_responses=True)
    make(client, run_id=None, start=None, malformed_ratio=0, seed=1).publish(100)
    time.sleep(0.002)
    make(client, run_id=None, start=None, malformed_ratio=0, seed=1).publish(100)
    ids = [f["order_id"] for _, f in client.xrange("o") if f.get("status") == "PENDING"]
    assert len(ids) == len(set(ids))


def test_malformed_ratio_bounds_and_symbols():
    none = make(malformed_ratio=0).publish(500)
    assert none.malformed == 0
    every = make(malformed_ratio=1).publish(100)
    assert every.malformed == 100
    assert every.orders == every.fills == every.marks == 0

    client = fakeredis.FakeRedis(decode_responses=True)
    make(client, symbols=["DOGEUSDT"], malformed_ratio=0).publish(200)
    marks = [parse_entry("mark", f, i) for i, f in client.xrange("m")]
    assert {mark.symbol for mark in marks} == {"DOGEUSDT"}
    assert make().symbols == DEFAULT_SYMBOLS
    with pytest.raises(ValueError, match="symbols"):
        make(symbols=["btc-usd"])
    with pytest.raises(ValueError, match="malformed_ratio"):
        make(malformed_ratio=1.5)


def test_without_a_mark_stream_no_marks():
    client = fakeredis.FakeRedis(decode_responses=True)
    stats = make(client, marks_stream=None, malformed_ratio=0.1).publish(500)
    assert stats.marks == 0
    assert not client.exists("m")


def test_rate_is_honoured_across_calls_and_stop_ends_publishing():
    publisher = make()
    started = time.monotonic()
    publisher.publish(10, rate_per_s=200)
    publisher.publish(10, rate_per_s=200)
    assert time.monotonic() - started >= 19 / 200 * 0.9
    assert publisher.totals.events == 20

    publisher.stop()
    assert publisher.publish(100, rate_per_s=10).events == 0
    with pytest.raises(ValueError, match="rate_per_s"):
        make().publish(1, rate_per_s=0)


def test_for_settings_publishes_to_the_configured_streams():
    from consumer.settings import Settings  # noqa: PLC0415

    settings = Settings(
        database_url="postgresql://unused/db", redis_url="redis://unused", **STREAMS
    )
    client = fakeredis.FakeRedis(decode_responses=True)
    stats = Publisher.for_settings(client, settings, seed=7, start=START, run_id="r1").publish(300)
    on_streams = published(client)
    assert stats.events == 300 == sum(len(entries) for entries in on_streams.values())
    assert all(on_streams[name] for name in KINDS)
    # The same events as a publisher given the names one by one.
    other = fakeredis.FakeRedis(decode_responses=True)
    make(other).publish(300)
    fields = {name: [f for _, f in entries] for name, entries in on_streams.items()}
    assert {name: [f for _, f in entries] for name, entries in published(other).items()} == fields
