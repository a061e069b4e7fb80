"""``parse`` (consumer/parse.py, issue 18) decides every entry exactly as the code before it did.

The reference is a frozen copy of the old decision (``tests/support/legacy_parse.py``: the old
``worker.parse_raw``, i.e. ``events.parse_entry`` and, on ``UnsupportedDialectError``, the
dialect's ``translate``, with the old events.py and dialect.py copied verbatim). Over generated
entries (contract orders, fills and marks, the bot's results and requests, flat or in ``data`` /
``payload`` envelopes, with bad numbers, missing fields, wrong types, odd ``type`` values, extra
keys and odd entry ids) the new ``parse`` must give the same event (same model, same values of the
same Python types, Decimal exponents, times, metadata with its key order, fields set) or the same
reason, and ``worker.parse_raw`` must raise ``InvalidEventError`` with that same reason.
"""

import json
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any

import fakeredis
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from consumer.dialect import DialectOptions
from consumer.events import InvalidEventError, Rejection
from consumer.parse import parse
from consumer.publisher import Publisher
from consumer.records import EntryKey, RawEntry
from consumer.worker import parse_raw
from tests.support import bot, legacy_dialect, legacy_events, legacy_parse

# database=None: no .hypothesis directory left in the working tree.
MANY = settings(max_examples=1500, deadline=None, database=None)

# --- outcomes ----------------------------------------------------------------------------------


def new_outcome(kind: str, fields: Any, entry_id: str, rate: Decimal) -> tuple[Any, ...]:
    try:
        result = parse(kind, fields, entry_id, DialectOptions(default_fee_rate=rate))
    except Exception as exc:  # a crash must be the same crash
        return ("crash", type(exc).__name__, str(exc))
    if isinstance(result, Rejection):
        return ("rejected", result.reason)
    return ("event", result)


def old_outcome(kind: str, fields: Any, entry_id: str, rate: Decimal) -> tuple[Any, ...]:
    options = legacy_dialect.DialectOptions(default_fee_rate=rate)
    try:
        return ("event", legacy_parse.parse_raw(kind, fields, entry_id, options))
    except legacy_events.InvalidEventError as exc:
        if type(exc) is not legacy_events.InvalidEventError:  # the dialect's signal escaped
            return ("crash", type(exc).__name__, str(exc))
        return ("rejected", exc.reason)
    except Exception as exc:
        return ("crash", type(exc).__name__, str(exc))


# The old modules' classes and the new ones that replace them.
MODULES = {"tests.support.legacy_events": "consumer.events", "tests.support.legacy_dialect": (
    "consumer.dialect"
)}  # fmt: skip


def assert_same(new: Any, old: Any, where: str = "event") -> None:
    """The same value AND of the same (old vs new) Python types all the way down."""
    if isinstance(old, BaseModel):
        assert (type(new).__module__, type(new).__name__) == (
            MODULES[type(old).__module__], type(old).__name__
        ), where  # fmt: skip
        assert new.__pydantic_fields_set__ == old.__pydantic_fields_set__, where
        assert new.__pydantic_extra__ == old.__pydantic_extra__, where
        assert new.__pydantic_private__ == old.__pydantic_private__, where
        assert list(new.__dict__) == list(old.__dict__), where
        for key, value in old.__dict__.items():
            assert_same(new.__dict__[key], value, f"{where}.{key}")
    elif isinstance(old, Enum):  # before str: these are StrEnums
        assert isinstance(new, Enum), (where, new, old)
        assert type(new).__name__ == type(old).__name__, where
        assert type(new).__module__ == MODULES[type(old).__module__], where
        assert new.value == old.value, where
    elif isinstance(old, Decimal):
        assert type(new) is Decimal, where
        assert new.as_tuple() == old.as_tuple(), (where, new, old)
    elif isinstance(old, datetime):
        assert type(new) is type(old), where
        assert new == old, where
        assert new.tzinfo is old.tzinfo, where
        assert new.isoformat() == old.isoformat(), where
    elif isinstance(old, dict):
        assert type(new) is dict, where
        assert list(new) == list(old), where
        for key, value in old.items():
            assert_same(new[key], value, f"{where}[{key!r}]")
    elif isinstance(old, list):
        assert type(new) is list, where
        assert len(new) == len(old), where
        for i, (a, b) in enumerate(zip(new, old, strict=True)):
            assert_same(a, b, f"{where}[{i}]")
    else:
        assert type(new) is type(old), (where, new, old)
        assert new == old, (where, new, old)


