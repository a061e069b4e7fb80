"""Properties of parse_entry over arbitrary input: it fails only as InvalidEventError, and what it
accepts always fits the schema's columns."""

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.events import (
    FillEvent,
    InvalidEventError,
    MarkEvent,
    OrderEvent,
)
from consumer.parse import parse_entry

# database=None: no .hypothesis directory left in the working tree.
FAST = settings(max_examples=300, deadline=None, database=None)
T0 = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)

KEYS = [
    "order_id", "client_id", "fill_id", "symbol", "side", "order_type", "quantity", "price",
    "status", "filled_quantity", "filled_price", "slippage_pct", "fees_usdt", "fee_type",
    "rejection_reason", "error_message", "timestamp", "metadata", "type", "data", "payload",
]  # fmt: skip
WORDS = [
    "BUY", "sell", "long", "LIMIT", "partial", "error", "taker", "order", "fill", "price",
    "order_result", "order_update", "NaN", "-Infinity", "true", "1e10", "1e-9", "0", "-0",
    "2024-01-02T03:04:05Z", "2024-01-02T03:04:05+02:00", "1700000000", "1700000000123.5",
]  # fmt: skip

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
json_objects = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), json_values, max_size=8)
values = st.one_of(
    st.text(),
    st.sampled_from(WORDS),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.integers().map(str),
    st.floats().map(repr),
    st.datetimes().map(datetime.isoformat),
    json_values.map(json.dumps),
    json_objects.map(json.dumps),
)
entries = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=10), values, max_size=10)
entry_ids = st.integers(0, 2**64 - 1).map(lambda ms: f"{ms}-0") | st.text(max_size=25)
kinds = st.sampled_from(["order", "fill", "mark"])

SYMBOL = re.compile(r"[A-Z0-9]{2,20}")


def fits(amount: Decimal | None, places: int = 8, digits: int = 10) -> bool:
    if amount is None:
        return True
    exponent = amount.as_tuple().exponent
    return amount.is_finite() and abs(amount) < 10**digits and -places <= int(exponent) <= 0


def assert_fits_the_schema(event: Any, entry_id: str) -> None:
    """Whatever is accepted can be inserted: no column limit or check is left to the database."""
    if isinstance(event, OrderEvent | FillEvent):
        for field in ("order_id", "client_id", "fill_id"):
            value = getattr(event, field, None)
            assert value is None or (0 < len(value) <= 100 and value == value.strip())
        assert "\x00" not in json.dumps(event.metadata, default=str)
    if event.symbol is not None:
        assert SYMBOL.fullmatch(event.symbol)
    for field in ("quantity", "price", "filled_quantity", "filled_price", "fees_usdt"):
        assert fits(getattr(event, field, None))
    assert fits(getattr(event, "slippage_pct", None), places=6, digits=4)
    for field in ("quantity", "price", "filled_price"):
        assert getattr(event, field, None) is None or getattr(event, field) > 0
    assert event.timestamp.tzinfo is UTC
    ms = int(entry_id.split("-", maxsplit=1)[0])
    from_entry = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    assert event.timestamp == from_entry or 2000 <= event.timestamp.year <= 2100


@FAST
@given(kinds, entries, entry_ids)
def test_arbitrary_entries_fail_only_as_invalid_events(kind, fields, entry_id):
    try:
        event = parse_entry(kind, fields, entry_id)
    except InvalidEventError as exc:
        reason = exc.reason
    else:
        assert_fits_the_schema(event, entry_id)
        return
    assert reason
    assert "\n" not in reason


@FAST
@given(kinds, json_objects, entry_ids)
def test_arbitrary_json_envelopes_fail_only_as_invalid_events(kind, obj, entry_id):
    try:
        event = parse_entry(kind, {"data": json.dumps(obj)}, entry_id)
    except InvalidEventError:
        return
    assert_fits_the_schema(event, entry_id)


amounts = st.integers(1, 10**18 - 1).map(lambda units: Decimal(units).scaleb(-8))


@FAST
@given(amounts)
def test_amounts_with_up_to_8_decimals_are_kept_exactly(amount):
    fields = {"symbol": "BTCUSDT", "price": str(amount)}
    assert parse_entry("mark", fields, "1-0").price == amount
    as_json = parse_entry("mark", {"data": f'{{"symbol": "BTCUSDT", "price": {amount}}}'}, "1-0")
    assert as_json.price == amount


@FAST
@given(st.decimals(min_value=Decimal("1e-8"), max_value=Decimal("9999999999"), places=12))
def test_more_decimals_round_half_even_like_the_column(amount):
    expected = amount.quantize(Decimal("1e-8"))  # the default context rounds half-even
    fields = {"symbol": "BTCUSDT", "price": str(amount)}
    if expected > 0:
        assert parse_entry("mark", fields, "1-0").price == expected
    else:
        with pytest.raises(InvalidEventError, match=r"^price: must be greater than 0, and rounds"):
            parse_entry("mark", fields, "1-0")


@FAST
@given(st.datetimes(min_value=datetime(2002, 1, 1), max_value=datetime(2100, 1, 1)))
def test_seconds_milliseconds_and_iso_agree(moment):
    moment = moment.replace(tzinfo=UTC, microsecond=moment.microsecond // 1000 * 1000)
    micros = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    seconds = str(Decimal(micros).scaleb(-6))
    millis = str(Decimal(micros).scaleb(-3))
    for timestamp in (seconds, millis, moment.isoformat(), moment.replace(tzinfo=None).isoformat()):
        event = parse_entry(
            "mark", {"symbol": "BTCUSDT", "price": "1", "timestamp": timestamp}, "1-0"
        )
        assert isinstance(event, MarkEvent)
        assert event.timestamp == moment, timestamp


@FAST
@given(st.dictionaries(st.text(min_size=1, max_size=8), st.text(min_size=1), max_size=5))
def test_flat_and_data_forms_give_the_same_event(extras):
    extras = {k: v for k, v in extras.items() if v.strip() and k not in KEYS}
    fields = {"fill_id": "f", "order_id": "o", "symbol": "BTCUSDT", "quantity": "1", "price": "2"}
    flat = parse_entry("fill", {**fields, **extras}, "1700000000000-0")
    assert (
        parse_entry("fill", {"data": json.dumps({**fields, **extras})}, "1700000000000-0") == flat
    )
    assert flat.timestamp == T0
