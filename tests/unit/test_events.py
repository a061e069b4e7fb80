"""The event contract (events.md): what parse_entry accepts, makes of it, and refuses.

Every refusal is checked for a reason that names the field, since that reason is all a user sees
in the dead-letter stream.
"""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from consumer.errors import PaperConsumerError
from consumer.events import (
    TERMINAL_STATUSES,
    FeeType,
    FillEvent,
    InvalidEventError,
    MarkEvent,
    OrderEvent,
    OrderStatus,
    OrderType,
    Side,
    UnsupportedDialectError,
    entry_time,
    status_rank,
)
from consumer.parse import parse_entry

ENTRY_ID = "1700000000000-3"
ENTRY_TIME = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
BOT_ID = "paper-unwind-SHUTDOWN_" + "0123456789abcdef" * 2  # 54 characters, as the bot makes them
SQL = "x'; DROP TABLE paper_orders;--"

ORDER = {"order_id": "o-1", "symbol": "BTCUSDT", "side": "BUY", "quantity": "0.5"}
FILL = {"fill_id": "f-1", "order_id": "o-1", "symbol": "BTCUSDT", "quantity": "0.5", "price": "100"}
MARK = {"symbol": "BTCUSDT", "price": "100"}
BASE = {"order": ORDER, "fill": FILL, "mark": MARK}


def parse(kind: Any, fields: dict[str, str], entry_id: str = ENTRY_ID) -> Any:
    return parse_entry(kind, fields, entry_id)


def reason(kind: Any, fields: dict[str, str]) -> str:
    with pytest.raises(InvalidEventError) as caught:
        parse(kind, fields)
    assert caught.value.reason == str(caught.value)
    return caught.value.reason


def as_data(fields: dict[str, Any]) -> dict[str, str]:
    return {"data": json.dumps(fields)}


# --- valid entries ---------------------------------------------------------------------------


def test_flat_order_with_every_field():
    event = parse(
        "order",
        {
            "type": "order",
            "order_id": "o-1",
            "client_id": "c-1",
            "symbol": "btcusdt",
            "side": "sell",
            "order_type": "limit",
            "quantity": "2",
            "price": "101.5",
            "status": "filled",
            "filled_quantity": "2",
            "filled_price": "101.25",
            "slippage_pct": "-0.012",
            "fees_usdt": "0.2025",
            "fee_type": "taker",
            "rejection_reason": "none",
            "error_message": "none either",
            "timestamp": "2024-01-02T03:04:05Z",
        },
    )
    assert event == OrderEvent(
        order_id="o-1",
        client_id="c-1",
        symbol="BTCUSDT",
        side=Side.SELL,
        order_type=OrderType.LIMIT,
        quantity=Decimal(2),
        price=Decimal("101.5"),
        status=OrderStatus.FILLED,
        filled_quantity=Decimal(2),
        filled_price=Decimal("101.25"),
        slippage_pct=Decimal("-0.012"),
        fees_usdt=Decimal("0.2025"),
        fee_type=FeeType.TAKER,
        rejection_reason="none",
        error_message="none either",
        timestamp=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    assert event.metadata == {}  # `type` is not kept


def test_order_needs_only_its_id():
    event = parse("order", {"order_id": "o-1"})
    assert event == OrderEvent(order_id="o-1", timestamp=ENTRY_TIME)
    assert event.order_type is None  # not given; the column default (MARKET) applies on insert


@pytest.mark.parametrize("envelope", ["data", "payload"])
@pytest.mark.parametrize("kind", ["order", "fill", "mark"])
def test_json_envelope_equals_flat_fields(envelope, kind):
    flat = parse(kind, BASE[kind])
    assert parse(kind, {envelope: json.dumps(BASE[kind])}) == flat
    assert parse(kind, {"type": kind, envelope: json.dumps(BASE[kind])}) == flat


def test_fill_defaults():
    event = parse("fill", FILL)
    assert isinstance(event, FillEvent)
    assert event.fees_usdt == Decimal(0)
    assert (event.side, event.fee_type, event.metadata) == (None, None, {})
    assert event.timestamp == ENTRY_TIME


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0.1", "0.1"),
        (" 0.1 ", "0.1"),
        ("+0.10", "0.10"),
        (".5", "0.5"),
        ("5.", "5"),
        ("1e3", "1000"),
        ("1E-8", "1E-8"),
        ("9999999999.99999999", "9999999999.99999999"),
        ("0.123456785", "0.12345678"),  # 9 decimals: half-even, as DECIMAL(18,8) stores it
        ("0.123456795", "0.12345680"),
        ("0.000000015", "0.00000002"),
    ],
)
def test_decimal_from_string_is_exact_or_rounded_like_the_column(raw, expected):
    event = parse("order", {**ORDER, "quantity": raw})
    assert event.quantity == Decimal(expected)
    assert str(event.quantity) == str(Decimal(expected))  # same digits, not only equal


