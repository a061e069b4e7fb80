"""The bulk engine's bounded memory (consumer/db/bulk.py): orders evicted once final and loaded
back when a later entry names them, against the batches engine, table by table.

Tiny chunks force an eviction between nearly every pair of entries; the later entries name
evicted orders and fills in every way the fold judges with stored state: a repeated order
event, a conflicting one (dead letter), a repeated fill, a conflicting fill (dead letter), a
late fill past the order's quantity (dead letter: the filled quantity comes back too), a late
fill within it, an event moving an evicted order's created_at back, and the bot's dialect (a
repeated result, a repeated request found by its client id, a partial result then the rest).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import redis

from consumer import db, replay
from consumer.dialect import derived_fill_id
from consumer.settings import Settings
from tests.integration.test_bulk_replay import _tables
from tests.support.bot import T0, request, result

ORDER = {"order_id": "o-1", "symbol": "BTCUSDT", "side": "BUY", "quantity": "1",
         "status": "SUBMITTED", "timestamp": "2099-01-01T00:00:00Z"}  # fmt: skip
FILL = {"fill_id": "f-1", "order_id": "o-1", "symbol": "BTCUSDT", "side": "BUY",
        "quantity": "1", "price": "100", "timestamp": "2099-01-01T00:00:01Z"}  # fmt: skip


def _history(settings: Settings, client: redis.Redis) -> None:
    orders, fills = settings.orders_stream, settings.fills_stream
    at = 2099 * 10**9  # explicit, increasing ids: the order of the entries is the list's
    ts = T0 + 10**8
    entries: list[tuple[str, dict[str, Any]]] = [
        (orders, ORDER),
        (fills, FILL),
        (orders, {**ORDER, "status": "FILLED", "timestamp": "2099-01-01T00:00:02Z"}),
        (orders, {**ORDER, "order_id": "o-2", "side": "SELL", "status": "CANCELLED"}),
        (orders, {**ORDER, "status": "FILLED"}),  # repeated: no change
        (orders, {**ORDER, "quantity": "3"}),  # conflicts with the evicted row
        (fills, FILL),  # a repeated fill of an evicted order
        (fills, {**FILL, "price": "101"}),  # conflicts with the evicted fill
        (fills, {**FILL, "fill_id": "f-2", "quantity": "0.5"}),  # past o-1's quantity
        (orders, {**ORDER, "order_id": "o-3", "quantity": "2"}),
        (fills, {**FILL, "fill_id": "f-3", "order_id": "o-3", "quantity": "1"}),
        (orders, {**ORDER, "order_id": "o-3", "quantity": "2", "status": "CANCELLED"}),
        (fills, {**FILL, "fill_id": "f-4", "order_id": "o-3", "quantity": "0.5",
                 "side": "SELL", "price": "110"}),  # late, within its quantity
        (orders, {**ORDER, "order_id": "o-3", "quantity": "2",
                  "timestamp": "2098-12-31T23:00:00Z"}),  # moves created_at back
        (orders, request("BTCUSDT-7", quantity="1.0", ts=ts)),
        (fills, result("MOCK_7", client_id="BTCUSDT-7", quantity="1.0", price="100.0",
                       ts=ts + 5)),
        (fills, result("MOCK_7", client_id="BTCUSDT-7", quantity="1.0", price="100.0",
                       ts=ts + 6)),  # repeated result
        (orders, request("BTCUSDT-7", quantity="1.0", ts=ts - 60)),  # repeated, earlier
        (fills, result("MOCK_8", client_id="BTCUSDT-8", quantity="1.0", filled="0.4",
                       price="100.0", status="PARTIAL", ts=ts + 10)),
        (fills, result("MOCK_8", client_id="BTCUSDT-8", quantity="1.0", filled="1.0",
                       price="101.0", ts=ts + 20)),
        (fills, result("MOCK_8", client_id="BTCUSDT-8", quantity="1.0", filled="1.0",
                       price="101.0", ts=ts + 30)),  # again, once evicted
        (orders, request("BTCUSDT-8", quantity="1.0", ts=ts)),  # its request, last
        (fills, {**FILL, "fill_id": "f-9", "order_id": "MOCK_8",
                 "quantity": "0.1"}),  # past MOCK_8's derived fills
    ]  # fmt: skip
    for n, (name, fields) in enumerate(entries):
        client.xadd(name, {k: str(v) for k, v in fields.items()}, id=f"{at + n}-0")


@pytest.fixture
def writers(monkeypatch: pytest.MonkeyPatch) -> list[db.BulkWriter]:
    """Every BulkWriter a replay makes (to read its eviction counters)."""
    made: list[db.BulkWriter] = []
    real = db.BulkWriter

    def making(*args: Any, **kwargs: Any) -> db.BulkWriter:
        writer = real(*args, **kwargs)
        made.append(writer)
        return writer

    monkeypatch.setattr(db, "BulkWriter", making)
    return made


def _replay(settings: Settings, dsn: str, engine: replay.Engine, chunk: int) -> Any:
    return replay.replay(
        settings, replay.SourceSpec("redis"), target_dsn=dsn, engine=engine, chunk_size=chunk
    )


@pytest.mark.parametrize("chunk", [1, 2, 3, 1000])
def test_evicted_orders_come_back_exactly_as_an_unbounded_fold_has_them(
    settings: Settings,
    redis_client: redis.Redis,
    make_database: Any,
    writers: list[db.BulkWriter],
    chunk: int,
):
    _history(settings, redis_client)
    batches, bulk = make_database(), make_database()
    expected_summary = _replay(settings, batches, "batches", 1)
    summary = _replay(settings, bulk, "bulk", chunk)
    assert summary.rejected == expected_summary.rejected
    assert (
        summary.describe().split(" seconds=")[0]
        == (expected_summary.describe().split(" seconds=")[0])
    )
    reasons = [reason for _, _, reason in summary.rejected]
    assert len(reasons) == 4, reasons
    assert "conflicts with stored order 'o-1'" in reasons[0]
    assert "conflicts with stored fill 'f-1'" in reasons[1]
    assert "past its quantity" in reasons[2]
    assert "'f-9' takes order 'MOCK_8' past its quantity" in reasons[3]  # derived fills count
    expected = _tables(batches)
    assert {r["fill_id"] for r in expected["paper_fills"]} >= {"f-1", "f-3", "f-4"}
    got = _tables(bulk)
    for table in expected:
        assert got[table] == expected[table], table
    (writer,) = writers
    if chunk < 1000:
        assert writer.evicted >= 5
        assert writer.reloaded >= 3
    else:
        assert writer.reloaded == 0


def test_a_writer_thread_error_fails_the_replay_and_rolls_back(
    settings: Settings,
    redis_client: redis.Redis,
    make_database: Any,
    monkeypatch: pytest.MonkeyPatch,
):
    """A COPY the server refuses in the writer thread surfaces in the replay, which rolls
    back (nothing left in the tables, the thread stopped)."""
    from consumer.db import bulk as bulk_engine  # noqa: PLC0415

    _history(settings, redis_client)
    target = make_database()
    monkeypatch.setattr(bulk_engine, "COPY_FILLS", "COPY no_such_table (x) FROM STDIN")
    with pytest.raises(Exception, match="no_such_table"):
        _replay(settings, target, "bulk", 1)
    assert all(not rows for rows in _tables(target).values())


@pytest.mark.parametrize("chunk", [1, 2, 1000])
def test_a_result_whose_derived_fill_id_is_an_evicted_fill_of_another_order_derives_none(
    settings: Settings, redis_client: redis.Redis, make_database: Any, chunk: int
):
    """The live writer's StaleFoldError case: a bot result derives the fill ``MOCK_9:1``, but
    a fill under that id was applied before, for another order that is final (so evicted with
    small chunks). Live, the fill is found stored and the result derives none; the bulk engine
    looks the derived id up before folding and does the same (it used to fail the replay on
    the primary key)."""
    taken = derived_fill_id("MOCK_9", Decimal("1.0"))
    orders, fills = settings.orders_stream, settings.fills_stream
    at = 2099 * 10**9
    ts = T0 + 10**8
    entries: list[tuple[str, dict[str, Any]]] = [
        (orders, {**ORDER, "order_id": "o-5"}),
        (fills, {**FILL, "fill_id": taken, "order_id": "o-5"}),
        (orders, {**ORDER, "order_id": "o-5", "status": "FILLED"}),
        (orders, {**ORDER, "order_id": "o-6", "status": "CANCELLED"}),
        (orders, request("BTCUSDT-9", quantity="1.0", ts=ts)),
        (fills, result("MOCK_9", client_id="BTCUSDT-9", quantity="1.0", price="100.0",
                       ts=ts + 5)),
    ]  # fmt: skip
    for n, (name, fields) in enumerate(entries):
        redis_client.xadd(name, {k: str(v) for k, v in fields.items()}, id=f"{at + n}-0")
    batches, bulk = make_database(), make_database()
    expected_summary = _replay(settings, batches, "batches", 1)
    summary = _replay(settings, bulk, "bulk", chunk)
    assert summary.rejected == expected_summary.rejected == []
    expected, got = _tables(batches), _tables(bulk)
    assert [(r["fill_id"], r["order_id"]) for r in expected["paper_fills"]] == [(taken, "o-5")]
    for table in expected:
        assert got[table] == expected[table], table
