"""Bad input never stops the worker and never loses good entries around it.

Malformed entries of every kind are dead-lettered with a clear reason and their original
fields; nothing of theirs reaches the paper tables; the good entries around them are committed.
A value that passes validation but that PostgreSQL rejects is isolated by splitting the batch.
"""

from __future__ import annotations

from decimal import Decimal as D

import pytest
import redis
from structlog.testing import capture_logs

from consumer.trials import ALONE_ATTEMPTS
from tests.support.pipeline import dead_letters, position, publish, rows, run_until_idle

GOOD_FILL = {
    "order_id": "o-good",
    "symbol": "BTCUSDT",
    "side": "BUY",
    "quantity": "1",
    "price": "100",
}

MALFORMED = {
    "missing fill_id": (
        {"order_id": "x", "symbol": "BTCUSDT", "side": "BUY", "quantity": "1", "price": "1"},
        "fill_id",
    ),
    "missing quantity": (
        {"fill_id": "m2", "order_id": "x", "symbol": "BTCUSDT", "side": "BUY", "price": "1"},
        "quantity",
    ),
    "bad side": ({**GOOD_FILL, "fill_id": "m3", "side": "HOLD"}, "side"),
    "negative quantity": ({**GOOD_FILL, "fill_id": "m4", "quantity": "-1"}, "quantity"),
    "zero price": ({**GOOD_FILL, "fill_id": "m5", "price": "0"}, "price"),
    "huge price": ({**GOOD_FILL, "fill_id": "m6", "price": "1e20"}, "price"),
    "not a number": ({**GOOD_FILL, "fill_id": "m7", "quantity": "one"}, "quantity"),
    "bad timestamp": ({**GOOD_FILL, "fill_id": "m8", "timestamp": "yesterday"}, "timestamp"),
    "non-JSON data": ({"data": "{not json"}, "data"),
    "sql injection symbol": (
        {**GOOD_FILL, "fill_id": "m9", "symbol": "BTC'; DROP TABLE x;--"},
        "symbol",
    ),
    "bad fee type": ({**GOOD_FILL, "fill_id": "m10", "fee_type": "FREE"}, "fee_type"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_fill_is_dead_lettered_and_neighbours_committed(
    case, settings, redis_client, db_url
):
    fields, field_named = MALFORMED[case]
    publish(redis_client, settings.fills_stream, {**GOOD_FILL, "fill_id": "good-before"})
    bad_id = publish(redis_client, settings.fills_stream, fields)
    publish(redis_client, settings.fills_stream, {**GOOD_FILL, "fill_id": "good-after"})

    worker = run_until_idle(settings)

    (letter,) = dead_letters(redis_client, settings.dlq_stream)
    assert letter["source_stream"] == settings.fills_stream
    assert letter["source_id"] == bad_id
    assert field_named in letter["error"]
    for name, value in fields.items():  # the original fields travel with the reason
        assert letter.get(name, letter.get(f"orig.{name}")) == value
    fill_ids = [r["fill_id"] for r in rows(db_url, "SELECT fill_id FROM paper_fills")]
    assert sorted(fill_ids) == ["good-after", "good-before"]
    assert position(db_url, "BTCUSDT") == (D(2), D(100), D(0))
    assert worker.totals.dead_lettered == 1
    # Nothing is left pending: the bad entry was acknowledged with its dead letter.
    assert redis_client.xpending(settings.fills_stream, settings.group)["pending"] == 0


def test_sql_injection_text_is_stored_verbatim_as_data(settings, redis_client, db_url):
    evil = "x'); DROP TABLE paper_orders;--"
    publish(
        redis_client,
        settings.orders_stream,
        {
            "order_id": evil,
            "symbol": "BTCUSDT",
            "side": "BUY",
            "quantity": "1",
            "rejection_reason": "'; DELETE FROM paper_fills; --",
        },
    )
    run_until_idle(settings)
    (order,) = rows(db_url, "SELECT order_id, rejection_reason FROM paper_orders")
    assert order["order_id"] == evil
    assert order["rejection_reason"] == "'; DELETE FROM paper_fills; --"


def test_order_update_for_unknown_order_without_details_is_dead_lettered(
    settings, redis_client, db_url
):
    publish(redis_client, settings.orders_stream, {"order_id": "ghost", "status": "FILLED"})
    run_until_idle(settings)
    (letter,) = dead_letters(redis_client, settings.dlq_stream)
    assert "ghost" in letter["error"]
    assert "symbol" in letter["error"]
    assert rows(db_url, "SELECT * FROM paper_orders") == []


def test_value_rejected_by_postgres_is_isolated_by_splitting(settings, redis_client, db_url):
    """quantity × price overflows DECIMAL(18,8) in cost_basis_usdt: only PostgreSQL knows."""
    for n in range(6):
        publish(redis_client, settings.fills_stream, {**GOOD_FILL, "fill_id": f"ok-{n}"})
        if n == 3:
            publish(
                redis_client,
                settings.fills_stream,
                {
                    "fill_id": "overflow",
                    "order_id": "o-big",
                    "symbol": "ETHUSDT",
                    "side": "BUY",
                    "quantity": "9999999999",
                    "price": "9999999999",
                },
            )
    worker = run_until_idle(settings)
    (letter,) = dead_letters(redis_client, settings.dlq_stream)
    assert letter["fill_id"] == "overflow"
    assert "PostgreSQL" in letter["error"]
    assert position(db_url, "BTCUSDT") == (D(6), D(100), D(0))
    assert rows(db_url, "SELECT * FROM paper_fills WHERE fill_id = 'overflow'") == []
    assert worker.totals.fills == 6


def test_a_later_statement_of_the_batch_refusing_is_isolated_too(settings, redis_client, db_url):
    """Each fill fits, but the second makes the position's quantity overflow DECIMAL(18,8): the
    refusal comes from the position upsert, a statement whose result the batch never reads
    (the transaction runs in pipeline mode, so it surfaces at a later sync). It must still be
    the data error, isolated by splitting, and not an outage retried forever."""
    huge = {**GOOD_FILL, "symbol": "DOGEUSDT", "quantity": "9999999999", "price": "0.01"}
    publish(redis_client, settings.fills_stream, {**huge, "fill_id": "big-1", "order_id": "b1"})
    publish(redis_client, settings.fills_stream, {**GOOD_FILL, "fill_id": "ok-1"})
    publish(redis_client, settings.fills_stream, {**huge, "fill_id": "big-2", "order_id": "b2"})
    publish(redis_client, settings.fills_stream, {**GOOD_FILL, "fill_id": "ok-2"})
    worker = run_until_idle(settings)
    (letter,) = dead_letters(redis_client, settings.dlq_stream)
    assert letter["fill_id"] == "big-2"
    assert "PostgreSQL" in letter["error"]
    assert "overflow" in letter["error"], letter["error"]
    assert position(db_url, "DOGEUSDT") == (D("9999999999"), D("0.01"), D(0))
    assert position(db_url, "BTCUSDT") == (D(2), D(100), D(0))
    assert worker.totals.fills == 3


def _deliver(redis_client, settings, times: int) -> None:
    """Read the fills stream ``times`` times without acknowledging (a worker that died)."""
    redis_client.xgroup_create(settings.fills_stream, settings.group, id="0", mkstream=True)
    for n in range(times):
        redis_client.xreadgroup(
            settings.group, settings.consumer_name, {settings.fills_stream: "0" if n else ">"}
        )


def test_an_entry_delivered_too_often_but_never_attempted_is_committed(
    settings, redis_client, db_url
):
    """Deliveries count reads, not attempts (chaos dead-lettered valid entries read ahead by
    short-lived workers): past the limit an entry is tried, and here it commits."""
    publish(redis_client, settings.fills_stream, {**GOOD_FILL, "fill_id": "p-1"})
    _deliver(redis_client, settings, settings.max_deliveries + 2)
    run_until_idle(settings)
    assert dead_letters(redis_client, settings.dlq_stream) == []
    assert [r["fill_id"] for r in rows(db_url, "SELECT fill_id FROM paper_fills")] == ["p-1"]
    assert redis_client.exists(f"{settings.dlq_stream}:trials:{settings.group}") == 0


def test_poison_entry_that_stopped_the_worker_alone_is_dead_lettered_untried(
    settings, redis_client, db_url
):
    """A worker died on this entry again and again, the last times with it alone (the trials
    hash says so): it is set aside without being processed; the entry after it commits."""
    entry_id = publish(redis_client, settings.fills_stream, {**GOOD_FILL, "fill_id": "p-1"})
    publish(redis_client, settings.fills_stream, {**GOOD_FILL, "fill_id": "p-2"})
    _deliver(redis_client, settings, settings.max_deliveries)
    trials_key = f"{settings.dlq_stream}:trials:{settings.group}"
    redis_client.hset(trials_key, f"{settings.fills_stream}/{entry_id}", 1 + ALONE_ATTEMPTS)
    run_until_idle(settings)
    (letter,) = dead_letters(redis_client, settings.dlq_stream)
    assert letter["source_id"] == entry_id
    assert "poison" in letter["error"]
    assert "processed the entry alone" in letter["error"]
    assert [r["fill_id"] for r in rows(db_url, "SELECT fill_id FROM paper_fills")] == ["p-2"]
    assert redis_client.hlen(trials_key) == 0


def test_entries_trimmed_away_while_pending_are_dead_lettered_not_stuck(
    settings, redis_client, db_url
):
    """The bot trims its streams (MAXLEN): entries a crashed worker had read can vanish before
    the restart. Redis 7 returns them with no fields, Redis 6.2 as nil; either way they are
    dead-lettered with a reason that says so, and the worker does not spin on them."""
    trimmed = [publish(redis_client, settings.fills_stream, {**GOOD_FILL, "fill_id": f"t-{n}"})
               for n in range(2)]  # fmt: skip
    publish(redis_client, settings.fills_stream, {**GOOD_FILL, "fill_id": "kept"})
    redis_client.xgroup_create(settings.fills_stream, settings.group, id="0", mkstream=True)
    redis_client.xreadgroup(
        settings.group, settings.consumer_name, {settings.fills_stream: ">"}, count=2
    )
    redis_client.xtrim(settings.fills_stream, maxlen=1, approximate=False)

    worker = run_until_idle(settings)

    letters = dead_letters(redis_client, settings.dlq_stream)
    assert [letter["source_id"] for letter in letters] == trimmed
    assert all("trimmed" in letter["error"] for letter in letters)
    assert [r["fill_id"] for r in rows(db_url, "SELECT fill_id FROM paper_fills")] == ["kept"]
    assert worker.totals.dead_lettered == 2
    assert redis_client.xpending(settings.fills_stream, settings.group)["pending"] == 0


def test_entries_trimmed_while_a_dead_consumer_held_them_are_dead_lettered(
    settings, redis_client, db_url
):
    """Another consumer read entries and died; they were trimmed before they were claimed.
    Redis 7's XCLAIM drops them from the pending list, Redis 6.2 claims them with no fields:
    either way each gets a dead letter saying so, and the entry that is still there is
    committed."""
    trimmed = [publish(redis_client, settings.fills_stream, {**GOOD_FILL, "fill_id": f"t-{n}"})
               for n in range(2)]  # fmt: skip
    publish(redis_client, settings.fills_stream, {**GOOD_FILL, "fill_id": "kept"})
    redis_client.xgroup_create(settings.fills_stream, settings.group, id="0", mkstream=True)
    redis_client.xreadgroup(settings.group, "dead-consumer", {settings.fills_stream: ">"})
    redis_client.xtrim(settings.fills_stream, maxlen=1, approximate=False)

    worker = run_until_idle(settings.model_copy(update={"claim_idle_s": 0.1}))

    letters = dead_letters(redis_client, settings.dlq_stream)
    assert sorted(letter["source_id"] for letter in letters) == sorted(trimmed)
    assert all("trimmed" in letter["error"] for letter in letters)
    assert [r["fill_id"] for r in rows(db_url, "SELECT fill_id FROM paper_fills")] == ["kept"]
    assert worker.totals.dead_lettered == 2
    assert redis_client.xpending(settings.fills_stream, settings.group)["pending"] == 0


def test_fields_that_are_not_utf8_are_dead_lettered_never_decoded_into_ids(
    settings, redis_url, redis_client, db_url
):
    """Issue 22 #3: ``o-\\xff`` and ``o-\\xfe`` both became ``o-\\ufffd`` (one order), and fill
    ``f-\\xfe`` was then dropped without a word as a duplicate of ``f-\\xff``. Every entry with a
    field that is not UTF-8 is dead-lettered with the field named and its bytes escaped; the
    dead letter keeps the original bytes; the entries around them are committed."""
    raw = redis.Redis.from_url(redis_url)  # bytes in and out: no decoding on the test's side
    order = {"symbol": "BTCUSDT", "side": "BUY", "quantity": "1"}
    bad = [
        (stream, raw.xadd(stream, fields).decode())
        for stream, fields in [
            (settings.orders_stream, {**order, "order_id": b"o-\xff"}),
            (settings.orders_stream, {**order, "order_id": b"o-\xfe"}),
            (settings.fills_stream, {**GOOD_FILL, "fill_id": b"f-\xff"}),
            (settings.fills_stream, {**GOOD_FILL, "fill_id": b"f-\xfe"}),
        ]
    ]
    publish(redis_client, settings.fills_stream, {**GOOD_FILL, "fill_id": "good"})

    with capture_logs() as logs:
        worker = run_until_idle(settings)

    letters = {
        (f[b"source_stream"].decode(), f[b"source_id"].decode()): f
        for _, f in raw.xrange(settings.dlq_stream)
    }
    assert sorted(letters) == sorted(bad)
    errors = [letters[where][b"error"].decode() for where in bad]
    assert errors == [
        "field 'order_id' is not valid UTF-8: b'o-\\xff'",
        "field 'order_id' is not valid UTF-8: b'o-\\xfe'",
        "field 'fill_id' is not valid UTF-8: b'f-\\xff'",
        "field 'fill_id' is not valid UTF-8: b'f-\\xfe'",
    ]
    # The dead letter carries the entry as it was, bytes included.
    assert letters[bad[0]][b"order_id"] == b"o-\xff"
    assert letters[bad[3]][b"fill_id"] == b"f-\xfe"
    assert letters[bad[3]][b"symbol"] == b"BTCUSDT"
    logged = [e for e in logs if e["event"] == "entry_dead_lettered"]
    assert sorted((e["stream"], e["entry_id"]) for e in logged) == sorted(bad)
    assert [r["order_id"] for r in rows(db_url, "SELECT order_id FROM paper_orders")] == ["o-good"]
    assert [r["fill_id"] for r in rows(db_url, "SELECT fill_id FROM paper_fills")] == ["good"]
    assert worker.totals.dead_lettered == 4
    assert worker.totals.duplicates == 0
    for name in (settings.orders_stream, settings.fills_stream):
        assert redis_client.xpending(name, settings.group)["pending"] == 0
    raw.close()