@pytest.mark.parametrize(
    ("json_text", "expected"),
    [("0.1", "0.1"), ("3", "3"), ("1e3", "1000"), ("1.000000005", "1.00000000"), ('"0.1"', "0.1")],
)
def test_json_numbers_never_pass_through_float(json_text, expected):
    data = f'{{"fill_id": "f", "order_id": "o", "symbol": "BTCUSDT", "price": {json_text}}}'
    event = parse("fill", {"data": data, "quantity": "1"})
    assert str(event.price) == str(Decimal(expected))


def test_slippage_is_rounded_to_six_places_and_may_be_negative():
    event = parse("order", {**ORDER, "slippage_pct": "-0.1234565"})
    assert event.slippage_pct == Decimal("-0.123456")


def test_tiny_non_negative_amounts_round_to_zero():
    event = parse("fill", {**FILL, "fees_usdt": "0.000000004"})
    assert event.fees_usdt == 0
    assert parse("order", {**ORDER, "filled_quantity": "-0.000000001"}).filled_quantity == 0


ENUMS = [
    ("side", "BUY", Side.BUY),
    ("side", "buy", Side.BUY),
    ("side", "Sell", Side.SELL),
    ("side", "long", Side.BUY),
    ("side", "SHORT", Side.SELL),
    ("order_type", "market", OrderType.MARKET),
    ("order_type", "Limit", OrderType.LIMIT),
    ("order_type", "STOP", OrderType.STOP),
    ("order_type", "stop_limit", OrderType.STOP_LIMIT),
    ("status", "pending", OrderStatus.PENDING),
    ("status", "SUBMITTED", OrderStatus.SUBMITTED),
    ("status", "partial", OrderStatus.PARTIALLY_FILLED),
    ("status", "PARTIALLY_FILLED", OrderStatus.PARTIALLY_FILLED),
    ("status", "Filled", OrderStatus.FILLED),
    ("status", "rejected", OrderStatus.REJECTED),
    ("status", "CANCELLED", OrderStatus.CANCELLED),
    ("status", "canceled", OrderStatus.CANCELLED),
    ("status", "failed", OrderStatus.FAILED),
    ("status", "error", OrderStatus.FAILED),
    ("status", " ERROR ", OrderStatus.FAILED),
    ("fee_type", "taker", FeeType.TAKER),
    ("fee_type", "Maker", FeeType.MAKER),
]


@pytest.mark.parametrize(("field", "raw", "expected"), ENUMS)
def test_enum_values_and_aliases(field, raw, expected):
    value = getattr(parse("order", {**ORDER, field: raw}), field)
    assert value is expected
    assert value == expected.value.upper()


def test_status_ranks_never_go_backwards():
    assert [status_rank(s) for s in OrderStatus] == [0, 1, 2, 2, 3, 3, 3, 3]
    assert frozenset(s for s in OrderStatus if status_rank(s) == 3) == TERMINAL_STATUSES


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-01-02T03:04:05Z", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2024-01-02T03:04:05+00:00", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2024-01-02T05:04:05+02:00", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2024-01-01T22:04:05-05:00", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2024-01-02T03:04:05", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),  # no offset: UTC
        ("2024-01-02 03:04:05.250", datetime(2024, 1, 2, 3, 4, 5, 250000, tzinfo=UTC)),
        ("2024-01-02T03:04:05.123456789Z", datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)),
        ("1700000000", ENTRY_TIME),  # seconds
        ("1700000000.25", ENTRY_TIME + timedelta(milliseconds=250)),
        ("1700000000.0000019", ENTRY_TIME + timedelta(microseconds=1)),  # below 1 µs: dropped
        ("1700000000000", ENTRY_TIME),  # milliseconds
        ("1700000000123", ENTRY_TIME + timedelta(milliseconds=123)),
        ("1700000000123.5", ENTRY_TIME + timedelta(microseconds=123500)),
        ("1.7e9", ENTRY_TIME),  # exponent notation is a number too
    ],
)
def test_timestamp_forms_as_strings(raw, expected):
    event = parse("mark", {**MARK, "timestamp": raw})
    assert event.timestamp == expected
    assert event.timestamp.tzinfo is UTC


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("1700000000", ENTRY_TIME),
        ("1700000000.5", ENTRY_TIME + timedelta(milliseconds=500)),
        ("1700000000000", ENTRY_TIME),
        ("1700000000123", ENTRY_TIME + timedelta(milliseconds=123)),
    ],
)
def test_timestamp_forms_as_json_numbers(number, expected):
    data = f'{{"symbol": "BTCUSDT", "price": 1, "timestamp": {number}}}'
    assert parse("mark", {"data": data}).timestamp == expected


