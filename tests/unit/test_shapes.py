"""Entry shapes (consumer/shapes.py) and the msgspec archive reader (consumer/archive.py) decide
every input exactly as the code before them did.

References: ``parse._parse_reference`` (``parse`` without ``shapes.decide``: today's path, which
also decides whatever the shapes leave), the frozen old decision (``tests/support/legacy_*``,
through ``test_parse_differential.assert_decided_alike``) and the frozen old archive reader
(``tests/support/legacy_archive.py``). Over generated inputs biased to the plain forms the shapes
take and to their near misses (flat fields and JSON envelopes of all three kinds, the bot's
messages, archive lines and whole archives), the new code must give the same event (same model,
values of the same Python types, Decimal exponents, tz-aware times, metadata and its key order,
fields set) or the same reason, or refuse the same line with the same message.
"""

from __future__ import annotations

import gzip
import json
from datetime import datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from consumer import archive, fields, replay, shapes
from consumer.dialect import DialectOptions
from consumer.errors import ReplaySourceError
from consumer.events import FillEvent, MarkEvent, OrderEvent, Rejection
from consumer.parse import _parse_reference, parse
from consumer.publisher import Publisher
from tests.support import bot, legacy_archive
from tests.unit.test_parse_differential import assert_decided_alike

# database=None: no .hypothesis directory left in the working tree.
MANY = settings(max_examples=2500, deadline=None, database=None)
SOME = settings(max_examples=600, deadline=None, database=None)
OPTIONS = DialectOptions(default_fee_rate=Decimal("0.001"))

# --- sameness ---------------------------------------------------------------------------------


def assert_same(new: Any, old: Any, where: str = "event") -> None:
    """The same value AND of the same Python types all the way down."""
    assert type(new) is type(old), (where, type(new), type(old))
    if isinstance(old, BaseModel):
        assert new.__pydantic_fields_set__ == old.__pydantic_fields_set__, where
        assert type(new.__pydantic_fields_set__) is set, where
        assert new.__pydantic_extra__ == old.__pydantic_extra__, where
        assert new.__pydantic_private__ == old.__pydantic_private__, where
        assert list(new.__dict__) == list(old.__dict__), where
        for key, value in old.__dict__.items():
            assert_same(new.__dict__[key], value, f"{where}.{key}")
    elif isinstance(old, Enum):
        assert new is old, where
    elif isinstance(old, Decimal):
        assert new.as_tuple() == old.as_tuple(), (where, new, old)
    elif isinstance(old, datetime):
        assert new == old, where
        assert new.tzinfo is old.tzinfo, where
        assert new.isoformat() == old.isoformat(), where
    elif isinstance(old, dict):
        assert list(new) == list(old), where
        for key, value in old.items():
            assert_same(new[key], value, f"{where}[{key!r}]")
    elif isinstance(old, list):
        assert len(new) == len(old), where
        for i, (a, b) in enumerate(zip(new, old, strict=True)):
            assert_same(a, b, f"{where}[{i}]")
    else:
        assert new == old, (where, new, old)


def outcome(decide: Any, kind: str, entry: Any, entry_id: Any) -> tuple[str, Any]:
    try:
        result = decide(kind, entry, entry_id, OPTIONS)
    except Exception as exc:  # a crash must be the same crash
        return "crash", (type(exc).__name__, str(exc))
    if isinstance(result, Rejection):
        return "rejected", result.reason
    return "event", result


def assert_parsed_as_today(kind: str, entry: Any, entry_id: Any) -> str:
    """``parse`` against today's path, ``shapes.decide`` alone against it, and both against the
    frozen old decision. Returns the outcome's kind."""
    new, ref = (
        outcome(parse, kind, entry, entry_id),
        outcome(_parse_reference, kind, entry, entry_id),
    )
    assert new[0] == ref[0], (new, ref)
    if new[0] == "event":
        assert_same(new[1], ref[1])
    else:
        assert new == ref
    try:
        fast = shapes.decide(kind, entry, entry_id)  # type: ignore[arg-type]
    except Exception as exc:  # only where today's path crashes alike
        crashed = (type(exc).__name__, str(exc))
        fast = None
    else:
        crashed = None
    assert crashed is None or ref == ("crash", crashed), (crashed, ref)
    if fast is not None:
        assert ref[0] == "event", (fast, ref)
        assert_same(fast, ref[1])
    if kind in ("order", "fill", "mark") and isinstance(entry, dict):
        assert_decided_alike(kind, entry, entry_id, OPTIONS.default_fee_rate)
    return "fast" if fast is not None else new[0]


