"""The fast validation path (fastpath.py) is provably the pydantic path: over generated entries
(valid, near-valid and invalid ones), whenever it returns an event, that event is exactly the one
the pydantic path returns (same model, same field values with the same Python types, Decimal
exponents, datetimes and tzinfo, metadata with its key order, fields set), and whenever the
pydantic path raises, the fast path defers. Also: it does decide the well-formed entries (else
the property above would hold by deferring everything)."""

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum
from typing import Any

import fakeredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from consumer import dialect, events, fastpath
from consumer.events import (
    FillEvent,
    InvalidEventError,
    MarkEvent,
    OrderEvent,
    UnsupportedDialectError,
)
from consumer.fastpath import construct as _construct
from consumer.fastpath import fast_spec as _fast_spec
from consumer.parse import _parse_fast, _parse_validated, parse_entry
from consumer.publisher import Publisher
from tests.support import bot

# database=None: no .hypothesis directory left in the working tree.
MANY = settings(max_examples=1500, deadline=None, database=None)

# --- values, per kind of field: the usual, the odd and the broken --------------------------

AMOUNT_TEXTS = [
    "1", "0.10", "42", "1e3", "1E+3", "1e-9", "0.000000005", "0.000000015", " 1", "1 ", "+1",
    "-1", "-0", "0", "0.00", "-0.000", "00000000001", "0000000000.5", "9999999999.99999999",
    "9999999999.999999999", "10000000000", "1.", ".5", "NaN", "-nan", "sNaN", "Infinity", "-inf",
    "1_000", "١٢", "1e999999999", "1e-999999999", "0x10", "", "  ", "abc", "1,5", "12345.123456789",
    "-0.5", "-9999.999999", "9999.9999995", "-10000", "0.0000001",
]  # fmt: skip
TIME_TEXTS = [
    "2024-01-02T03:04:05Z", "2024-01-02T03:04:05.123Z", "2024-01-02T03:04:05.123456789Z",
    "2024-01-02T03:04:05+02:00", "2024-01-02T03:04:05-05:30", "2024-01-02 03:04:05",
    "2024-01-02", "2024-01-02T03:04", " 2024-01-02T03:04:05Z ", "1999-12-31T23:59:59Z",
    "2101-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00", "1700000000", "1700000000.5",
    "1700000000123", "1700000000123.456", "99999999999", "100000000000", "1e9", "-1", "0",
    "1E+999999999", "NaN", "yesterday", "2024-13-01T00:00:00Z", "2099-01-01T00:00:00.123Z",
]  # fmt: skip
ID_TEXTS = [
    "o1", " o1 ", "paper-bench4-0000001", "x" * 100, "x" * 101, "a\u200bb", "tab\tbed", "é",
    "'; DROP TABLE paper_orders; --", "\x00", "12345",
]  # fmt: skip
SYMBOL_TEXTS = [
    "BTCUSDT",
    "btcusdt",
    " ETHUSDT ",
    "B",
    "A" * 20,
    "A" * 21,
    "ß",
    "BTC-USDT",
    "ＢＴＣ",
]
ENUM_TEXTS = [
    "BUY", "buy", " Sell ", "LONG", "short", "SIDEWAYS", "MARKET", "limit", "STOP_LIMIT", "stop",
    "PENDING", "submitted", "PARTIAL", "partially_filled", "FILLED", "REJECTED", "CANCELED",
    "cancelled", "FAILED", "ERROR", "TAKER", "maker", "",
]  # fmt: skip
TEXT_TEXTS = ["insufficient balance", " padded ", "nul\x00inside", "x" * 2500, "ünïcödé"]
TYPE_TEXTS = ["order", "ORDER", " fill ", "mark", "price", "order_update", "order_result", "trade"]
METADATA_TEXTS = [
    '{"strategy": "random_walk"}', '{"n": 1.50, "big": 1e400, "list": [1, "a", null, true]}',
    '{"nested": {"deep": {"x": "\\u0000"}}}', "[]", '"text"', "null", "{", '{"a": NaN}',
    '{"a": 1, "a": 2}', "{}",
]  # fmt: skip