@pytest.mark.parametrize(
    ("raw", "read_as"),
    [
        (str(10**11 - 1), "epoch seconds, year 5138"),  # the last value read as seconds
        (str(10**11), "epoch milliseconds, year 1973"),  # the first read as milliseconds
    ],
)
def test_epoch_boundary_is_ten_to_the_eleven(raw, read_as):
    unit, year = read_as.split(", ")
    text = reason("mark", {**MARK, "timestamp": raw})
    assert text.startswith(f"timestamp: {year} is outside 2000-2100")
    assert f"read as {unit}" in text


@pytest.mark.parametrize("timestamp", [None, "", "   "])
def test_missing_timestamp_is_the_entry_id_time(timestamp):
    fields = {**MARK} if timestamp is None else {**MARK, "timestamp": timestamp}
    assert parse("mark", fields).timestamp == ENTRY_TIME
    assert parse("mark", fields, "1700000000123-0").timestamp == ENTRY_TIME + timedelta(
        milliseconds=123
    )


@pytest.mark.parametrize(
    ("entry_id", "expected"),
    [
        ("1700000000000-3", ENTRY_TIME),
        ("1700000000001-0", ENTRY_TIME + timedelta(milliseconds=1)),
        ("0-1", datetime(1970, 1, 1, tzinfo=UTC)),
    ],
)
def test_entry_time(entry_id, expected):
    assert entry_time(entry_id) == expected


@pytest.mark.parametrize(
    "entry_id",
    ["", "abc", "1700000000000", "1700000000000-", "-3", "1-2-3", " 1-2", "*", "9" * 21 + "-0"],
)
def test_entry_time_refuses_malformed_ids(entry_id):
    with pytest.raises(InvalidEventError, match="entry id: must be a Redis stream id"):
        entry_time(entry_id)
    with pytest.raises(InvalidEventError, match="entry id"):
        parse("mark", MARK, entry_id)


@pytest.mark.parametrize(
    "order_id", ["a", BOT_ID, "x" * 100, SQL, 'quote"d', "DRY_RUN_BTCUSDT-1700000000", "ünïcödé"]
)
def test_ids_are_kept_verbatim_when_they_fit(order_id):
    assert parse("order", {**ORDER, "order_id": order_id}).order_id == order_id


def test_bot_ids_of_54_characters_fit():
    assert len(BOT_ID) == 54
    event = parse("fill", {**FILL, "fill_id": BOT_ID + ":0.5", "order_id": BOT_ID})
    assert (event.fill_id, event.order_id) == (BOT_ID + ":0.5", BOT_ID)


def test_ids_and_symbols_are_stripped_and_symbols_upper_cased():
    event = parse(
        "order", {**ORDER, "order_id": "  o-1\t", "client_id": " c ", "symbol": " ethusdt "}
    )
    assert (event.order_id, event.client_id, event.symbol) == ("o-1", "c", "ETHUSDT")


def test_json_integer_ids_become_their_digits():
    event = parse("fill", as_data({**FILL, "fill_id": 12345, "order_id": 7}))
    assert (event.fill_id, event.order_id) == ("12345", "7")


@pytest.mark.parametrize("symbol", ["BT", "BTCUSDT", "1000PEPEUSDT", "A" * 20])
def test_symbols_that_match(symbol):
    assert parse("mark", {**MARK, "symbol": symbol.lower()}).symbol == symbol