# --- values: the plain forms the shapes take, and their near misses ---------------------------

NEAR = {
    "amount": [
        "0.0114", "60000.48", "1", "42", "0.10", "0.00000001", "9999999999.99999999", "0", "0.0",
        "00", "-0", "-0.0", "-1", "-0.5", "1e3", "1E+3", "01", "0.123456789", "12345678901",
        "10000000000", "1.", ".5", " 1", "1 ", "+1", "١", "1_0", "NaN", "inf", "", " ", "0x1",
        "0000000000.00000001", "9999.999999", "10000", "-9999.999999", "0.0000001",
    ],
    "time": [
        "2099-01-01T00:00:00.082Z", "2024-01-02T03:04:05Z", "2024-01-02T03:04:05.1Z",
        "2024-01-02T03:04:05.123456Z", "2024-01-02T03:04:05.1234567Z", "2000-01-01T00:00:00Z",
        "1999-12-31T23:59:59.999999Z", "2100-12-31T23:59:59.999999Z", "2101-01-01T00:00:00Z",
        "2024-02-30T00:00:00Z", "2024-02-29T00:00:00Z", "2023-02-29T00:00:00Z",
        "2024-01-01T24:00:00Z", "2024-01-01T00:00:60Z", "2024-13-01T00:00:00Z",
        "2024-01-01T00:00:00+00:00", "2024-01-01T00:00:00z", "2024-01-01 00:00:00Z",
        "2024-01-01T00:00Z", " 2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z ", "1700000000",
        "1700000000123", "2024-01-01", "٢٠٢٤-01-01T00:00:00Z", "",
    ],
    "id": [
        "paper-bench4-0000001", "bot-bench4-0000001", "o1", "x" * 100, "x" * 101, " o1", "o1 ",
        "o 1", "é", "tab\tbed", "a\x00", "a\u200bb", "12345", "'; DROP TABLE x; --", "~", "!",
        " ", "",
    ],
    "symbol": ["BTCUSDT", "ETHUSDT", "btcusdt", "B", "A" * 20, "A" * 21, " BTC", "BTC-USDT", "ßß"],
    "side": ["BUY", "SELL", "buy", "LONG", "SHORT", "short", "BUY ", "HOLD", ""],
    "order_type": ["MARKET", "LIMIT", "STOP", "STOP_LIMIT", "limit", "STOPLIMIT", ""],
    "status": [
        "PENDING", "SUBMITTED", "FILLED", "PARTIAL", "PARTIALLY_FILLED", "ERROR", "CANCELED",
        "CANCELLED", "REJECTED", "filled", "DONE",
    ],
    "fee_type": ["TAKER", "MAKER", "maker", "REBATE"],
    "text": ["insufficient balance", " padded", "tab\tinside", "nul\x00", "é", "x" * 2001, ""],
    "extra": ["random_walk", "bench4", "", "  ", "\t x", "é", "x\x00", "a b", "\x1f", "\x7f"],
}  # fmt: skip
FIELD_VALUES = {
    **dict.fromkeys(("order_id", "client_id", "fill_id"), "id"),
    "symbol": "symbol",
    **dict.fromkeys(("side", "order_type", "status", "fee_type"), "side"),
    **dict.fromkeys(
        ("quantity", "price", "filled_quantity", "filled_price", "fees_usdt", "slippage_pct"),
        "amount",
    ),
    **dict.fromkeys(("rejection_reason", "error_message"), "text"),
    "timestamp": "time",
}
FIELD_VALUES.update(order_type="order_type", status="status", fee_type="fee_type")
EXTRA_KEYS = ["strategy", "run_id", "cancel_reason", "é", "a\x00", "", "bid", "type", "metadata"]
BASES = {
    "order": {
        "order_id": "paper-bench4-0000001", "client_id": "bot-bench4-0000001",
        "symbol": "BTCUSDT", "side": "SELL", "order_type": "MARKET", "quantity": "0.0114",
        "price": "60000.48", "status": "FILLED", "filled_quantity": "0.0114",
        "filled_price": "60001.5", "slippage_pct": "-0.0025", "fees_usdt": "0.68400547",
        "fee_type": "TAKER", "timestamp": "2099-01-01T00:00:00.082Z", "strategy": "random_walk",
    },
    "fill": {
        "fill_id": "paper-bench4-0000001-f1", "order_id": "paper-bench4-0000001",
        "symbol": "BTCUSDT", "side": "SELL", "quantity": "0.0114", "price": "60000.48",
        "fees_usdt": "0.68400547", "fee_type": "TAKER", "timestamp": "2099-01-01T00:00:00.357Z",
    },
    "mark": {"symbol": "ETHUSDT", "price": "2998.71", "timestamp": "2099-01-01T00:00:00.010Z"},
}  # fmt: skip
ENTRY_IDS = [
    "1796426153947-0", "1-0", "0-0", "99999999999999-1", "253402300799999-0", "253402300800000-0",
    "1-" + "9" * 20, "1-" + "9" * 21, "1796426153947", "-1", "1-", "١-0", " 1-0", "",
]  # fmt: skip


