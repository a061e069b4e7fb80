"""The worker loop in milliseconds: fakeredis for the streams, MemoryStore for the database.

These check the loop's own logic (batching, dead letters, splitting, retries, shutdown); the
same paths run against real Redis and PostgreSQL in tests/integration.
"""

from __future__ import annotations

import gc
import threading
import time
from decimal import Decimal as D

import fakeredis
import pytest
from structlog.testing import capture_logs

from consumer.collector import THRESHOLDS
from consumer.settings import Settings
from consumer.stream import RedisStream
from consumer.testing import MemoryStore
from consumer.worker import EXIT_GRACE_EXPIRED, EXIT_OK, Worker


@pytest.fixture
def redis_client():
    return fakeredis.FakeRedis(decode_responses=True)


@pytest.fixture(params=[True, False], ids=["pipelined", "sequential"])
def settings(request):
    """Every test of the loop runs both ways: commits pipelined (the default) and not."""
    return Settings(
        pipeline_commits=request.param,
        database_url="postgresql://unused/db",
        redis_url="redis://unused",
        consumer_name="unit",
        batch_max_entries=10,
        batch_max_wait_ms=5,
        block_ms=10,
        claim_interval_s=0.05,
        claim_idle_s=0.05,
        retry_initial_ms=1,
        retry_max_ms=5,
        shutdown_grace_s=0.3,
    )


def make_worker(settings, redis_client, store):
    stream = RedisStream(
        "redis://unused",
        streams=settings.streams(),
        group=settings.group,
        consumer=settings.consumer_name,
        dlq_stream=settings.dlq_stream,
        client=redis_client,
    )
    return Worker(settings, store, stream)


def fill(n: int, **extra) -> dict[str, str]:
    return {"fill_id": f"f-{n}", "order_id": f"o-{n}", "symbol": "BTCUSDT", "side": "BUY",
            "quantity": "1", "price": "100", **extra}  # fmt: skip


def publish_fills(client, settings, count: int, **extra) -> None:
    for n in range(count):
        client.xadd(settings.fills_stream, fill(n, **extra))


def test_batches_are_cut_by_size_and_everything_is_acked(settings, redis_client):
    publish_fills(redis_client, settings, 25)
    store = MemoryStore()
    assert make_worker(settings, redis_client, store).run(until_idle=True) == EXIT_OK
    # Cut by size: never above the limit, and (one stream busy, three subscribed) at least
    # limit - streams + 1 entries while the backlog lasts.
    assert sum(store.batches) == 25
    assert all(8 <= size <= 10 for size in store.batches[:-1])
    assert store.state.positions["BTCUSDT"].quantity == D(25)
    assert redis_client.xpending(settings.fills_stream, settings.group)["pending"] == 0


def test_batches_are_folded_under_the_collector_policy_and_it_is_restored(settings, redis_client):
    """collector.fewer_collections holds while the worker runs (its backlog batches keep
    thousands of objects alive) and the process's own policy is back when run returns."""
    publish_fills(redis_client, settings, 5)
    seen: list[tuple[int, int, int]] = []
    collecting: list[bool] = []

    class Recording(MemoryStore):
        def write_batch(self, items):
            seen.append(gc.get_threshold())
            collecting.append(gc.isenabled())
            return super().write_batch(items)

    before = gc.get_threshold()
    make_worker(settings, redis_client, Recording()).run(until_idle=True)
    assert seen
    assert set(seen) == {THRESHOLDS}
    assert set(collecting) == {False}  # each batch runs collector.paused
    assert gc.get_threshold() == before
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_invalid_entries_are_dead_lettered_with_reason_and_logged(settings, redis_client):
    redis_client.xadd(settings.fills_stream, fill(1))
    bad_id = redis_client.xadd(settings.fills_stream, fill(2, quantity="-3"))
    store = MemoryStore()
    with capture_logs() as logs:
        make_worker(settings, redis_client, store).run(until_idle=True)
    ((_, letter),) = redis_client.xrange(settings.dlq_stream)
    assert letter["source_id"] == bad_id
    assert "quantity" in letter["error"]
    assert letter["quantity"] == "-3"
    warning = next(e for e in logs if e["event"] == "entry_dead_lettered")
    assert warning["entry_id"] == bad_id
    assert warning["log_level"] == "warning"
    assert set(store.state.fills) == {"f-1"}


def test_a_rejected_entry_is_isolated_by_splitting(settings, redis_client):
    publish_fills(redis_client, settings, 10)
    store = MemoryStore(reject=lambda item: item.event.fill_id == "f-6")
    worker = make_worker(settings, redis_client, store)
    worker.run(until_idle=True)
    ((_, letter),) = redis_client.xrange(settings.dlq_stream)
    assert letter["fill_id"] == "f-6"
    assert "rejected by PostgreSQL" in letter["error"]
    assert len(store.state.fills) == 9
    assert sum(store.batches) == 9
    assert worker.totals.dead_lettered == 1


