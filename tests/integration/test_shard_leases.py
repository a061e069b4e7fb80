"""Shard leases against real PostgreSQL and Redis: fencing, takeover, reclaim, status.

- an expired owner's batch cannot commit, and a takeover waits for the batch in flight;
- a dead worker's shards are taken over after the lease time and the entries it held pending
  are adopted and processed: the final state equals one unsharded worker's;
- a worker cut off from its lease stops reading Redis; an entry on the wrong shard is refused;
- ``status`` shows owner, epoch, heartbeat and lag per shard.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
import redis
from psycopg.rows import dict_row
from pydantic import SecretStr
from structlog.testing import capture_logs

from consumer import status
from consumer.db import LeaseStore, PostgresStore, check_fence
from consumer.errors import LeaseLostError
from consumer.leases import LeasedStream, LocalLease, ShardRunner, ShardsProbe
from consumer.logs import configure
from consumer.publisher import Publisher
from consumer.records import EntryKey, ParsedEntry, RawEntry
from consumer.replay import SourceSpec, replay
from consumer.settings import Settings
from consumer.shards import all_shard_streams, shard_of, shard_settings
from consumer.stream import RedisStream
from consumer.worker import parse_raw, stream_kinds
from tests.support.pipeline import publish, rows, run_until_idle, snapshot

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "DOGEUSDT")


@pytest.fixture
def sharded(settings: Settings, redis_client: redis.Redis) -> Iterator[Settings]:
    """The test's settings with 2 shards and a short lease; the shard streams deleted after."""
    mine = settings.model_copy(update={"shards": 2, "lease_ttl_s": 1.0, "consumer_name": "alive"})
    yield mine
    dlqs = [shard_settings(mine, k).dlq_stream for k in range(mine.shards)]
    redis_client.delete(*all_shard_streams(mine), *dlqs)


def _publisher(client: redis.Redis, settings: Settings, *, shards: int) -> Publisher:
    return Publisher.for_settings(
        client,
        settings,
        seed=7,
        symbols=SYMBOLS,
        malformed_ratio=0.02,
        start=datetime(2099, 3, 1, tzinfo=UTC),
        run_id="shardtest",
        shards=shards,
    )


def _parsed(settings: Settings, n: int) -> list[ParsedEntry]:
    """``n`` valid events of the synthetic bot, parsed as the worker parses them."""
    publisher = _publisher(redis.Redis(), settings, shards=0)
    kinds = stream_kinds(settings)
    items = []
    for i, entry in enumerate(e for e in publisher.entries(n * 2) if e.kind != "malformed"):
        raw = RawEntry(EntryKey(entry.stream, f"{i + 1}-0"), entry.fields)
        items.append(ParsedEntry(raw, parse_raw(kinds, raw)))
    return items[:n]


def _count(dsn: str, table: str) -> int:
    return int(rows(dsn, f"SELECT count(*) AS n FROM {table}")[0]["n"])


def _leases(settings: Settings, member: str, ttl_s: float) -> LeaseStore:
    store = LeaseStore(settings.database_dsn(), group=settings.group, member=member, ttl_s=ttl_s)
    store.open()
    return store


def test_an_expired_owners_batch_cannot_commit(sharded: Settings) -> None:
    old, new = _leases(sharded, "old", 0.3), _leases(sharded, "new", 5.0)
    store = PostgresStore(sharded.database_dsn(), group=sharded.group)
    store.open()
    try:
        old_fence = old.acquire(0)
        assert old_fence is not None
        assert old_fence.epoch == 1
        assert new.acquire(0) is None  # held: nobody else gets it
        time.sleep(0.5)
        new_fence = new.acquire(0)
        assert new_fence is not None
        assert new_fence.epoch == 2
        assert old.renew([old_fence]) == set()

        items = _parsed(sharded, 40)
        with pytest.raises(LeaseLostError, match="epoch 1 of old"):
            store.write_batch(items, fence=old_fence)
        assert _count(sharded.database_dsn(), "paper_orders") == 0  # nothing of it committed
        assert store.write_batch(items, fence=new_fence).orders_written > 0

        # Expired with nobody taking over is not held either.
        lapsed = old.acquire(1)
        assert lapsed is not None
        time.sleep(0.5)
        with pytest.raises(LeaseLostError):
            store.write_batch(items, fence=lapsed)
    finally:
        store.close()
        old.close()
        new.close()