def near(key: str) -> st.SearchStrategy[Any]:
    values = NEAR[FIELD_VALUES[key]] if key in FIELD_VALUES else NEAR["extra"]
    return st.one_of(st.sampled_from(values), st.text(max_size=8), st.sampled_from(NEAR["amount"]))


@st.composite
def records(draw: Any) -> tuple[str, dict[str, Any]]:
    """A plain entry of one kind, sometimes with fields dropped, changed or added, in any
    key order, or the bot's result or request."""
    shape = draw(st.sampled_from(["order", "order", "fill", "fill", "mark", "mark", "bot"]))
    if shape == "bot":
        if draw(st.booleans()):
            filled = draw(st.sampled_from(["0.01", "0.004", "0.0"]))
            status = draw(st.sampled_from(["FILLED", "ERROR"]))
            return "fill", bot.result("PAPER_0123456789ab", filled=filled, status=status)
        return "order", bot.request("BTCUSDT-1795000000", quantity="0.01")
    base = dict(BASES[shape])
    for key in list(base):
        if key not in ("order_id", "fill_id", "symbol", "price") and draw(st.integers(0, 3)) == 0:
            del base[key]
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["set", "set", "drop", "add"]))
        if op == "add":
            base[draw(st.sampled_from(EXTRA_KEYS))] = draw(near("extra"))
        elif base:
            key = draw(st.sampled_from(sorted(base)))
            if op == "drop":
                del base[key]
            else:
                base[key] = draw(near(key))
    keys = draw(st.permutations(list(base)))
    return shape, {key: base[key] for key in keys}


ODD_JSON = [
    "1", "-0", "1e400", "NaN", "null", "true", "[]", "{}", '"\\ud800"', "123456789012345678901",
]  # fmt: skip


def handwritten(record: dict[str, Any], draw: Any) -> str:
    """JSON text of ``record`` as a publisher might write it: odd spacing, escapes, numbers,
    duplicates, non-string values."""
    members = []
    clean = draw(st.booleans())  # every member plain: only the spacing and duplicates differ
    for key, value in record.items():
        style = "plain" if clean else draw(st.sampled_from(["plain", "number", "escaped", "odd"]))
        text = json.dumps(value, ensure_ascii=False)
        if style == "number" and isinstance(value, str):
            text = value if value.replace(".", "").replace("-", "").isdigit() else text
        elif style == "escaped":
            text = json.dumps(value, ensure_ascii=True).replace("a", "\\u0061")
        elif style == "odd":
            text = draw(st.sampled_from(ODD_JSON))
        members.append(f"{json.dumps(key)}{draw(st.sampled_from([':', ' : ', ':  ']))}{text}")
    if members and draw(st.integers(0, 4)) == 0:  # a key given twice
        members.append(draw(st.sampled_from(members)))
    glue = draw(st.sampled_from([",", ", ", " ,\n", ",\t"]))
    return draw(st.sampled_from(["", " ", "\n"])) + "{" + glue.join(members) + "}"


@st.composite
def entries(draw: Any) -> tuple[str, Any, Any]:
    kind, record = draw(records())
    if draw(st.integers(0, 5)) == 0:  # now and then on another stream
        kind = draw(st.sampled_from(["order", "fill", "mark"]))
    form = draw(st.sampled_from(
        ["flat", "flat", "flat", "data", "payload", "dumps", "handwritten", "beside", "both"]
    ))  # fmt: skip
    entry: Any
    if form == "flat":
        entry = record
    elif form in ("data", "payload"):
        entry = {form: json.dumps(record, separators=(",", ":"), ensure_ascii=False)}
    elif form == "dumps":  # Python's json.dumps: ", " and ": ", non-ASCII escaped
        entry = {"data": json.dumps(record)}
    elif form == "handwritten":
        entry = {draw(st.sampled_from(["data", "payload"])): handwritten(record, draw)}
    elif form == "beside":
        entry = {"data": json.dumps(record), draw(st.sampled_from(["type", "note"])): "order"}
    else:
        entry = {"data": json.dumps(record), "payload": json.dumps(record)}
    if draw(st.integers(0, 9)) == 0:
        entry = draw(st.sampled_from([None, [], {1: "x"}, {"symbol": 1}, {"order_id": b"o"}]))
    entry_id = draw(
        st.sampled_from(ENTRY_IDS) if draw(st.integers(0, 5)) == 0 else st.just("1796426153947-3")
    )
    return kind, entry, entry_id