def test_outage_is_retried_and_logged_once_per_state_change(settings, redis_client):
    publish_fills(redis_client, settings, 3)
    store = MemoryStore()
    store.down = True
    calls = {"n": 0}
    original = store.write_batch

    def flaky(items):
        calls["n"] += 1
        if calls["n"] >= 8:
            store.down = False
        return original(items)

    store.write_batch = flaky
    with capture_logs() as logs:
        make_worker(settings, redis_client, store).run(until_idle=True)
    events = [e["event"] for e in logs]
    assert events.count("postgres_unavailable") == 1
    assert events.count("postgres_available") == 1
    assert len(store.state.fills) == 3


def test_stop_during_an_outage_gives_up_after_grace_without_acking(settings, redis_client):
    publish_fills(redis_client, settings, 3)
    store = MemoryStore()
    store.down = True
    worker = make_worker(settings, redis_client, store)
    threading.Timer(0.1, worker.stop).start()
    assert worker.run() == EXIT_GRACE_EXPIRED
    # Nothing was committed, so nothing was acknowledged: the entries will be redelivered.
    assert redis_client.xpending(settings.fills_stream, settings.group)["pending"] == 3


def test_stop_finishes_the_batch_in_hand_and_returns_ok(settings, redis_client):
    publish_fills(redis_client, settings, 5)
    store = MemoryStore()
    worker = make_worker(settings, redis_client, store)
    original = store.write_batch

    def stop_while_writing(items):
        worker.stop()
        return original(items)

    store.write_batch = stop_while_writing
    assert worker.run() == EXIT_OK
    assert len(store.state.fills) == 5
    assert redis_client.xpending(settings.fills_stream, settings.group)["pending"] == 0


def test_restarted_worker_drains_its_own_pending_entries_first(settings, redis_client):
    publish_fills(redis_client, settings, 4)
    redis_client.xgroup_create(settings.fills_stream, settings.group, id="0", mkstream=True)
    # A previous life of this consumer read two entries and died before committing.
    redis_client.xreadgroup(settings.group, settings.consumer_name,
                            {settings.fills_stream: ">"}, count=2)  # fmt: skip
    store = MemoryStore()
    seen = record_applied(store)
    make_worker(settings, redis_client, store).run(until_idle=True)
    ids = [e for e, _ in redis_client.xrange(settings.fills_stream)]
    assert seen == ids  # the two pending ones first, then the rest, each once
    assert len(store.state.fills) == 4
    assert redis_client.xpending(settings.fills_stream, settings.group)["pending"] == 0


def record_applied(store: MemoryStore) -> list[str]:
    """Record the entry ids ``store`` applies, in the order it applies them."""
    seen: list[str] = []
    original = store.write_batch

    def record(items):
        seen.extend(item.key.entry_id for item in items)
        return original(items)

    store.write_batch = record
    return seen


def by_id(ids):
    return sorted(ids, key=lambda i: tuple(int(p) for p in i.split("-")))


@pytest.mark.parametrize("read_before_crash", [1, 3, 5])
def test_a_restart_merges_its_pending_entries_with_older_undelivered_ones(
    settings, redis_client, read_before_crash
):
    """A previous life read orders far ahead of fills (COUNT cuts each stream separately) and
    died: its pending orders must not be applied before older fills it never read."""
    ids = []
    for n in range(8):  # orders at ms 10, 20, ...; fills 5 ms after each order
        ids.append(redis_client.xadd(settings.orders_stream, {
            "order_id": f"o-{n}", "symbol": "BTCUSDT", "side": "BUY", "quantity": "1"},
            id=f"{10 * n + 10}-0"))  # fmt: skip
        ids.append(redis_client.xadd(settings.fills_stream, fill(n), id=f"{10 * n + 15}-0"))
    redis_client.xgroup_create(settings.orders_stream, settings.group, id="0")
    redis_client.xgroup_create(settings.fills_stream, settings.group, id="0")
    redis_client.xgroup_create(settings.marks_stream, settings.group, id="0", mkstream=True)
    redis_client.xreadgroup(settings.group, settings.consumer_name,
                            {settings.orders_stream: ">"}, count=6)  # fmt: skip
    redis_client.xreadgroup(settings.group, settings.consumer_name,
                            {settings.fills_stream: ">"}, count=read_before_crash)  # fmt: skip
    store = MemoryStore()
    seen = record_applied(store)
    make_worker(settings.model_copy(update={"batch_max_entries": 4}), redis_client, store).run(
        until_idle=True
    )
    assert seen == by_id(ids)