def test_unknown_keys_are_kept_in_metadata():
    event = parse("order", {**ORDER, "strategy_id": "s1", "bot_id": "b", "type": "order"})
    assert event.metadata == {"strategy_id": "s1", "bot_id": "b"}


def test_explicit_metadata_is_merged_and_wins_over_extras():
    fields = {**ORDER, "strategy_id": "flat", "reason": "r", "metadata": '{"strategy_id": "meta"}'}
    assert parse("order", fields).metadata == {"strategy_id": "meta", "reason": "r"}


def test_metadata_inside_data_may_be_an_object_and_keeps_exact_numbers():
    data = {**FILL, "venue": "paper", "metadata": {"fee_pct": "0.1", "nested": [1, {"a": None}]}}
    event = parse("fill", {"data": json.dumps(data).replace('"0.1"', "0.1")})
    assert event.metadata == {
        "venue": "paper",
        "fee_pct": Decimal("0.1"),
        "nested": [Decimal(1), {"a": None}],
    }


def test_metadata_numbers_of_any_size_stay_exact():
    data = '{"order_id": "o", "big": 1e999, "long": %s}' % ("7" * 5000)
    assert parse("order", {"data": data}).metadata == {
        "big": Decimal("1e999"),
        "long": Decimal("7" * 5000),
    }


def test_direct_metadata_must_be_json():
    with pytest.raises(ValueError, match="must not contain NaN or Infinity"):
        OrderEvent(order_id="o", timestamp=ENTRY_TIME, metadata={"x": float("nan")})
    with pytest.raises(ValueError, match="must contain only JSON values"):
        OrderEvent(order_id="o", timestamp=ENTRY_TIME, metadata={"x": ENTRY_TIME})


def test_marks_ignore_unknown_keys():
    assert parse("mark", {**MARK, "bid": "99", "volume": "5"}) == MarkEvent(
        symbol="BTCUSDT", price=Decimal(100), timestamp=ENTRY_TIME
    )


@pytest.mark.parametrize(
    ("kind", "fields", "model"),
    [
        ("order", {**FILL, "type": "fill"}, FillEvent),
        ("order", {**FILL, "type": "FILL"}, FillEvent),
        ("fill", {**ORDER, "type": "order"}, OrderEvent),
        ("fill", {**ORDER, "type": "order_update"}, OrderEvent),
        ("order", {**MARK, "type": "mark"}, MarkEvent),
        ("order", {**MARK, "type": "price"}, MarkEvent),
        ("mark", as_data({**FILL, "type": "fill"}), FillEvent),
        ("fill", {**FILL, "type": ""}, FillEvent),  # empty type: route by stream
    ],
)
def test_type_field_routes_over_the_stream_kind(kind, fields, model):
    assert type(parse(kind, fields)) is model


def test_empty_values_count_as_absent():
    event = parse("order", {**ORDER, "price": "", "client_id": "  ", "status": "", "extra": ""})
    assert (event.price, event.client_id, event.status, event.metadata) == (None, None, None, {})
    assert parse("fill", {**FILL, "fees_usdt": ""}).fees_usdt == 0
    assert parse("order", as_data({**ORDER, "price": None})).price is None


def test_flat_fields_beside_an_envelope_fill_gaps_and_the_envelope_wins():
    fields = {"data": json.dumps(ORDER), "quantity": "9", "client_id": "c", "source": "x"}
    event = parse("order", fields)
    assert (event.quantity, event.client_id, event.metadata) == (
        Decimal("0.5"),
        "c",
        {"source": "x"},
    )


def test_long_text_is_capped_and_nul_replaced():
    event = parse("order", {**ORDER, "error_message": "e" * 5000, "rejection_reason": "a\x00b"})
    assert event.error_message is not None
    assert len(event.error_message) == 2000
    assert event.error_message.endswith("…")
    assert event.rejection_reason == "a\ufffdb"
    assert parse("order", {**ORDER, "odd": "x\x00"}).metadata == {"odd": "x\ufffd"}