@MANY
@given(entries())
def test_parse_decides_every_entry_as_today(entry):
    event(assert_parsed_as_today(*entry))  # --hypothesis-show-statistics: fast/event/rejected


def test_the_shapes_decide_the_published_entries():
    """Not vacuous: the shapes decide nearly every entry the publisher sends that parse accepts
    (flat and in envelopes), and leave every one it refuses."""
    client = fakeredis.FakeRedis(decode_responses=True)
    Publisher(
        client, orders_stream="o", fills_stream="f", marks_stream="m", seed=19,
        malformed_ratio=0.05, run_id="shapes",
    ).publish(3000)  # fmt: skip
    counts: dict[str, int] = {}
    for stream, kind in {"o": "order", "f": "fill", "m": "mark"}.items():
        for entry_id, entry in client.xrange(stream):
            decided = assert_parsed_as_today(kind, entry, entry_id)
            counts[decided] = counts.get(decided, 0) + 1
    assert counts.get("fast", 0) > 0.9 * (counts.get("fast", 0) + counts.get("event", 0))
    assert counts.get("rejected", 0) > 50
    assert "crash" not in counts


# --- the strict checks are the rules for the text they take ------------------------------------

MODEL_FIELDS = [
    (model, name)
    for model in (OrderEvent, FillEvent, MarkEvent)
    for name in model.model_fields
    if name != "metadata"
]
ALPHABET = st.sampled_from(list("0123456789.-+eE :TZzé\t\x00ab_AXSBUYLMIT١\u2028"))


@SOME
@given(
    st.sampled_from(MODEL_FIELDS),
    st.one_of(st.text(ALPHABET, max_size=30), *(st.sampled_from(v) for v in NEAR.values())),
)
def test_each_strict_check_gives_what_its_rule_gives(model_field, text):
    model, name = model_field
    rule = model.model_fields[name].metadata[0].func
    check = shapes._strict_check(rule)
    assert check is not None, name  # every field but metadata has one
    pattern, convert = check
    if shapes.re.fullmatch(pattern, text):
        assert "\x00" not in text
        try:
            expected = rule(text)
        except ValueError:
            # only a date that does not exist may pass the pattern: fromisoformat refuses it too
            assert convert == shapes.datetime.fromisoformat, (name, text)
            with pytest.raises(ValueError, match=r"must be in|out of range|Invalid isoformat"):
                convert(text)
            return
        assert_same(text if convert is None else convert(text), expected, f"{name}={text!r}")


# --- JSON envelopes: msgspec takes only what json_object gives exactly -------------------------


@SOME
@given(st.data())
def test_an_envelope_is_read_as_json_object_reads_it(data):
    _, record = data.draw(records())
    dumped = json.dumps(record)
    text = data.draw(st.sampled_from([handwritten(record, data.draw), dumped, dumped[:-1]]))
    members = shapes._envelope(text)
    if members is not None:
        assert_same(members, fields.json_object(text))