text = st.text(max_size=12)
amounts = st.one_of(
    st.sampled_from(AMOUNT_TEXTS),
    st.decimals(allow_nan=False, allow_infinity=False, places=8).map(str),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.integers(-(10**12), 10**12).map(str),
    st.tuples(st.integers(0, 10**10), st.integers(0, 10**9)).map(lambda t: f"{t[0]}.{t[1]}"),
    st.tuples(st.integers(0, 10**4), st.integers(0, 10**7)).map(lambda t: f"-{t[0]}.{t[1]}"),
)
times = st.one_of(
    st.sampled_from(TIME_TEXTS),
    st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2110, 1, 1)).map(
        datetime.isoformat
    ),
    st.integers(0, 5 * 10**12).map(str),
    st.decimals(min_value=0, max_value=5 * 10**12, places=4).map(str),
)
ids = st.one_of(st.sampled_from(ID_TEXTS), text, st.text(min_size=90, max_size=110))
symbols = st.one_of(
    st.sampled_from(SYMBOL_TEXTS), st.from_regex(r"[A-Za-z0-9]{1,22}", fullmatch=True)
)
enums = st.sampled_from(ENUM_TEXTS)
anything = st.one_of(
    text, st.sampled_from(AMOUNT_TEXTS + TIME_TEXTS + ENUM_TEXTS + ID_TEXTS + TEXT_TEXTS)
)

# Which values a field usually gets; every field also sometimes gets anything at all.
BY_FIELD: dict[str, Any] = {
    **dict.fromkeys(("order_id", "client_id", "fill_id"), ids),
    "symbol": symbols,
    **dict.fromkeys(("side", "order_type", "status", "fee_type"), enums),
    **dict.fromkeys(
        ("quantity", "price", "filled_quantity", "filled_price", "fees_usdt", "slippage_pct"),
        amounts,
    ),
    **dict.fromkeys(("rejection_reason", "error_message"), st.sampled_from(TEXT_TEXTS) | text),
    "timestamp": times,
    "metadata": st.sampled_from(METADATA_TEXTS),
    "type": st.sampled_from(TYPE_TEXTS),
}
FIELDS = [name for name in BY_FIELD if name != "type"]
EXTRA_KEYS = ["strategy", "run_id", "bid", "note", "filled_size", "avg_fill_price", "data2"]


# Extra keys end up in metadata: text _clean changes (NUL, lone surrogates) and text it keeps.
EXTRA_TEXTS = ["nul\x00inside", "\ud800", "a\udfffb", "é", "plain", " padded ", "\x01"]


def field_value(name: str) -> Any:
    usual = BY_FIELD.get(name, st.sampled_from(EXTRA_TEXTS) | text)
    return st.one_of(usual, anything)


@st.composite
def records(draw: Any, kind: str) -> dict[str, str]:
    """Mostly the keys ``kind`` needs, with usual values; sometimes one missing, odd or extra."""
    needed = {
        "order": ["order_id"],
        "fill": ["fill_id", "order_id", "symbol", "quantity", "price"],
        "mark": ["symbol", "price"],
    }[kind]
    keys = [k for k in needed if draw(st.integers(0, 9)) > 0]  # sometimes one is missing
    keys += draw(st.lists(st.sampled_from(FIELDS + EXTRA_KEYS + ["type"]), max_size=8))
    record = {key: draw(field_value(key)) for key in dict.fromkeys(keys)}
    if kind == "order" and draw(st.booleans()):  # both sizes valid: over-filled or not
        sizes = st.sampled_from(["1", "2", "0.5", "1.00000001", "1.000000001", "2e0"])
        record |= {"quantity": draw(sizes), "filled_quantity": draw(sizes)}
    return record


def json_form(record: dict[str, str], numbers: bool) -> dict[str, Any]:
    """The record as a JSON envelope would carry it; with ``numbers``, numeric text as numbers."""
    if not numbers:
        return record
    out: dict[str, Any] = {}
    for key, value in record.items():
        try:
            out[key] = json.loads(value) if value.strip() else value
        except ValueError:
            out[key] = value
    return out


ENTRY_IDS = [
    "1700000000000-0", "253402300799999-0", "253402300800000-0", "99999999999999999999-0",
    "999999999999999999999-0", "1-" + "9" * 20, "1-" + "9" * 21, "1700000000000", "-1", "1-",
    "1-0-0", "\u0661-0", " 1-0",
]  # fmt: skip


@st.composite
def entries(draw: Any) -> tuple[str, dict[str, str], str]:
    kind = draw(st.sampled_from(["order", "fill", "mark"]))
    record = draw(records(kind))
    shape = draw(
        st.sampled_from(["flat", "flat", "data", "payload", "both", "broken", "extra", "bot"])
    )
    if shape == "bot":  # the trading bot's own messages (bot-dialect.md), on any stream
        make = draw(st.sampled_from([bot.result, bot.request]))
        key = "order_id" if make is bot.result else "client_id"
        fields = make(draw(ids), quantity=draw(amounts), ts=draw(times))
        fields[key] = draw(ids)
    elif shape == "flat":
        fields = record
    elif shape in ("data", "payload"):
        obj = json_form(record, draw(st.booleans()))
        fields = {shape: json.dumps(obj)}
        if draw(st.booleans()):
            fields["type"] = draw(st.sampled_from(TYPE_TEXTS))
    elif shape == "both":
        fields = {"data": json.dumps(record), "payload": json.dumps(record)}
    elif shape == "broken":
        fields = {"data": json.dumps(record)[:-1]}
    else:  # an envelope beside flat fields, or an empty one
        fields = {**record, "data": draw(st.sampled_from(["", " ", json.dumps({"note": "x"})]))}
    entry_id = draw(
        st.one_of(
            st.integers(0, 2**64).map(lambda ms: f"{ms}-{ms % 7}"), st.sampled_from(ENTRY_IDS), text
        )
    )
    return kind, fields, entry_id