def test_direct_construction_follows_the_same_rules():
    event = OrderEvent(order_id=" o ", quantity="1.5", side="long", timestamp="1700000000")
    assert (event.order_id, event.quantity, event.side) == ("o", Decimal("1.5"), Side.BUY)
    assert event.timestamp == ENTRY_TIME
    with pytest.raises(ValueError, match="quantitiy"):
        OrderEvent(order_id="o", quantitiy="1", timestamp=ENTRY_TIME)  # a typo is not metadata
    with pytest.raises(ValueError, match="not a float"):
        OrderEvent(order_id="o", quantity=0.1, timestamp=ENTRY_TIME)  # never through float


def test_events_are_frozen():
    event = parse("mark", MARK)
    with pytest.raises(ValueError, match="frozen"):
        event.price = Decimal(1)


# --- invalid entries -------------------------------------------------------------------------

INVALID = [
    # missing required fields
    ("order", {"symbol": "BTCUSDT"}, "order_id: is required"),
    ("order", {"order_id": "   "}, "order_id: is required"),
    ("fill", {k: v for k, v in FILL.items() if k != "fill_id"}, "fill_id: is required"),
    ("fill", {k: v for k, v in FILL.items() if k != "order_id"}, "order_id: is required"),
    ("fill", {k: v for k, v in FILL.items() if k != "symbol"}, "symbol: is required"),
    ("fill", {k: v for k, v in FILL.items() if k != "quantity"}, "quantity: is required"),
    ("fill", {k: v for k, v in FILL.items() if k != "price"}, "price: is required"),
    ("mark", {"price": "1"}, "symbol: is required"),
    ("mark", {"symbol": "BTCUSDT", "price": ""}, "price: is required"),
    ("mark", {}, "symbol: is required; price: is required"),
    # enums
    ("order", {**ORDER, "side": "UP"}, "side: must be one of BUY, SELL, LONG, SHORT (got 'UP')"),
    ("order", {**ORDER, "order_type": "ICEBERG"}, "order_type: must be one of MARKET"),
    ("order", {**ORDER, "status": "DONE"}, "status: must be one of PENDING"),
    ("order", {**ORDER, "fee_type": "FREE"}, "fee_type: must be one of TAKER, MAKER"),
    ("order", {**ORDER, "type": "trade"}, "type: must be one of order, order_update, fill"),
    ("order", as_data({**ORDER, "side": 1}), "side: must be one of"),
    ("order", as_data({**ORDER, "type": 1}), "type: must be one of"),
    # numbers out of their column or sign
    ("order", {**ORDER, "quantity": "-1"}, "quantity: must be greater than 0 (got '-1')"),
    ("order", {**ORDER, "quantity": "0"}, "quantity: must be greater than 0"),
    (
        "order",
        {**ORDER, "quantity": "0.000000004"},
        "quantity: must be greater than 0, and rounds to 0",
    ),
    ("fill", {**FILL, "price": "0.000000005"}, "price: must be greater than 0, and rounds to 0"),
    ("order", {**ORDER, "quantity": "10000000000"}, "quantity: too large for DECIMAL(18,8)"),
    ("order", {**ORDER, "quantity": "1e10"}, "quantity: too large for DECIMAL(18,8)"),
    ("order", {**ORDER, "quantity": "9999999999.999999999"}, "quantity: too large"),
    ("order", {**ORDER, "quantity": "-1e999999999"}, "quantity: too large"),
    ("order", {**ORDER, "price": "0"}, "price: must be greater than 0"),
    ("order", {**ORDER, "filled_price": "-2"}, "filled_price: must be greater than 0"),
    ("order", {**ORDER, "filled_quantity": "-0.1"}, "filled_quantity: must not be negative"),
    ("order", {**ORDER, "fees_usdt": "-0.01"}, "fees_usdt: must not be negative"),
    ("fill", {**FILL, "fees_usdt": "-1"}, "fees_usdt: must not be negative"),
    ("order", {**ORDER, "slippage_pct": "10000"}, "slippage_pct: too large for DECIMAL(10,6)"),
    ("order", {**ORDER, "slippage_pct": "-10000"}, "slippage_pct: too large for DECIMAL(10,6)"),
    ("order", {**ORDER, "filled_quantity": "0.6"}, "filled_quantity: must not exceed quantity"),
    ("mark", {**MARK, "price": "1e99999999999999999999"}, "price: must be a decimal number"),
    # not numbers
    ("order", {**ORDER, "quantity": "NaN"}, "quantity: must be a finite number"),
    ("order", {**ORDER, "quantity": "-Infinity"}, "quantity: must be a finite number"),
    ("order", {**ORDER, "quantity": "inf"}, "quantity: must be a finite number"),
    ("order", {**ORDER, "quantity": "1_000"}, "quantity: must be a decimal number (got '1_000')"),
    ("order", {**ORDER, "quantity": "0x10"}, "quantity: must be a decimal number"),
    ("order", {**ORDER, "quantity": "1,5"}, "quantity: must be a decimal number"),
    ("order", {**ORDER, "quantity": "\u0661\u0662"}, "quantity: must be a decimal number"),
    ("order", {**ORDER, "quantity": "true"}, "quantity: must be a decimal number"),
    ("order", as_data({**ORDER, "quantity": True}), "quantity: must be a number, not a boolean"),
    ("order", as_data({**ORDER, "quantity": [1]}), "quantity: must be a decimal number"),
    ("order", {"data": '{"order_id": "o", "quantity": NaN}'}, "data: is not valid JSON (NaN"),
    ("order", {"data": '{"order_id": "o", "price": Infinity}'}, "data: is not valid JSON"),
    # timestamps
    ("mark", {**MARK, "timestamp": "yesterday"}, "timestamp: must be an ISO-8601 date-time"),
    ("mark", {**MARK, "timestamp": "2024-13-01T00:00:00"}, "timestamp: must be an ISO-8601"),
    ("mark", {**MARK, "timestamp": "1999-12-31T23:59:59Z"}, "timestamp: year 1999 is outside"),
    ("mark", {**MARK, "timestamp": "2101-01-01T00:00:00Z"}, "timestamp: year 2101 is outside"),
    ("mark", {**MARK, "timestamp": "2100-12-31T23:00:00-05:00"}, "timestamp: year 2101"),
    ("mark", {**MARK, "timestamp": "0001-01-01T00:00:00+01:00"}, "timestamp: is far outside"),
    ("mark", {**MARK, "timestamp": "0"}, "timestamp: year 1970 is outside"),
    ("mark", {**MARK, "timestamp": "-1700000000"}, "timestamp: year 1916 is outside"),
    ("mark", {**MARK, "timestamp": "1e30"}, "timestamp: is far outside 2000-2100"),
    # beyond the default decimal context's Emax: was a decimal.Overflow crash, not a reason
    ("mark", {**MARK, "timestamp": "1E+999999999"}, "timestamp: is far outside 2000-2100"),
    ("mark", {**MARK, "timestamp": "-1e1000000"}, "timestamp: is far outside 2000-2100"),
    ("mark", {**MARK, "timestamp": "NaN"}, "timestamp: must be an ISO-8601"),
    ("mark", as_data({**MARK, "timestamp": True}), "timestamp: must be an ISO-8601"),
    # envelopes
    ("order", {"data": "{not json"}, "data: is not valid JSON"),
    ("order", {"payload": "[1, 2]"}, "payload: must be a JSON object, not a list"),
    ("order", {"data": '"text"'}, "data: must be a JSON object, not a string"),
    ("order", {"data": "12"}, "data: must be a JSON object, not a number"),
    ("order", {"data": "null"}, "data: must be a JSON object, not null"),
    ("order", {"data": "{}", "payload": "{}"}, "data, payload: give one JSON envelope"),
    ("order", {"data": '{"order_id": "a", "order_id": "b"}'}, "duplicate key 'order_id'"),
    ("order", {"data": "[" * 100_000 + "]" * 100_000}, "data: is not valid JSON"),
    # symbols
    ("mark", {**MARK, "symbol": "BTC-USDT"}, "symbol: must match ^[A-Z0-9]{2,20}$"),
    ("mark", {**MARK, "symbol": "BTC/USDT"}, "symbol: must match"),
    ("mark", {**MARK, "symbol": "btc usdt"}, "symbol: must match"),
    ("mark", {**MARK, "symbol": "B"}, "symbol: must match"),
    ("mark", {**MARK, "symbol": "A" * 21}, "symbol: must match"),
    ("mark", {**MARK, "symbol": "straße"}, "symbol: must match"),
    ("mark", {**MARK, "symbol": SQL}, "symbol: must match"),
    ("mark", as_data({**MARK, "symbol": 12}), "symbol: must match"),
    # ids
    (
        "order",
        {**ORDER, "order_id": "x" * 101},
        "order_id: must be at most 100 characters (got 101)",
    ),
    ("order", {**ORDER, "client_id": "c" * 101}, "client_id: must be at most 100 characters"),
    ("fill", {**FILL, "fill_id": "f" * 101}, "fill_id: must be at most 100 characters"),
    ("order", {**ORDER, "order_id": "a\nb"}, "order_id: must contain only printable characters"),
    ("order", {**ORDER, "order_id": "a\x00b"}, "order_id: must contain only printable"),
    ("order", as_data({**ORDER, "order_id": 1.5}), "order_id: must be a string or an integer"),
    ("order", as_data({**ORDER, "order_id": {"a": 1}}), "order_id: must be a string"),
    # text and metadata
    ("order", as_data({**ORDER, "error_message": ["x"]}), "error_message: must be a string"),
    ("order", {**ORDER, "metadata": "not json"}, "metadata: is not valid JSON"),
    ("order", {**ORDER, "metadata": "[1]"}, "metadata: must be a JSON object, not a list"),
    ("order", as_data({**ORDER, "metadata": [1]}), "metadata: must be a JSON object"),
]


