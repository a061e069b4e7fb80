"""Replay and export against real PostgreSQL and Redis: the rebuilt rows equal the live ones.

The live worker consumes a seeded synthetic bot's flow (several symbols, partial fills, rejected
and cancelled orders, marks, malformed entries, a UTC midnight) in small batches; a replay of the
same entries — from Redis, from an export file, from the ledger after the streams were trimmed —
must give exactly the same rows in every paper table (ingestion timestamps aside).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import redis

from consumer import replay
from consumer.db import PostgresStore
from consumer.errors import ReplayRefusedError, ReplaySourceError
from consumer.publisher import Publisher
from consumer.records import RawEntry
from consumer.settings import Settings
from tests.support.pipeline import rows, run_until_idle, snapshot

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT")
EVENTS = 1500


def _publish(settings: Settings, *, events: int = EVENTS, seed: int = 11) -> None:
    client = redis.Redis.from_url(settings.redis_dsn())
    try:
        Publisher.for_settings(
            client,
            settings,
            seed=seed,
            symbols=SYMBOLS,
            malformed_ratio=0.03,
            # Event time crosses a UTC midnight (hourly and daily snapshots) and stays ahead of
            # the wall clock, so the idle worker takes no wall-clock snapshots: those depend on
            # when it ran, not on the entries, and no replay can reproduce them.
            start=datetime(2099, 3, 1, 23, 58, tzinfo=UTC),
            run_id=f"replay{seed}",
        ).publish(events)
    finally:
        client.close()


def _state(dsn: str) -> dict[str, list[dict[str, object]]]:
    """Every paper table (snapshot()) plus the offsets the rows were built from."""
    return {
        **snapshot(dsn),
        "offsets": rows(
            dsn,
            "SELECT stream_name, group_name, last_entry_id, entries_committed "
            "FROM paper_consumer_offsets ORDER BY stream_name, group_name",
        ),
    }


@pytest.fixture
def live(settings: Settings) -> Settings:
    """The flow published and consumed by the live worker in batches of 97 entries."""
    _publish(settings)
    small_batches = settings.model_copy(update={"batch_max_entries": 97})
    run_until_idle(small_batches, archive=True)
    return settings


@pytest.mark.parametrize("engine", replay.ENGINES)
def test_replay_from_redis_and_from_an_export_file_equal_the_live_rows(
    live: Settings, make_database, redis_client, tmp_path: Path, engine: replay.Engine
):
    expected = _state(live.database_dsn())
    assert expected["orders"]
    assert expected["fills"]
    assert len(expected["positions"]) == len(SYMBOLS)
    assert len(expected["stats"]) == 2  # both sides of midnight
    assert any(
        o["status"] == "PARTIALLY_FILLED" or o["status"] == "CANCELLED" for o in expected["orders"]
    )
    dead_letters = redis_client.xlen(live.dlq_stream)
    assert dead_letters > 0

    from_redis = make_database()
    summary = replay.replay(
        live, replay.SourceSpec("redis"), target_dsn=from_redis, chunk_size=250, engine=engine
    )
    assert _state(from_redis) == expected
    assert summary.dead_lettered == dead_letters
    assert summary.entries == sum(redis_client.xlen(s) for s in live.streams())
    assert summary.chunks > 1

    archive = tmp_path / "history.jsonl.gz"
    exported = replay.export(live.redis_dsn(), live.streams(), archive, page_size=300)
    assert exported.entries == summary.entries
    assert not archive.with_name(archive.name + ".partial").exists()
    from_file = make_database()
    summary = replay.replay(
        live, replay.SourceSpec("file", archive), target_dsn=from_file, engine=engine
    )
    assert _state(from_file) == expected
    assert summary.dead_lettered == dead_letters


@pytest.mark.parametrize("engine", replay.ENGINES)
def test_replay_from_the_ledger_after_trimming_rebuilds_the_same_database(
    live: Settings, redis_client, engine: replay.Engine
):
    dsn = live.database_dsn()
    expected = _state(dsn)
    for name in live.streams():
        redis_client.xtrim(name, maxlen=10, approximate=False)
    # Not silently over existing rows:
    with pytest.raises(ReplayRefusedError, match="--reset"):
        replay.replay(live, replay.SourceSpec("ledger"))
    assert _state(dsn) == expected

    summary = replay.replay(
        live, replay.SourceSpec("ledger"), reset=True, chunk_size=300, engine=engine
    )
    assert _state(dsn) == expected
    assert summary.invalid == []  # the ledger keeps accepted entries only
    ledger = rows(dsn, "SELECT count(*) AS n FROM paper_event_ledger")[0]["n"]
    assert summary.entries == ledger


def test_replay_refuses_while_a_worker_is_connected(settings: Settings, make_database):
    _publish(settings, events=200)
    store = PostgresStore(settings.database_dsn(), group=settings.group)
    store.open()
    try:
        store.ping()  # a pool connection now holds the shared presence lock
        with pytest.raises(ReplayRefusedError, match="worker"):
            replay.replay(settings, replay.SourceSpec("redis"))
        # Another database is fine while the worker stays on its own.
        elsewhere = make_database()
        replay.replay(settings, replay.SourceSpec("redis"), target_dsn=elsewhere)
        assert rows(elsewhere, "SELECT count(*) AS n FROM paper_orders")[0]["n"] > 0
    finally:
        store.close()
    replay.replay(settings, replay.SourceSpec("redis"))
    assert snapshot(settings.database_dsn()) == snapshot(elsewhere)


def test_an_interrupted_replay_leaves_the_previous_state(live: Settings, make_database):
    dsn = live.database_dsn()
    expected = _state(dsn)

    def breaks_midway(entries: Iterator[RawEntry]) -> Iterator[RawEntry]:
        for n, entry in enumerate(entries):
            if n == 900:
                raise RuntimeError("source lost midway")
            yield entry

    for target, reset in ((dsn, True), (make_database(), False)):
        before = _state(target)
        with pytest.raises(RuntimeError, match="midway"):
            replay.replay(
                live,
                replay.SourceSpec("redis"),
                target_dsn=target,
                reset=reset,
                chunk_size=200,  # several chunks were written before the failure
                wrap_source=breaks_midway,
            )
        assert _state(target) == before
    assert _state(dsn) == expected
    # The lock went with the connection: the next replay runs.
    replay.replay(live, replay.SourceSpec("redis"), reset=True)
    assert _state(dsn) == expected


def test_export_reads_constant_size_pages(redis_url, stream_names, tmp_path, monkeypatch):
    name = stream_names["orders_stream"]
    client = redis.Redis.from_url(redis_url)
    pipe = client.pipeline(transaction=False)
    for n in range(2_500):
        pipe.xadd(name, {"order_id": f"o{n}", "n": str(n)})
    pipe.execute()
    client.close()

    counts: list[int | None] = []
    original = redis.Redis.xrange

    def spy(self, stream, min="-", max="+", count=None):
        counts.append(count)
        return original(self, stream, min=min, max=max, count=count)

    monkeypatch.setattr(redis.Redis, "xrange", spy)
    out = tmp_path / "orders.jsonl"
    summary = replay.export(redis_url, [name], out, page_size=1_000)
    assert summary.entries == 2_500
    assert counts == [1_000, 1_000, 1_000]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["fields"]["n"] for line in lines] == [str(n) for n in range(2_500)]
    assert {line["stream"] for line in lines} == {name}


def test_the_file_reader_refuses_an_archive_out_of_order(tmp_path, settings: Settings):
    archive = tmp_path / "bad.jsonl.gz"
    with gzip.open(archive, "wt", encoding="utf-8") as handle:
        for entry_id in ("5-0", "7-0", "6-0"):
            fields = {"order_id": "o1", "symbol": "BTCUSDT", "side": "BUY", "quantity": "1"}
            record = {"stream": settings.orders_stream, "id": entry_id, "fields": fields}
            handle.write(json.dumps(record) + "\n")
    with pytest.raises(ReplaySourceError, match=r"bad\.jsonl\.gz:3: id 6-0"):
        list(replay.file_entries(archive, settings.streams()))
    # ... and nothing was written by a replay that met it.
    with pytest.raises(ReplaySourceError):
        replay.replay(settings, replay.SourceSpec("file", archive))
    with psycopg.connect(settings.database_dsn()) as conn:
        assert conn.execute("SELECT count(*) FROM paper_orders").fetchone() == (0,)


def test_ties_in_a_file_follow_the_configured_stream_order(tmp_path, settings: Settings):
    archive = tmp_path / "ties.jsonl"
    lines = [
        {"stream": settings.fills_stream, "id": "9-0", "fields": {"fill_id": "f"}},
        {"stream": settings.orders_stream, "id": "9-0", "fields": {"order_id": "o"}},
        {"stream": "somebody.else", "id": "9-1", "fields": {}},
    ]
    archive.write_text("".join(json.dumps(line) + "\n" for line in lines))
    skipped: dict[str, int] = {}
    got = list(replay.file_entries(archive, settings.streams(), skipped=skipped))
    assert [e.key.stream for e in got] == [settings.orders_stream, settings.fills_stream]
    assert skipped == {"somebody.else": 1}


def test_fields_that_are_not_utf8_are_dead_lettered_by_a_replay_as_live(
    settings: Settings, redis_url: str, make_database, tmp_path: Path
):
    """Issue 22 #3 for replay: from Redis and from an export archive, an entry with a field that
    is not UTF-8 is counted as dead-lettered with the live worker's reason (the archive keeps the
    bytes), never decoded into an id that collides with another."""
    raw = redis.Redis.from_url(redis_url)
    order = {"order_id": "o-1", "symbol": "BTCUSDT", "side": "BUY", "quantity": "1"}
    fill = {**order, "price": "100"}
    published = [
        (name, raw.xadd(name, fields).decode())
        for name, fields in [
            (settings.orders_stream, {**order, "order_id": b"o-\xff"}),
            (settings.orders_stream, {**order, "order_id": b"o-\xfe"}),
            (settings.orders_stream, order),
            (settings.fills_stream, {**fill, "fill_id": b"f-\xff"}),
            (settings.fills_stream, {**fill, "fill_id": b"f-\xfe"}),
            (settings.fills_stream, {**fill, "fill_id": "f-1"}),
        ]
    ]
    raw.close()
    reasons = [
        "field 'order_id' is not valid UTF-8: b'o-\\xff'",
        "field 'order_id' is not valid UTF-8: b'o-\\xfe'",
        "field 'fill_id' is not valid UTF-8: b'f-\\xff'",
        "field 'fill_id' is not valid UTF-8: b'f-\\xfe'",
    ]
    bad = published[:2] + published[3:5]
    expected = [(*where, why) for where, why in zip(bad, reasons, strict=True)]

    from_redis = make_database()
    summary = replay.replay(settings, replay.SourceSpec("redis"), target_dsn=from_redis)
    assert sorted(summary.invalid) == sorted(expected)

    archive = tmp_path / "history.jsonl.gz"
    assert replay.export(settings.redis_dsn(), settings.streams(), archive).entries == 6
    from_file = make_database()
    summary = replay.replay(settings, replay.SourceSpec("file", archive), target_dsn=from_file)
    assert sorted(summary.invalid) == sorted(expected)
    for dsn in (from_redis, from_file):
        assert [r["order_id"] for r in rows(dsn, "SELECT order_id FROM paper_orders")] == ["o-1"]
        assert [r["fill_id"] for r in rows(dsn, "SELECT fill_id FROM paper_fills")] == ["f-1"]

    run_until_idle(settings)  # the live worker: the same entries, the same reasons
    letters = redis.Redis.from_url(redis_url, decode_responses=False).xrange(settings.dlq_stream)
    live = [(f[b"source_stream"].decode(), f[b"source_id"].decode(), f[b"error"].decode())
            for _, f in letters]  # fmt: skip
    assert sorted(live) == sorted(expected)
    assert _state(settings.database_dsn())["fills"] == _state(from_file)["fills"]