def test_a_restart_with_another_consumers_entries_pending_still_loses_nothing(
    settings, redis_client
):
    """Entries pending at another consumer: our own pending list is drained first (reading
    past theirs would break their stream's order), then theirs are reclaimed."""
    for n in range(6):
        redis_client.xadd(settings.fills_stream, fill(n), id=f"{n + 1}-0")
        redis_client.xadd(settings.orders_stream, {"order_id": f"x-{n}", "symbol": "BTCUSDT",
                          "side": "SELL", "quantity": "1"}, id=f"{n + 1}-1")  # fmt: skip
    for name in (settings.orders_stream, settings.fills_stream):
        redis_client.xgroup_create(name, settings.group, id="0")
    redis_client.xgroup_create(settings.marks_stream, settings.group, id="0", mkstream=True)
    redis_client.xreadgroup(settings.group, "other", {settings.fills_stream: ">"}, count=2)
    redis_client.xreadgroup(settings.group, settings.consumer_name,
                            {settings.orders_stream: ">"}, count=3)  # fmt: skip
    store = MemoryStore()
    seen = record_applied(store)
    make_worker(settings, redis_client, store).run(until_idle=True)
    assert sorted(seen) == sorted(
        [e for e, _ in redis_client.xrange(settings.fills_stream)]
        + [e for e, _ in redis_client.xrange(settings.orders_stream)]
    )
    fills_seen = [i for i in seen if i.endswith("-0")]
    assert fills_seen == by_id(fills_seen)  # per-stream order holds


def test_a_batch_never_exceeds_the_limit_across_streams(settings, redis_client):
    for n in range(30):
        redis_client.xadd(settings.orders_stream, {"order_id": f"o-{n}", "symbol": "BTCUSDT",
                                                   "side": "BUY", "quantity": "1"})  # fmt: skip
        redis_client.xadd(settings.fills_stream, fill(n))
        redis_client.xadd(settings.marks_stream, {"symbol": "BTCUSDT", "price": "101"})
    store = MemoryStore()
    make_worker(settings, redis_client, store).run(until_idle=True)
    assert sum(store.batches) == 90
    assert max(store.batches) <= settings.batch_max_entries


def test_entries_are_applied_in_stream_order_across_streams_whatever_the_cut(
    settings, redis_client
):
    """COUNT truncates each stream separately; nothing past the shorter stream is applied early."""
    ids = []
    for n in range(12):  # orders at ms 1..12, fills at ms 1, 5, 9 only: uneven streams
        ids.append(redis_client.xadd(settings.orders_stream, {
            "order_id": f"o-{n}", "symbol": "BTCUSDT", "side": "BUY", "quantity": "1"},
            id=f"{n + 1}-0"))  # fmt: skip
        if n % 4 == 0:
            ids.append(redis_client.xadd(settings.fills_stream, fill(n), id=f"{n + 1}-1"))
    store = MemoryStore()
    seen: list[str] = []
    original = store.write_batch

    def record(items):
        seen.extend(item.key.entry_id for item in items)
        return original(items)

    store.write_batch = record
    make_worker(settings.model_copy(update={"batch_max_entries": 4}), redis_client, store).run(
        until_idle=True
    )
    assert seen == sorted(ids, key=lambda i: tuple(int(p) for p in i.split("-")))


def test_one_busy_stream_does_not_starve_the_batches(settings, redis_client):
    """Entries held back for stream order must not shrink later batches (a regression once)."""
    for n in range(600):
        redis_client.xadd(settings.orders_stream, {"order_id": f"o-{n}", "symbol": "BTCUSDT",
                                                   "side": "BUY", "quantity": "1"})  # fmt: skip
        if n % 3 == 0:
            redis_client.xadd(settings.fills_stream, fill(n))
    store = MemoryStore()
    make_worker(settings.model_copy(update={"batch_max_entries": 100}), redis_client, store).run(
        until_idle=True
    )
    assert sum(store.batches) == 800
    assert len(store.batches) <= 12  # 8 full batches, and a few partial ones at the edges