def assert_decided_alike(kind: str, fields: Any, entry_id: str, rate: Decimal) -> str:
    """``parse`` and ``worker.parse_raw`` against the old decision; returns the outcome."""
    new, old = new_outcome(kind, fields, entry_id, rate), old_outcome(kind, fields, entry_id, rate)
    assert new[0] == old[0], (new, old)
    if new[0] == "event":
        assert_same(new[1], old[1])
    else:
        assert new == old
    # The worker's and the bench's adapter: the same event, or the reason as InvalidEventError.
    if new[0] != "crash" and isinstance(entry_id, str) and isinstance(fields, dict):
        entry = RawEntry(EntryKey("s", entry_id), fields)
        raised: InvalidEventError | None = None
        try:
            event = parse_raw({"s": kind}, entry, DialectOptions(default_fee_rate=rate))
        except InvalidEventError as exc:
            raised = exc
        if raised is None:
            assert new[0] == "event"
            assert_same(event, old[1])
        else:
            assert type(raised) is InvalidEventError
            assert ("rejected", raised.reason) == old
    return str(new[0])


# --- generated entries -------------------------------------------------------------------------

AMOUNTS = [
    "1", "0.10", "42", "2.5", "1e3", "1E+3", "-1", "-0", "0", "0.0", "", "  ", "abc", "NaN", "inf",
    "1e20", "0.000000005", "0.000000015", "9999999999.999999999", " 2 ", "+1", "1_000", "1,5",
    "-0.5", "84000.0", "0.01", "1e-999999999",
]  # fmt: skip
TIMES = [
    "1700000000", "1795000000", "1700000000123", "1700000000.5", "2024-01-02T03:04:05Z",
    "2099-01-01T00:00:00.123Z", "2024-01-02T03:04:05+02:00", "2024-01-02 03:04:05", "yesterday",
    "1999-12-31T23:59:59Z", "99999999999", "0", "-1", "1E+999999999",
]  # fmt: skip
IDS = [
    "o1", " o1 ", "MOCK_12345678", "PAPER_0123456789ab", "DRY_RUN_c1", "x" * 100, "x" * 101,
    "\x00", "tab\tbed", "12345", "é", "'; DROP TABLE paper_orders; --",
]  # fmt: skip
SYMBOLS = ["BTCUSDT", "btcusdt", " ETHUSDT ", "B", "BTC-USDT", "A" * 20, "A" * 21, "ß"]
ENUMS = [
    "BUY", "sell", "LONG", "short", "HOLD", "MARKET", "limit", "STOP_LIMIT", "PENDING", "FILLED",
    "filled", "REJECTED", "ERROR", "PARTIAL", "partial", "CANCELED", "TAKER", "maker", "rebate",
]  # fmt: skip
TEXTS = ["insufficient balance", " padded ", "nul\x00inside", "x" * 2500, "ünïcödé"]
METADATA = [
    '{"strategy": "x"}', '{"slippage_pct": 0.1, "fee_amount": "0.01", "fee_type": "maker"}',
    '{"slippage_pct": "0.05", "fee_amount": 0.0043, "fee_type": "TAKER", "fee_pct": 0.1}',
    '{"fee_amount": -1}', '{"fee_amount": 1e30}', '{"slippage_pct": "x", "fee_type": [1]}',
    '{"rejection_reason": "risk limit"}', '{"rejection_reason": 5}', '{"is_partial": true}',
    '{"nested": {"deep": {"x": "\\u0000"}}}', "[]", '"text"', "null", "not json", "{",
    '{"a": 1, "a": 2}', '{"a": NaN}', "{}",
]  # fmt: skip
TYPES = [
    "order", "ORDER", " fill ", "mark", "price", "order_update", "order_result", " Order_Result ",
    "order_request", "trade", "",
]  # fmt: skip
# Values a JSON envelope can carry that flat fields cannot: the wrong JSON types.
JSON_ODD = [None, True, False, 1, 0, -1, 1.5, 1e400, [], {}, ["x"], {"a": 1}, "", 12345]
# Values only code can put in flat fields (Redis gives strings): the old and new must agree too.
PYTHON_ODD = [None, 1, Decimal("1.5"), ["x"], {"a": 1}, True]

