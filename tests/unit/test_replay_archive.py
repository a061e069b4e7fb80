"""Reading an archive line with msgspec (replay._archive_line, i.e. archive.py) decides exactly
what the reader decided with json.loads: the same entry (stream, id, fields in the same order)
or the same refusal with the same message, over generated lines (valid, odd and broken)."""

import json
import re
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.errors import ReplaySourceError
from consumer.records import EntryKey, RawEntry
from consumer.replay import _archive_line

MANY = settings(max_examples=1500, deadline=None, database=None)
PATH = Path("archive.jsonl")
_ID = re.compile(r"\d+(-\d+)?")


def reference(path: Path, number: int, line: str) -> RawEntry:
    """The reader before orjson and msgspec (commit 7b23bb9), verbatim but for the names."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ReplaySourceError(f"{path}:{number}: not a JSON line ({exc.msg})") from None
    fields = record.get("fields") if isinstance(record, dict) else None
    if not (
        isinstance(record, dict)
        and isinstance(record.get("stream"), str)
        and isinstance(record.get("id"), str)
        and _ID.fullmatch(record["id"])
        and isinstance(fields, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())
    ):
        raise ReplaySourceError(
            f'{path}:{number}: expected {{"stream": str, "id": "MS-SEQ", "fields": {{str: str}}}}'
        )
    return RawEntry(EntryKey(record["stream"], record["id"]), fields)


def outcome(read: Any, line: str) -> tuple[str, Any]:
    try:
        entry = read(PATH, 7, line)
    except ReplaySourceError as exc:
        return "refused", str(exc)
    return "read", (entry.key, list(entry.fields.items()), entry.deliveries)


# Raw JSON fragments msgspec (or orjson) and json.loads disagree on, or that are simply odd.
ODD = [
    "NaN", "-Infinity", "1e400", "-1e400", "12345678901234567890123", "-9223372036854775809",
    "18446744073709551616", "1.5", "-0", "true", "null", '"\\ud800"', '"\\udc00x"', '"\\u0000"',
    '"caf\\u00e9"', '"é"', "[]", "{}", '"1-0"', '"1700000000000-3"', '"x"', '""',
]  # fmt: skip
text = st.text(max_size=8)
json_text = st.one_of(text.map(json.dumps), st.sampled_from(ODD))


@st.composite
def objects(draw: Any, depth: int = 0) -> str:
    """A JSON object's text, written by hand so that it can hold duplicates and odd numbers."""
    keys = ["stream", "id", "fields", "x"] if depth == 0 else ["a", "b", "type", "price"]
    members = []
    for _ in range(draw(st.integers(0, 5))):
        key = draw(st.sampled_from(keys) | text)
        if key == "fields" and depth == 0 and draw(st.booleans()):
            value = draw(objects(depth=1))
        elif key == "id" and draw(st.booleans()):
            value = json.dumps(draw(st.sampled_from(["1-0", "17-3", "12", "1-", "a-1", "١-0"])))
        else:
            value = draw(json_text)
        members.append(f"{json.dumps(key)}:{value}")
    return "{" + ",".join(members) + "}"


@st.composite
def lines(draw: Any) -> str:
    stream = draw(st.sampled_from(["stream.orders", "stream.fills"]) | text)
    fields = draw(st.dictionaries(text, text, max_size=4))
    valid = json.dumps({"stream": stream, "id": "1700000000000-1", "fields": fields})
    line = draw(st.sampled_from([valid, valid[:-1], valid + "x", " " + valid + " \r\n"]))
    # Nearly valid: the three keys right, their values (or an extra key's) sometimes odd.
    members = [
        f'"stream":{draw(st.sampled_from([json.dumps(stream), *ODD]))}',
        f'"id":{draw(st.sampled_from([json.dumps("1700000000000-1"), *ODD]))}',
        f'"fields":{draw(objects(depth=1))}',
        *draw(st.lists(st.sampled_from([f'"x":{odd}' for odd in ODD]), max_size=2)),
    ]
    near = "{" + ",".join(draw(st.permutations(members))) + "}"
    return draw(st.one_of(st.just(line), st.just(near), objects(), json_text, text))


@MANY
@given(lines())
def test_msgspec_reader_decides_as_json_loads(line):
    assert outcome(_archive_line, line) == outcome(reference, line)


def test_the_lines_json_and_msgspec_disagree_on_are_read_alike():
    for line in [
        '{"stream":"s","id":"1-0","fields":{"a":"\\ud800"}}',  # orjson refuses lone surrogates
        '{"stream":"s","id":"1-0","fields":{"a":"1"},"x":NaN}',  # orjson refuses NaN
        '{"stream":"s","id":"1-0","fields":{"a":"1"},"x":18446744073709551616}',  # float in orjson
        '{"stream":"s","id":"1-0","fields":{"a":18446744073709551616}}',
        '{"stream":"s","id":"1-0","fields":{"a":"1","a":"2"}}',  # duplicate: the last wins
    ]:
        assert outcome(_archive_line, line) == outcome(reference, line), line
    entry = _archive_line(PATH, 1, '{"stream":"s","id":"1-0","fields":{"a":"\\ud800"}}')
    assert entry.fields == {"a": "\ud800"}