@pytest.mark.parametrize(("kind", "fields", "expected"), INVALID)
def test_invalid_entries_name_the_field(kind, fields, expected):
    text = reason(kind, fields)
    assert expected in text
    assert "\n" not in text
    assert "validation error" not in text
    assert "Input should" not in text
    assert "pydantic" not in text


def test_several_problems_are_joined_in_one_reason():
    fields = {"order_id": "o", "symbol": "B", "side": "UP", "quantity": "-1"}
    assert reason("order", fields) == (
        "symbol: must match ^[A-Z0-9]{2,20}$ after upper-casing (got 'B'); "
        "side: must be one of BUY, SELL, LONG, SHORT (got 'UP'); "
        "quantity: must be greater than 0 (got '-1')"
    )


def test_long_values_are_shortened_in_the_reason():
    text = reason("order", {**ORDER, "quantity": "9" * 500})
    assert len(text) < 120


def test_invalid_event_error_is_a_project_error_and_a_value_error():
    with pytest.raises(InvalidEventError) as caught:
        parse("mark", {})
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, PaperConsumerError)


def test_an_unknown_stream_kind_is_a_bug_not_a_dead_letter():
    with pytest.raises(ValueError, match="unknown stream kind") as caught:
        parse("trade", MARK)
    assert not isinstance(caught.value, InvalidEventError)