EDGE_ENVELOPES = [
    '{"symbol":"ETHUSDT","price":"1","price":"2","timestamp":"2099-01-01T00:00:00Z"}',
    '{"symbol":"ETHUSDT","price":2,"price":"2","timestamp":"2099-01-01T00:00:00Z"}',
    '{"symbol":"ETHUSDT","price":"2","timestamp":"2099-01-01T00:00:00Z","x":NaN}',
    '{"symbol":"ETHUSDT","price":"2","timestamp":"2099-01-01T00:00:00Z","x":1e400}',
    '{"symbol":"ETHUSDT","price":"2","timestamp":"2099-01-01T00:00:00Z","x":18446744073709551616}',
    '{"symbol":"ETHUSDT","price":"\\u0032","timestamp":"2099-01-01T00:00:00Z"}',
    '{"symbol":"ETHUSDT","price":"2","timestamp":"2099-01-01T00:00:00Z","x":"\\ud800"}',
    '{"symbol":"ETHUSDT","price":"2","timestamp":"2099-01-01T00:00:00Z","x":"\ud800"}',
    '{"symbol":"ETHUSDT","price":"2","timestamp":"2099-01-01T00:00:00Z"} x',
    '\ufeff{"symbol":"ETHUSDT","price":"2","timestamp":"2099-01-01T00:00:00Z"}',
    ' {"symbol" : "ETHUSDT" ,\n"price":"2",\t"timestamp":"2099-01-01T00:00:00Z"}\r\n',
    '{"symbol":"ETHUSDT","price":"2","timestamp":"2099-01-01T00:00:00Z","note":""}',
    '{"symbol":"ETHUSDT","price":" 2","timestamp":"2099-01-01T00:00:00Z"}',
    '{"symbol":"ETHUSDT","price":"2","timestamp":"2099-01-01T00:00:00Z","type":"mark"}',
    '{"order_id":"o1","quantity":"1","filled_quantity":"2","timestamp":"2099-01-01T00:00:00Z"}',
    '{"order_id":"o1","quantity":"2","filled_quantity":"1","metadata":"{}"}',
    '{"order_id":"o1","client_id":"c","bid":"\\"quoted\\""}',
    "[]", "null", '"text"', "", "{", '{"a":"b"}', "{}",
]  # fmt: skip
EDGE_FLAT = [
    {"symbol": "ETHUSDT", "price": "2", "timestamp": "2099-01-01T00:00:00Z"},
    {"symbol": "ETHUSDT", "price": "2"},  # the entry id's time
    {"symbol": "ETHUSDT", "price": "0", "timestamp": "2099-01-01T00:00:00Z"},
    {"symbol": "ETHUSDT", "price": "2", "timestamp": "2099-01-01T00:00:00Z", "bid": "\x00"},
    {"symbol": "ETHUSDT", "price": "2", "timestamp": "2024-02-30T00:00:00Z"},
    {"order_id": "o1"},
    {"order_id": "o1", "quantity": "1", "filled_quantity": "1.00000001"},
    {"order_id": "o1", "quantity": "1", "filled_quantity": "1", "fees_usdt": "0"},
    {"order_id": "o1", "slippage_pct": "-0"},
    {"order_id": "o1", "fees_usdt": "0.00", "filled_quantity": "0", "strategy": "x", "é": "y"},
    {"order_id": "o1", "strategy": "", "run_id": "   ", "note": "\tx"},
    {"order_id": "o1", "client_id": "c1", "rejection_reason": "x" * 2000},
    {"order_id": "o1", "client_id": "c1", "rejection_reason": "x" * 2001},
    {"order_id": "o1", "type": "order"},
    {"order_id": "o1", "metadata": '{"a": "b"}'},
    {"client_id": "c1", "symbol": "BTCUSDT", "quantity": "1"},  # the bot's request
    {"fill_id": "f", "order_id": "o", "symbol": "BTCUSDT", "quantity": "1", "price": "1"},
    {"fill_id": "f", "order_id": "o", "symbol": "BTCUSDT", "quantity": "1", "price": "1", "x": 1},
    {"fill_id": "f", "order_id": "o", "symbol": "BTCUSDT", "quantity": 1, "price": "1"},
    {"fill_id": "f", "order_id": "o", "symbol": "BTCUSDT", "quantity": "1", "price": "1", 5: "x"},
]  # fmt: skip


class Text(str):
    """Text from code that is not exactly str: the shapes leave it to parse."""


@pytest.mark.parametrize("entry_id", ["1796426153947-0", "1-0", "253402300799999-0", "x"])
def test_explicit_edge_cases_are_decided_as_today(entry_id):
    for kind in ("order", "fill", "mark"):
        for entry in [*EDGE_FLAT, *({"data": text} for text in EDGE_ENVELOPES)]:
            assert_parsed_as_today(kind, entry, entry_id)
        assert_parsed_as_today(kind, {"symbol": Text("ETHUSDT"), "price": "2"}, entry_id)
        assert_parsed_as_today(kind, {"payload": EDGE_ENVELOPES[0]}, entry_id)
    for text in EDGE_ENVELOPES:
        members = shapes._envelope(text)
        if members is not None:
            assert_same(members, fields.json_object(text))
    assert shapes._envelope(EDGE_ENVELOPES[0]) is None  # a duplicate key: json_object refuses it
    assert shapes._envelope(EDGE_ENVELOPES[10]) is not None  # JSON whitespace is fine