def test_a_takeover_waits_for_the_batch_in_flight(sharded: Settings) -> None:
    old, new = _leases(sharded, "old", 0.3), _leases(sharded, "new", 5.0)
    fence = old.acquire(0)
    assert fence is not None
    taken: list[Any] = []
    with psycopg.connect(sharded.database_dsn(), row_factory=dict_row) as conn:
        check_fence(conn, fence)  # the batch transaction of the old owner has begun …
        time.sleep(0.5)  # … and its lease expires while it is still writing
        thief = threading.Thread(target=lambda: taken.append(new.acquire(0)))
        thief.start()
        thief.join(timeout=1.0)
        assert thief.is_alive(), "the takeover must wait for the batch in flight"
        conn.commit()
    thief.join(timeout=10)
    assert not thief.is_alive()
    assert taken[0] is not None
    assert taken[0].epoch == 2
    old.close()
    new.close()


def test_a_dead_workers_shards_are_taken_over_and_its_pending_entries_reclaimed(
    sharded: Settings, redis_client: redis.Redis, make_database: Any
) -> None:
    _publisher(redis_client, sharded, shards=2).publish(800)
    # A worker "dead" held both shards, had read entries of shard 0, and died.
    dead = _leases(sharded, "dead", 1.0)
    assert dead.heartbeat() == ["dead"]
    assert dead.acquire(0) is not None
    assert dead.acquire(1) is not None
    shard0 = shard_settings(sharded, 0)
    gone = RedisStream.from_settings(shard0.model_copy(update={"consumer_name": "dead"}))
    gone.ensure_groups()
    held = gone.read(count=60, block_ms=None, pending=False)
    assert held
    gone.close()
    dead.close()

    configure("json", "info")  # an earlier test may have left a higher level in place
    with capture_logs() as logs:
        assert ShardRunner(sharded).run(until_idle=True) == 0
    events = [e["event"] for e in logs]
    assert events.count("shard_acquired") >= 2
    (adopted,) = [e for e in logs if e["event"] == "shard_pending_adopted"]
    assert (adopted["shard"], adopted["entries"]) == (0, len(held))
    acquired = {e["shard"]: e["epoch"] for e in logs if e["event"] == "shard_acquired"}
    assert acquired[0] == acquired[1] == 2  # taken over from "dead", not created afresh
    streams = all_shard_streams(sharded)
    assert sum(int(redis_client.xpending(n, sharded.group)["pending"]) for n in streams) == 0
    leases = rows(sharded.database_dsn(), "SELECT owner FROM paper_shard_leases")
    assert [r["owner"] for r in leases] == [None, None]  # released on exit

    # The same events, unsharded, through one ordinary worker.
    reference = sharded.model_copy(update={"database_url": SecretStr(make_database()), "shards": 0})
    _publisher(redis_client, reference, shards=0).publish(800)
    run_until_idle(reference)
    mine, theirs = snapshot(sharded.database_dsn()), snapshot(reference.database_dsn())
    mine.pop("snapshots"), theirs.pop("snapshots")
    assert mine == theirs
    assert _count(sharded.database_dsn(), "paper_fills") > 50