# --- the bot's own messages (bot-dialect.md): recognised, translated in issue 9 -----------------

BOT_RESULT = {
    "type": "order_result",
    "order_id": "PAPER_0123456789ab",
    "status": "FILLED",
    "symbol": "BTCUSDT",
    "side": "BUY",
    "quantity": "0.01",
    "filled_quantity": "0.01",
    "price": "43000.5",
    "timestamp": "1700000000",
    "client_id": "BTCUSDT-1700000000",
}
BOT_REQUEST = {
    "type": "order",
    "symbol": "BTCUSDT",
    "side": "BUY",
    "quantity": "0.01",
    "price": "43000",
    "client_id": "BTCUSDT-1700000000",
    "signal_id": "sig-1",
    "timestamp": "1700000000",
}


@pytest.mark.parametrize("kind", ["fill", "order"])
def test_bot_results_are_an_unsupported_dialect(kind):
    with pytest.raises(UnsupportedDialectError) as caught:
        parse(kind, BOT_RESULT)
    assert caught.value.dialect == "order_result"
    assert caught.value.record == BOT_RESULT
    assert caught.value.reason.startswith("type: 'order_result' is the trading bot's")
    assert isinstance(caught.value, InvalidEventError)


def test_bot_order_requests_are_an_unsupported_dialect():
    with pytest.raises(UnsupportedDialectError) as caught:
        parse("order", BOT_REQUEST)
    assert caught.value.dialect == "order_request"
    assert caught.value.record == BOT_REQUEST
    assert caught.value.reason.startswith("order_id: missing")


def test_an_order_without_id_or_client_id_is_plainly_invalid():
    with pytest.raises(InvalidEventError) as caught:
        parse("order", {k: v for k, v in BOT_REQUEST.items() if k != "client_id"})
    assert type(caught.value) is InvalidEventError
