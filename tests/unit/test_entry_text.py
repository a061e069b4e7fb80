"""Fields that are not UTF-8: never decoded lossily, always dead-lettered with the bytes shown.

fakeredis for the streams (a client without ``decode_responses``, as the worker's), MemoryStore
for the database; the same paths run against real Redis and PostgreSQL in
tests/integration/test_bad_input.py and test_replay.py.
"""

from __future__ import annotations

import json

import fakeredis
import pytest

from consumer import replay
from consumer.records import EntryKey, RawEntry, decode_fields, not_text, restore_bytes
from consumer.settings import Settings
from consumer.stream import RedisStream, dead_letter_fields, read_range
from consumer.testing import MemoryStore
from consumer.worker import EXIT_OK, Worker

FILL = {"fill_id": "f-1", "order_id": "o-1", "symbol": "BTCUSDT", "side": "BUY",
        "quantity": "1", "price": "100"}  # fmt: skip


@pytest.fixture
def raw_client():
    return fakeredis.FakeRedis()  # bytes in, bytes out


@pytest.fixture
def settings():
    return Settings(
        database_url="postgresql://unused/db", redis_url="redis://unused", consumer_name="unit",
        batch_max_entries=10, batch_max_wait_ms=5, block_ms=10, retry_initial_ms=1,
        retry_max_ms=5,
    )  # fmt: skip


def _stream(settings, client) -> RedisStream:
    return RedisStream.from_settings(settings, client=client)


def test_decode_fields_keeps_distinct_bytes_distinct_and_says_which_field():
    one, why_one = decode_fields({b"order_id": b"o-\xff", b"symbol": b"BTCUSDT"})
    other, why_other = decode_fields({b"order_id": b"o-\xfe", b"symbol": b"BTCUSDT"})
    assert one["order_id"] != other["order_id"]  # o-\ufffd twice before
    assert "\ufffd" not in one["order_id"]
    assert one["symbol"] == "BTCUSDT"
    assert why_one == "field 'order_id' is not valid UTF-8: b'o-\\xff'"
    assert why_other == "field 'order_id' is not valid UTF-8: b'o-\\xfe'"
    assert restore_bytes(one["order_id"]) == b"o-\xff"
    assert not_text(one) == why_one  # the same description from the decoded text


def test_decode_fields_names_every_bad_field_and_a_bad_field_name():
    text, why = decode_fields({b"fill_id": b"\xc3(", b"k\xff": b"v", b"ok": b"caf\xc3\xa9"})
    assert why == (
        "field 'fill_id' is not valid UTF-8: b'\\xc3('; field name b'k\\xff' is not valid UTF-8"
    )
    assert text["ok"] == "café"
    assert decode_fields({b"a": b"caf\xc3\xa9"}) == ({"a": "café"}, None)
    assert not_text({"a": "café"}) is None


def test_a_long_field_is_shown_shortened():
    _, why = decode_fields({b"data": b"\xff" * 500})
    assert why is not None
    assert why.endswith("… (500 bytes)")
    assert len(why) < 400


def test_the_stream_marks_the_entry_and_the_fast_path_leaves_text_alone(settings, raw_client):
    raw_client.xadd(settings.fills_stream, {**FILL, "fill_id": b"f-\xff"})
    raw_client.xadd(settings.fills_stream, FILL)
    bad, good = read_range(raw_client, "redis://unused", settings.fills_stream)
    assert bad.not_utf8 == "field 'fill_id' is not valid UTF-8: b'f-\\xff'"
    assert good.not_utf8 is None
    assert good.fields == FILL


def test_the_worker_dead_letters_it_with_the_original_bytes(settings, raw_client):
    for suffix in (b"\xff", b"\xfe"):
        raw_client.xadd(settings.fills_stream, {**FILL, "fill_id": b"f-" + suffix})
    raw_client.xadd(settings.fills_stream, FILL)
    store = MemoryStore()
    stream = _stream(settings, raw_client)
    stream.ensure_groups()
    first = stream.read(count=10, block_ms=None, pending=False)
    redelivered = stream.read(count=10, block_ms=None, pending=True)  # delivery counts looked up
    assert [e.not_utf8 is not None for e in redelivered] == [e.not_utf8 is not None for e in first]
    worker = Worker(settings, store, stream)
    assert worker.run(until_idle=True) == EXIT_OK

    letters = [fields for _, fields in raw_client.xrange(settings.dlq_stream)]
    assert [f[b"fill_id"] for f in letters] == [b"f-\xff", b"f-\xfe"]
    assert [f[b"error"] for f in letters] == [
        b"field 'fill_id' is not valid UTF-8: b'f-\\xff'",
        b"field 'fill_id' is not valid UTF-8: b'f-\\xfe'",
    ]
    assert list(store.state.fills) == ["f-1"]
    assert worker.totals.dead_lettered == 2
    assert raw_client.xpending(settings.fills_stream, settings.group)["pending"] == 0


def test_dead_letter_fields_restore_a_bad_field_name_too():
    fields, why = decode_fields({b"k\xff": b"v\xfe", b"error": b"x"})
    entry = RawEntry(EntryKey("s", "1-0"), fields, 1, why)
    letter = dead_letter_fields(entry, why or "")
    assert letter[b"k\xff"] == b"v\xfe"
    assert letter[b"orig.error"] == b"x"
    assert letter["error"] == "field name b'k\\xff' is not valid UTF-8"


def test_an_export_line_keeps_the_bytes_and_the_reader_marks_the_entry(tmp_path, settings):
    fields, why = decode_fields({b"order_id": b"o-\xff", b"symbol": b"BTCUSDT"})
    text = json.dumps({"stream": settings.orders_stream, "id": "5-0", "fields": fields})
    good = {"stream": settings.orders_stream, "id": "6-0", "fields": {"order_id": "o-\U0001f600"}}
    archive = tmp_path / "a.jsonl"
    archive.write_text(text + "\n" + json.dumps(good) + "\n", encoding="utf-8")
    bad_entry, good_entry = replay.file_entries(archive, settings.streams())
    assert bad_entry.not_utf8 == why
    assert restore_bytes(bad_entry.fields["order_id"]) == b"o-\xff"
    assert "\\ud83d\\ude00" in archive.read_text()  # an escaped surrogate pair ...
    assert good_entry.not_utf8 is None  # ... is text
    assert good_entry.fields == {"order_id": "o-\U0001f600"}