# --- strict sameness ---------------------------------------------------------------------------


def assert_same(fast: Any, slow: Any, where: str = "event") -> None:
    """Equal AND of the same Python types all the way down (== alone would take Decimal("1.0")
    for Decimal("1.00"), 1 for True, and two datetimes in different zones for the same)."""
    assert type(fast) is type(slow), (where, fast, slow)
    if isinstance(slow, BaseModel):
        assert fast.__pydantic_fields_set__ == slow.__pydantic_fields_set__, where
        assert fast.__pydantic_extra__ == slow.__pydantic_extra__, where
        assert fast.__pydantic_private__ == slow.__pydantic_private__, where
        assert list(fast.__dict__) == list(slow.__dict__), where
        for key, value in slow.__dict__.items():
            assert_same(fast.__dict__[key], value, f"{where}.{key}")
    elif isinstance(slow, Decimal):
        assert fast.as_tuple() == slow.as_tuple(), (where, fast, slow)
    elif isinstance(slow, datetime):
        assert fast == slow, where
        assert fast.tzinfo is slow.tzinfo, where
        assert fast.isoformat() == slow.isoformat(), where  # incl. fold and microseconds
    elif isinstance(slow, dict):
        assert list(fast) == list(slow), where
        for key, value in slow.items():
            assert_same(fast[key], value, f"{where}[{key!r}]")
    elif isinstance(slow, list):
        assert len(fast) == len(slow), where
        for i, (a, b) in enumerate(zip(fast, slow, strict=True)):
            assert_same(a, b, f"{where}[{i}]")
    else:
        assert fast == slow, (where, fast, slow)
        assert not isinstance(slow, Enum) or fast is slow, where


PLUS_1 = timezone(timedelta(hours=1))


def test_assert_same_tells_what_equality_does_not():
    for a, b in [
        (Decimal("1.0"), Decimal("1.00")),
        (datetime(2024, 1, 1, 1, tzinfo=PLUS_1), datetime(2024, 1, 1, tzinfo=UTC)),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
        (True, 1),
    ]:  # fmt: skip
        assert a == b
        try:
            assert_same(a, b)
        except AssertionError:
            continue
        raise AssertionError(f"assert_same took {a!r} for {b!r}")


# --- the properties ----------------------------------------------------------------------------


def slow_result(kind: str, fields: dict[str, Any], entry_id: str) -> Any:
    try:
        return _parse_validated(kind, fields, entry_id)  # type: ignore[arg-type]
    except InvalidEventError as exc:
        return exc


def fast_result(kind: str, fields: dict[str, Any], entry_id: str) -> Any:
    try:
        return _parse_fast(kind, fields, entry_id)  # type: ignore[arg-type]
    except UnsupportedDialectError as exc:
        return exc


def parse_result(kind: str, fields: dict[str, Any], entry_id: str) -> Any:
    try:
        return parse_entry(kind, fields, entry_id)  # type: ignore[arg-type]
    except InvalidEventError as exc:
        return exc


@MANY
@given(entries())
def test_fast_path_returns_the_validated_event_or_defers(entry):
    kind, fields, entry_id = entry
    slow = slow_result(kind, fields, entry_id)
    fast = fast_result(kind, fields, entry_id)
    if isinstance(fast, UnsupportedDialectError):  # the bot's messages: the same routing signal
        assert type(slow) is UnsupportedDialectError
        assert (fast.reason, fast.dialect) == (slow.reason, slow.dialect)
        assert_same(fast.record, slow.record)
    elif isinstance(slow, InvalidEventError):
        assert fast is None, (slow.reason, fast)
    elif fast is not None:
        assert_same(fast, slow)
    # parse_entry, whichever path decides, gives the validated result (or the same reason).
    result = parse_result(kind, fields, entry_id)
    if isinstance(slow, InvalidEventError):
        assert type(result) is type(slow)
        assert result.reason == slow.reason
    else:
        assert_same(result, slow)