BY_FIELD: dict[str, list[str]] = {
    **dict.fromkeys(("order_id", "client_id", "fill_id", "signal_id", "strategy_id"), IDS),
    "symbol": SYMBOLS,
    **dict.fromkeys(("side", "order_type", "status", "fee_type"), ENUMS),
    **dict.fromkeys(
        (
            "quantity",
            "price",
            "filled_quantity",
            "filled_price",
            "fees_usdt",
            "slippage_pct",
            "filled_size",
            "avg_fill_price",
            "stop_loss_pct",
        ),
        AMOUNTS,
    ),
    **dict.fromkeys(("rejection_reason", "error_message", "reason"), TEXTS),
    "timestamp": TIMES,
    "metadata": METADATA,
    "type": TYPES,
}
EXTRA_KEYS = ["bot_id", "note", "bid", "run_id", "payload2", "data "]
KEYS = [*BY_FIELD, *EXTRA_KEYS]
ENTRY_IDS = [
    "1700000000000-0", "253402300799999-0", "253402300800000-0", "99999999999999999999-0",
    "999999999999999999999-0", "1-" + "9" * 20, "1-" + "9" * 21, "1700000000000", "-1", "1-",
    "1-0-0", "\u0661-0", " 1-0", "",
]  # fmt: skip


def value_for(key: str) -> Any:
    usual = st.sampled_from(BY_FIELD.get(key, [*TEXTS, "x", "", " "]))
    return st.one_of(usual, st.sampled_from([*AMOUNTS, *IDS, *ENUMS]), st.text(max_size=6))


@st.composite
def bases(draw: Any) -> tuple[str, dict[str, str]]:
    """A valid-looking entry of one of the five shapes, and the kind of its usual stream."""
    shape = draw(st.sampled_from(["order", "fill", "mark", "result", "result", "request"]))
    qty = draw(st.sampled_from(["0.01", "2.0", "1", "0.5", "0.0"]))
    if shape == "result":
        return "fill", bot.result(
            draw(st.sampled_from(IDS[:5])),
            quantity=qty,
            filled=draw(st.sampled_from([None, "0.0", "0.5", "1", qty, "3"])),
            price=draw(st.sampled_from([None, "84000.0", "0.0", "10"])),
            status=draw(st.sampled_from(["FILLED", "REJECTED", "ERROR", "PARTIAL", "partial"])),
            ts=draw(st.sampled_from([bot.T0, 1_700_000_000_123])),
            client_id=draw(st.sampled_from([None, "BTCUSDT-1795000000"])),
            aliases=draw(st.sampled_from(["both", "only", "none"])),
            metadata=draw(st.sampled_from([None, {}, {"fee_amount": "0.01", "fee_type": "maker",
                                                     "slippage_pct": 0.1}, {"odd": [1]}])),
        )  # fmt: skip
    if shape == "request":
        fields = bot.request(
            draw(st.sampled_from(["BTCUSDT-1795000000", "paper-unwind-MOCK_1", " c1 "])),
            quantity=qty,
            price=draw(st.sampled_from([None, "84000.0", "x"])),
        )
        if draw(st.booleans()):
            del fields["type"]  # on stream.orders it is an order by its stream already
        return "order", fields
    return shape, {
        "order": {"order_id": "o-1", "symbol": "BTCUSDT", "side": "BUY", "quantity": qty,
                  "status": "FILLED", "filled_quantity": qty, "filled_price": "100"},
        "fill": {"fill_id": "f-1", "order_id": "o-1", "symbol": "BTCUSDT", "side": "SELL",
                 "quantity": qty, "price": "100", "fees_usdt": "0.1"},
        "mark": {"symbol": "ETHUSDT", "price": "2000.5", "timestamp": "2024-01-02T03:04:05Z"},
    }[shape]  # fmt: skip


@st.composite
def records(draw: Any) -> tuple[str, dict[str, Any]]:
    """A base, sometimes with keys dropped, blanked, set to odd values or added."""
    kind, base = draw(bases())
    record: dict[str, Any] = dict(base)
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["drop", "blank", "set", "set"]))
        key = draw(st.sampled_from([*record, *KEYS] if record else KEYS))
        if op == "drop":
            record.pop(key, None)
        elif op == "blank":
            record[key] = draw(st.sampled_from(["", "  "]))
        else:
            record[key] = draw(value_for(key))
    return kind, record