def test_entries_held_back_for_stream_order_stay_within_a_batch_on_a_long_backlog(
    settings, redis_client
):
    """A busy stream and a sparse one: a read of each cuts them at different ids, so part of
    every read waits for the next batch. Those entries count against that batch's room: on a
    backlog of 1,200 entries they never pile up (they grew by ~27 % of each read before, to
    17,000 entries on a 100,000-entry backlog, each re-sorted every batch), and the batches
    stay full and in stream order."""
    ids = []
    for n in range(300):  # three orders for each fill
        for k in range(3):
            order = {"order_id": f"o-{n}-{k}", "symbol": "BTCUSDT", "side": "BUY", "quantity": "1"}
            ids.append(redis_client.xadd(settings.orders_stream, order, id=f"{40 * n + k + 1}-0"))
        ids.append(redis_client.xadd(settings.fills_stream, fill(n), id=f"{40 * n + 5}-0"))
    limit = settings.batch_max_entries
    store = MemoryStore()
    seen = record_applied(store)
    read_ahead = []
    applied = store.write_batch

    def watch(items):  # read, not acknowledged: this batch and what waits for the next ones
        streams = (settings.orders_stream, settings.fills_stream)
        read_ahead.append(sum(redis_client.xpending(s, settings.group)["pending"] for s in streams))
        return applied(items)

    store.write_batch = watch
    make_worker(settings, redis_client, store).run(until_idle=True)
    assert seen == by_id(ids)
    # Pipelined, one more batch is read (and parsed) while this one commits.
    ahead = 3 if settings.pipeline_commits else 2
    assert max(read_ahead) <= ahead * limit, read_ahead
    assert len(store.batches) <= 1200 // (limit // 2) + 2  # at least half full


def test_a_claim_during_the_drain_never_overtakes_our_own_pending_entries(settings, redis_client):
    """Our own pending entries go idle while they wait (a slow drain after an outage, a long
    batch). A claim then must not hand them to the loop ahead of those already in hand: only
    other consumers' entries are claimed, and what is claimed is drained in stream order with
    the rest (CI once saw positions differ after a Redis cut because of this)."""
    ids = []
    for n in range(24):  # orders and fills interleaved, so the drain's merge point holds some back
        ids.append(redis_client.xadd(settings.orders_stream, {
            "order_id": f"o-{n}", "symbol": "BTCUSDT", "side": "BUY", "quantity": "1"},
            id=f"{10 * n + 10}-0"))  # fmt: skip
        ids.append(redis_client.xadd(settings.fills_stream, fill(n), id=f"{10 * n + 15}-0"))
    for name in settings.streams():
        redis_client.xgroup_create(name, settings.group, id="0", mkstream=True)
    # A previous life of this consumer read everything and died before committing.
    redis_client.xreadgroup(settings.group, settings.consumer_name,
                            {settings.orders_stream: ">", settings.fills_stream: ">"})  # fmt: skip
    store = MemoryStore()
    seen = record_applied(store)
    original = store.write_batch

    def slow(items):  # the drain outlives claim_idle_s: the unread pending entries go idle
        time.sleep(0.03)
        return original(items)

    store.write_batch = slow
    fast = settings.model_copy(
        update={"batch_max_entries": 4, "claim_idle_s": 0.1, "claim_interval_s": 0.02}
    )
    with capture_logs() as logs:
        make_worker(fast, redis_client, store).run(until_idle=True)
    assert seen == by_id(ids)
    assert not [e for e in logs if e["event"] == "entries_reclaimed"]  # nothing was foreign


def test_entry_bytes_that_are_not_utf8_are_kept_and_marked_not_dropped():
    """Never replaced by U+FFFD (two ids would collapse into one: issue 22): kept as lone
    surrogates and marked, for the worker to dead-letter (tests/unit/test_entry_text.py)."""
    from consumer.stream import _entries  # noqa: PLC0415 - the decoding helper alone

    raw = [
        (b"1-0", {b"symbol": b"BTCUSDT", b"note": "déjà".encode()}),
        (b"2-0", {b"symbol": b"BTC\xffUSDT"}),
        (b"3-0", {"symbol": "ETHUSDT"}),  # a client that already decodes
        (b"4-0", None),  # trimmed while pending: no fields
    ]
    entries = _entries("s", raw)
    assert [e.fields for e in entries] == [
        {"symbol": "BTCUSDT", "note": "déjà"},
        {"symbol": "BTC\udcffUSDT"},
        {"symbol": "ETHUSDT"},
        {},
    ]
    assert [e.key.entry_id for e in entries] == ["1-0", "2-0", "3-0", "4-0"]
    assert [e.not_utf8 for e in entries] == [
        None,
        "field 'symbol' is not valid UTF-8: b'BTC\\xffUSDT'",
        None,
        None,
    ]


def test_batches_grow_on_a_backlog_up_to_the_maximum(settings, redis_client):
    publish_fills(redis_client, settings, 400)
    store = MemoryStore()
    grown = settings.model_copy(
        update={"batch_min_entries": 10, "batch_max_entries": 80, "batch_max_duration_ms": 60_000}
    )
    make_worker(grown, redis_client, store).run(until_idle=True)
    assert sum(store.batches) == 400
    assert store.batches[0] <= 10
    assert max(store.batches) > 40  # doubled from 10 at least three times
    assert max(store.batches) <= 80
    assert len(store.batches) < 400 // 10
