"""The bot's messages into internal events (consumer/dialect.py), without servers."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from consumer import dialect
from consumer.events import InvalidEventError, OrderStatus, Side
from consumer.records import EntryKey, RawEntry
from consumer.worker import parse_raw
from tests.support.bot import T0, request, result

KINDS = {"stream.orders": "order", "stream.fills": "fill"}


def parse(stream: str, fields: dict[str, str], rate: str = "0"):
    entry = RawEntry(EntryKey(stream, "1795000000000-0"), fields)
    return parse_raw(KINDS, entry, dialect.DialectOptions(default_fee_rate=D(rate)))


def test_result_maps_status_aliases_and_keeps_everything_in_metadata():
    event = parse("stream.fills", result("MOCK_1", quantity="2.0", filled="0.5", price="10.0",
                                         status="FILLED", aliases="only", side="long",
                                         metadata={"fee_amount": "0.01", "fee_type": "maker",
                                                   "slippage_pct": 0.1, "odd": [1]}))  # fmt: skip
    assert isinstance(event, dialect.OrderResultEvent)
    assert (event.status, event.filled_quantity, event.filled_price, event.side) == (
        OrderStatus.PARTIALLY_FILLED, D("0.5"), D("10.0"), Side.BUY
    )  # fmt: skip
    assert (event.fee_amount, event.fees_usdt, event.fee_type, event.slippage_pct) == (
        D("0.01"), D("0.01"), "MAKER", D("0.1")
    )  # fmt: skip
    assert event.metadata["bot_status"] == "FILLED"
    assert event.metadata["odd"] == [D(1)]
    assert (event.metadata["strategy_id"], event.metadata["bot_id"]) == ("paper", "cdb-bot-1")
    assert event.timestamp.timestamp() == T0


@pytest.mark.parametrize(("sent", "stored"), [("ERROR", "FAILED"), ("partial", "PARTIALLY_FILLED"),
                                               ("REJECTED", "REJECTED")])  # fmt: skip
def test_result_statuses(sent, stored):
    event = parse("stream.fills", result("X", status=sent, filled="0.0"))
    assert event.status == stored
    assert event.metadata["bot_status"] == sent


def test_unfit_metadata_values_stay_in_metadata_and_a_bad_object_is_kept_as_text():
    fields = result("X", status="REJECTED", metadata={"fee_type": "rebate", "slippage_pct": "x"})
    event = parse("stream.fills", fields)
    assert (event.fee_type, event.slippage_pct) == (None, None)
    assert event.metadata["fee_type"] == "rebate"
    event = parse("stream.fills", {**fields, "metadata": "not json"})
    assert event.metadata["metadata_text"] == "not json"


def test_conflicting_alias_is_kept_and_a_fill_without_price_is_refused():
    event = parse("stream.fills", {**result("X", filled="1", quantity="1", price="5"),
                                   "filled_size": "0.9"})  # fmt: skip
    assert (event.filled_quantity, event.metadata["filled_size"]) == (D(1), "0.9")
    with pytest.raises(InvalidEventError, match="price: required"):
        parse("stream.fills", result("X", quantity="1", price=None))


def test_request_is_a_pending_order_under_its_client_id():
    event = parse("stream.orders", request("paper-unwind-SHUTDOWN_" + "a" * 32, side="sell"))
    assert isinstance(event, dialect.OrderRequestEvent)
    assert event.order_id == event.client_id == "paper-unwind-SHUTDOWN_" + "a" * 32
    assert (event.status, event.side, event.price) == (OrderStatus.PENDING, Side.SELL, None)
    assert event.metadata["signal_price"] == "84000.0"
    assert set(event.metadata) >= {"signal_id", "stop_loss_pct", "reason", "strategy_id"}


def test_derived_fill_ids_are_stable_and_fit_the_column():
    assert dialect.derived_fill_id("MOCK_1", D("1.50000000")) == "MOCK_1:1.5"
    assert dialect.derived_fill_id("MOCK_1", D("0E-8")) == "MOCK_1:0"
    long_id = dialect.derived_fill_id("P" * 100, D("0.12345678"))
    assert len(long_id) == 100
    assert long_id == dialect.derived_fill_id("P" * 100, D("0.12345678"))
    assert long_id != dialect.derived_fill_id("P" * 100, D("0.12345679"))