def json_numbers(record: dict[str, Any]) -> dict[str, Any]:
    """Numeric text as JSON numbers, as an envelope may carry it."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        try:
            out[key] = json.loads(value) if isinstance(value, str) and value.strip() else value
        except ValueError:
            out[key] = value
    return out


@st.composite
def entries(draw: Any) -> tuple[str, dict[str, Any], str, Decimal]:
    kind, record = draw(records())
    if draw(st.integers(0, 3)) == 0:  # now and then on another stream
        kind = draw(st.sampled_from(["order", "fill", "mark"]))
    shape = draw(
        st.sampled_from(
            ["flat", "flat", "flat", "flat", "data", "payload", "numbers", "odd_json", "both",
             "broken", "beside", "not_object", "python_odd"]
        )
    )  # fmt: skip
    fields: dict[str, Any]
    if shape == "flat":
        fields = record
    elif shape in ("data", "payload", "numbers", "odd_json"):
        obj = json_numbers(record) if shape == "numbers" else dict(record)
        if shape == "odd_json":
            obj[draw(st.sampled_from(KEYS))] = draw(st.sampled_from(JSON_ODD))
        envelope = "payload" if shape == "payload" else "data"
        fields = {envelope: json.dumps(obj)}
        if draw(st.booleans()):  # a type beside the envelope
            fields["type"] = draw(st.sampled_from(TYPES))
    elif shape == "both":
        fields = {"data": json.dumps(record), "payload": json.dumps(record)}
    elif shape == "broken":
        fields = {"data": json.dumps(record)[:-1]}
    elif shape == "beside":  # an envelope beside flat fields, or an empty one
        fields = {**record, "data": draw(st.sampled_from(["", " ", '{"note": "x"}',
                                                          '{"order_id": "in"}']))}  # fmt: skip
    elif shape == "not_object":
        fields = {draw(st.sampled_from(["data", "payload"])): draw(
            st.sampled_from(["[]", '"x"', "null", "1", "true", '{"a": NaN}'])
        )}  # fmt: skip
    else:  # what only code could pass: non-string flat values
        fields = {**record, draw(st.sampled_from(KEYS)): draw(st.sampled_from(PYTHON_ODD))}
    valid_id = st.tuples(st.integers(1_600_000_000_000, 1_900_000_000_000), st.integers(0, 9))
    entry_id = draw(
        st.one_of(valid_id.map(lambda t: f"{t[0]}-{t[1]}"), st.sampled_from(ENTRY_IDS))
        if draw(st.integers(0, 7)) == 0
        else valid_id.map(lambda t: f"{t[0]}-{t[1]}")
    )
    rate = draw(st.sampled_from([Decimal(0), Decimal("0.001"), Decimal("0.5")]))
    return kind, fields, entry_id, rate


@MANY
@given(entries())
def test_parse_decides_every_entry_as_the_old_code_did(entry):
    assert_decided_alike(*entry)


# --- the usual entries, and that the property is not vacuous ----------------------------------


def published(n: int, malformed: float) -> list[tuple[str, dict[str, str], str]]:
    client = fakeredis.FakeRedis(decode_responses=True)
    Publisher(
        client, orders_stream="o", fills_stream="f", marks_stream="m", seed=18,
        malformed_ratio=malformed, run_id="diff",
    ).publish(n)  # fmt: skip
    kinds = {"o": "order", "f": "fill", "m": "mark"}
    return [(kinds[s], fields, i) for s in kinds for i, fields in client.xrange(s)]


def test_published_and_bot_entries_are_decided_alike_and_both_ways():
    cases: list[tuple[str, dict[str, str], str]] = published(2000, malformed=0.1)
    for n, (filled, price, status) in enumerate(
        [("0.01", "84000.0", "FILLED"), ("0.004", "84000.0", "FILLED"), ("0.0", None, "REJECTED"),
         ("0.0", None, "ERROR"), ("0.5", None, "FILLED"), ("x", "1", "FILLED")]
    ):  # fmt: skip
        fields = bot.result(f"PAPER_{n:012x}", filled=filled, price=price, status=status)
        cases += [("fill", fields, f"1795000000{n:03d}-0"), ("order", fields, "1-0")]
    for client_id, quantity in [("BTCUSDT-1795000000", "0.01"), ("c2", ""), ("c3", "-1")]:
        cases.append(("order", bot.request(client_id, quantity=quantity), "1795000000000-1"))
    outcomes: dict[str, int] = {}
    for kind, fields, entry_id in cases:
        outcome = assert_decided_alike(kind, fields, entry_id, Decimal("0.001"))
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert outcomes.get("event", 0) > 1500
    assert outcomes.get("rejected", 0) > 50
    assert "crash" not in outcomes


def test_an_unknown_stream_kind_is_the_same_wiring_bug():
    fields = {"symbol": "BTCUSDT", "price": "1"}
    assert new_outcome("trade", fields, "1-0", Decimal(0)) == old_outcome(
        "trade", fields, "1-0", Decimal(0)
    ) == ("crash", "ValueError", "unknown stream kind 'trade'")  # fmt: skip