def test_an_unknown_stream_kind_is_the_same_wiring_bug():
    entry = {"symbol": "BTCUSDT", "price": "1"}
    assert outcome(parse, "trade", entry, "1-0") == outcome(_parse_reference, "trade", entry, "1-0")
    assert outcome(parse, "trade", entry, "1-0")[0] == "crash"


# --- archives: lines and whole files read as today ---------------------------------------------

STREAMS = ["s.orders", "s.fills", "s.marks"]
PATH = Path("archive.jsonl")


@st.composite
def archive_lines(draw: Any) -> list[str]:
    """An archive's lines: export's, with ids that repeat, go back or are odd, other streams,
    blank lines, broken JSON and lines of the wrong shape."""
    lines = []
    ms = 1_796_426_153_947
    for _ in range(draw(st.integers(0, 12))):
        _, record = draw(records())
        stream = draw(st.sampled_from([*STREAMS, *STREAMS, "other"]))
        ms += draw(st.sampled_from([0, 0, 1, 2, -1]))
        entry_id = draw(st.sampled_from([f"{ms}-0", f"{ms}-1", f"{ms}", f"0{ms}-0", f"{ms}-x"]))
        fields_ = record if draw(st.integers(0, 3)) else {"data": json.dumps(record)}
        line = json.dumps(
            {"stream": stream, "id": entry_id, "fields": fields_},
            separators=(",", ":"), ensure_ascii=draw(st.booleans()),
        )  # fmt: skip
        line = draw(st.sampled_from([line, line, line, line[:-1], line + "x", " " + line + " "]))
        lines.append(line)
        if draw(st.integers(0, 9)) == 0:
            lines.append(draw(st.sampled_from(["", "  ", "\t", '{"stream":1}', "[]", "NaN", "{"])))
        if draw(st.integers(0, 9)) == 0:
            lines.append(f'{{"stream":"{stream}","id":"{ms}-5","fields":{{"a":"\\ud800"}}}}')
    return lines


def read_all(read: Any, path: Path, **bounds: Any) -> tuple[list[Any], Any, dict[str, int]]:
    skipped: dict[str, int] = {}
    got = []
    try:
        for entry in read(path, STREAMS, skipped=skipped, **bounds):
            got.append((entry.key, list(entry.fields.items()), entry.deliveries, entry.not_utf8))
    except ReplaySourceError as exc:
        return got, str(exc), skipped
    return got, None, skipped


@SOME
@given(
    archive_lines(),
    st.sampled_from(["-", "1796426153947", "1796426153948-0"]),
    st.sampled_from(["+", "1796426153948", "1796426153950-0"]),
    st.booleans(),
)
def test_an_archive_reads_as_today(tmp_path_factory, lines, start, end, gz):
    path = tmp_path_factory.mktemp("a") / ("a.jsonl.gz" if gz else "a.jsonl")
    text = "".join(line + "\n" for line in lines)
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text, encoding="utf-8")
    bounds = {"start": start, "end": end}
    assert read_all(replay.file_entries, path, **bounds) == read_all(
        legacy_archive.file_entries, path, **bounds
    )


@SOME
@given(archive_lines())
def test_archive_lines_are_read_then_parsed_as_today(lines):
    kinds = dict(zip(STREAMS, ["order", "fill", "mark"], strict=True))
    for number, line in enumerate(lines, start=1):
        try:
            old = legacy_archive._archive_line(PATH, number, line)
        except ReplaySourceError as exc:
            refused = str(exc)
        else:
            refused = None
        if refused is not None:
            with pytest.raises(ReplaySourceError) as raised:
                archive.archive_line(PATH, number, line)
            assert str(raised.value) == refused
            continue
        new = archive.archive_line(PATH, number, line)
        assert (new.key, list(new.fields.items()), new.deliveries, new.not_utf8) == (
            old.key, list(old.fields.items()), old.deliveries, old.not_utf8
        )  # fmt: skip
        assert_same(new.key, old.key)
        kind = kinds.get(new.key.stream, "order")
        assert_parsed_as_today(kind, new.fields, new.key.entry_id)


def test_a_line_nested_too_deeply_fails_as_today():
    line = '{"stream":"s.orders","id":"1-0","fields":{},"x":' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(RecursionError):
        legacy_archive._archive_line(PATH, 1, line)
    with pytest.raises(RecursionError):
        archive.archive_line(PATH, 1, line)