python_values = st.one_of(
    amounts, times, ids, enums, text, st.none(), st.booleans(), st.integers(),
    st.floats(allow_nan=True), st.decimals(allow_nan=True, allow_infinity=True),
    st.datetimes(timezones=st.sampled_from([None, UTC, timezone(timedelta(hours=-3))])),
    st.sampled_from([events.Side.BUY, events.OrderStatus.PARTIAL, events.FeeType.MAKER]),
    st.dictionaries(text, st.one_of(text, st.integers(), st.decimals(), st.none()), max_size=3),
    st.lists(text, max_size=2),
)  # fmt: skip
MODELS = [
    OrderEvent, FillEvent, MarkEvent, dialect.OrderResultEvent, dialect.OrderRequestEvent,
]  # fmt: skip


@st.composite
def model_values(draw: Any) -> tuple[type[BaseModel], dict[str, Any]]:
    model = draw(st.sampled_from(MODELS))
    names = [*model.model_fields, "extra_key"]
    keys = draw(st.lists(st.sampled_from(names), max_size=len(names)))
    required = [n for n, info in model.model_fields.items() if info.is_required()]
    if draw(st.integers(0, 4)):  # mostly with the required ones
        keys = required + keys
    values = {key: draw(st.one_of(field_value(key), python_values)) for key in keys}
    return model, values


@MANY
@given(model_values())
def test_validate_is_model_validate(case):
    """fastpath.validate (the dialect's translation uses it) equals model_validate or defers."""
    model, values = case
    spec = _fast_spec(model)
    assert spec is not None, model
    try:
        slow: Any = model.model_validate(values)
    except ValidationError:
        slow = None
    fast = _construct(spec, values)
    if slow is None:
        assert fast is None
    elif fast is not None:
        assert_same(fast, slow)


# --- it does decide the usual entries --------------------------------------------------------


def published(n: int) -> list[tuple[str, dict[str, str], str]]:
    client = fakeredis.FakeRedis(decode_responses=True)
    Publisher(
        client, orders_stream="o", fills_stream="f", marks_stream="m", seed=4,
        malformed_ratio=0.0, start=datetime(2099, 1, 1, tzinfo=UTC), run_id="fast",
    ).publish(n)  # fmt: skip
    kinds = {"o": "order", "f": "fill", "m": "mark"}
    return [(kinds[s], fields, i) for s in kinds for i, fields in client.xrange(s)]


def test_fast_path_decides_every_published_entry_and_matches():
    entries_ = published(3000)
    envelopes = sum("data" in fields for _, fields, _ in entries_)
    assert envelopes > 300  # the publisher sends ~20 % as JSON envelopes
    for kind, fields, entry_id in entries_:
        fast = _parse_fast(kind, fields, entry_id)  # type: ignore[arg-type]
        assert fast is not None, fields
        assert_same(fast, _parse_validated(kind, fields, entry_id))  # type: ignore[arg-type]


def test_fast_path_decides_odd_but_valid_values_through_the_rules():
    fields = {
        "order_id": " o1 ", "symbol": "btcusdt", "side": "long", "quantity": "1e3",
        "price": "0.000000015", "status": "partial", "filled_quantity": "0.10",
        "slippage_pct": "-0.5", "timestamp": "1700000000.5", "note": "x",
    }  # fmt: skip
    fast = _parse_fast("order", fields, "1-0")
    assert fast is not None
    assert_same(fast, _parse_validated("order", fields, "1-0"))
    assert fast.quantity.as_tuple() == Decimal("1000").as_tuple()
    assert fast.price == Decimal("0.00000002")


@pytest.mark.parametrize("extra", EXTRA_TEXTS)
def test_metadata_text_is_cleaned_alike(extra):
    for fields in (
        {"order_id": "o1", "note": extra},
        {"data": json.dumps({"order_id": "o1", extra: "x"})},
    ):
        fast = _parse_fast("order", fields, "1-0")
        assert fast is not None
        assert_same(fast, _parse_validated("order", fields, "1-0"))


def test_every_contract_and_dialect_model_has_a_fast_path():
    for model in MODELS:
        assert _fast_spec(model) is not None, model


def test_a_model_with_a_constraint_gets_no_fast_path():
    from typing import Annotated  # noqa: PLC0415

    from pydantic import BeforeValidator, ConfigDict, Field  # noqa: PLC0415

    class Constrained(BaseModel):
        model_config = ConfigDict(frozen=True, extra="forbid")
        quantity: Annotated[Decimal, BeforeValidator(events._positive), Field(lt=5)]

    assert _fast_spec(Constrained) is None
    assert fastpath.validate(Constrained, {"quantity": "1"}).quantity == Decimal(1)