def test_a_replay_of_the_sharded_streams_equals_one_unsharded_worker(
    sharded: Settings, redis_client: redis.Redis, make_database: Any
) -> None:
    _publisher(redis_client, sharded, shards=2).publish(600)
    replayed = make_database()
    assert replay(sharded, SourceSpec("redis"), target_dsn=replayed).entries == 600
    reference = sharded.model_copy(update={"database_url": SecretStr(make_database()), "shards": 0})
    _publisher(redis_client, reference, shards=0).publish(600)
    run_until_idle(reference)
    mine, theirs = snapshot(replayed), snapshot(reference.database_dsn())
    mine.pop("snapshots"), theirs.pop("snapshots")
    assert mine == theirs


def test_without_a_valid_lease_the_stream_refuses_to_read_and_clamps_blocking(
    sharded: Settings,
) -> None:
    lapsed = LeasedStream.for_shard(shard_settings(sharded, 0), 0, LocalLease(0.0))
    with pytest.raises(LeaseLostError, match="shard 0"):
        lapsed.read(count=10, block_ms=100, pending=False)
    with pytest.raises(LeaseLostError):
        lapsed.ack([EntryKey(lapsed.streams[0], "1-0")])
    lapsed.close()
    short = LeasedStream.for_shard(
        shard_settings(sharded, 0), 0, LocalLease(time.monotonic() + 0.3)
    )
    short.ensure_groups()
    started = time.monotonic()
    assert short.read(count=10, block_ms=20_000, pending=False) == []
    assert time.monotonic() - started < 5  # BLOCK cut to the lease's 0.3 s, not 20 s
    short.close()


def test_an_entry_on_the_wrong_shard_is_dead_lettered(
    sharded: Settings, redis_client: redis.Redis
) -> None:
    assert (shard_of("BTCUSDT", 2), shard_of("ETHUSDT", 2)) == (1, 0)
    fill = {"order_id": "o1", "side": "BUY", "quantity": "1", "price": "100"}
    one = shard_settings(sharded, 1)
    publish(redis_client, one.fills_stream, {**fill, "fill_id": "f1", "symbol": "BTCUSDT"})
    publish(redis_client, one.fills_stream, {**fill, "fill_id": "f2", "symbol": "ETHUSDT"})
    assert ShardRunner(sharded).run(until_idle=True) == 0
    assert [
        r["fill_id"] for r in rows(sharded.database_dsn(), "SELECT fill_id FROM paper_fills")
    ] == ["f1"]
    (letter,) = [fields for _, fields in redis_client.xrange(one.dlq_stream)]
    assert letter["fill_id"] == "f2"
    assert "belongs to shard 0 of 2, not 1" in letter["error"]
    probe = ShardsProbe.for_settings(sharded)  # what the metrics prober reads
    try:
        assert len(probe.group_state()) == 2 * 3
        length, newest = probe.dead_letters(3)
        assert (length, [n["source_stream"] for n in newest]) == (1, [one.fills_stream])
    finally:
        probe.close()


def test_status_shows_owner_heartbeat_and_lag_per_shard(
    sharded: Settings, redis_client: redis.Redis
) -> None:
    for k in range(sharded.shards):
        RedisStream.from_settings(shard_settings(sharded, k)).ensure_groups()
    _publisher(redis_client, sharded, shards=2).publish(100)
    leases = _leases(sharded, "w1", 30.0)
    assert leases.acquire(1) is not None
    leases.close()
    current = status.gather(sharded)
    zero, one = current["shards"]
    assert (zero["owner"], zero["live"]) == (None, False)
    assert (one["owner"], one["epoch"], one["live"]) == ("w1", 1, True)
    assert one["heartbeat_age_s"] is not None
    assert one["heartbeat_age_s"] < 30
    # Nothing read yet: every entry is behind, which Redis 6.2 (no lag in XINFO GROUPS) tells
    # too, since each stream starts after the group's last delivered id.
    assert zero["lag"] + one["lag"] == 100
    assert zero["lag"] == zero["length"]
    assert zero["pending"] == 0
    text = status.render(current)
    assert "shards (2)" in text
    assert "owner w1 (epoch 1)" in text
    assert "owner unowned" in text
