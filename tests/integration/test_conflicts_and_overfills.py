"""Issue 22 (4, 5) on real Redis and PostgreSQL: a fill reusing an applied fill's id with other
values, and a fill that takes an order past its quantity, are dead-lettered with the reason;
an identical redelivery stays a silent duplicate. Whether the first version came in an earlier
batch (read back from paper_fills) or earlier in the same batch, the decision is the same.
"""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from tests.support.pipeline import dead_letters, position, publish, rows, run_until_idle

FILL = {"fill_id": "f-1", "order_id": "o-1", "symbol": "BTCUSDT", "side": "BUY",
        "quantity": "0.6", "price": "100", "timestamp": "2026-01-01T00:00:00Z"}  # fmt: skip
ORDER = {"order_id": "o-1", "symbol": "BTCUSDT", "side": "BUY", "quantity": "1",
         "status": "SUBMITTED", "timestamp": "2026-01-01T00:00:00Z"}  # fmt: skip


@pytest.mark.parametrize("same_batch", [True, False], ids=["same batch", "later batch"])
def test_conflicting_fill_is_dead_lettered_identical_one_is_silent(
    same_batch, settings, redis_client, db_url
):
    publish(redis_client, settings.fills_stream, FILL)
    if not same_batch:
        run_until_idle(settings)
    publish(redis_client, settings.fills_stream, FILL)  # the same fill again: no effect
    bad = publish(redis_client, settings.fills_stream, {**FILL, "price": "101"})

    worker = run_until_idle(settings)

    (letter,) = dead_letters(redis_client, settings.dlq_stream)
    assert letter["source_id"] == bad
    assert "conflicts with stored fill 'f-1'" in letter["error"]
    assert "@ 100," in letter["error"]  # the stored version ...
    assert "@ 101," in letter["error"]  # ... and the one received
    assert rows(db_url, "SELECT price FROM paper_fills") == [{"price": D(100)}]
    assert position(db_url, "BTCUSDT")[0] == D("0.6")
    assert worker.totals.dead_lettered == 1


@pytest.mark.parametrize("same_batch", [True, False], ids=["same batch", "later batch"])
def test_fill_past_the_order_quantity_is_dead_lettered(same_batch, settings, redis_client, db_url):
    publish(redis_client, settings.orders_stream, ORDER)
    publish(redis_client, settings.fills_stream, FILL)
    if not same_batch:
        run_until_idle(settings)
    bad = publish(redis_client, settings.fills_stream, {**FILL, "fill_id": "f-2"})

    run_until_idle(settings)

    (letter,) = dead_letters(redis_client, settings.dlq_stream)
    assert letter["source_id"] == bad
    assert (
        "takes order 'o-1' past its quantity: its fills would total 1.2 of 1" in (letter["error"])
    )
    assert position(db_url, "BTCUSDT")[0] == D("0.6")


def test_an_order_known_only_from_its_fills_keeps_growing(settings, redis_client, db_url):
    publish(redis_client, settings.fills_stream, FILL)
    publish(redis_client, settings.fills_stream, {**FILL, "fill_id": "f-2"})
    run_until_idle(settings)
    assert dead_letters(redis_client, settings.dlq_stream) == []
    (order,) = rows(db_url, "SELECT quantity FROM paper_orders")
    assert order["quantity"] == D("1.2")
    assert position(db_url, "BTCUSDT")[0] == D("1.2")


def test_an_order_created_again_with_other_values_is_dead_lettered(settings, redis_client, db_url):
    publish(redis_client, settings.orders_stream, ORDER)
    run_until_idle(settings)
    publish(redis_client, settings.orders_stream, {**ORDER, "status": "FILLED"})  # an update
    bad = publish(redis_client, settings.orders_stream, {**ORDER, "side": "SELL"})
    run_until_idle(settings)
    (letter,) = dead_letters(redis_client, settings.dlq_stream)
    assert letter["source_id"] == bad
    assert letter["error"] == (
        "conflicts with stored order 'o-1': stored BUY 1 BTCUSDT; received SELL 1 BTCUSDT"
    )
    assert rows(db_url, "SELECT side, status FROM paper_orders") == [
        {"side": "BUY", "status": "FILLED"}
    ]
