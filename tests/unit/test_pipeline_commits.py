"""Pipelined commits (worker.py, committer.py): fakeredis for the streams, MemoryStore.

The promises: batch N is written, committed and acknowledged on the committer thread, in the
order read, ack after commit; at most one batch in flight and one parsed ahead; an error of the
committer is raised by ``run``; ``stop`` finishes the batch in flight; the batch in flight,
pending under our own name, never makes the order gate re-read our pending list.
"""

from __future__ import annotations

import threading
import time

import fakeredis
import pytest

from consumer.committer import Committer
from consumer.settings import Settings
from consumer.stream import RedisStream
from consumer.testing import MemoryStore
from consumer.worker import EXIT_GRACE_EXPIRED, EXIT_OK, Worker
from tests.unit.test_worker_loop import by_id, fill, publish_fills


@pytest.fixture
def redis_client():
    return fakeredis.FakeRedis(decode_responses=True)


@pytest.fixture
def settings():
    return Settings(
        pipeline_commits=True,
        database_url="postgresql://unused/db",
        redis_url="redis://unused",
        consumer_name="unit",
        batch_max_entries=10,
        batch_min_entries=10,
        block_ms=10,
        claim_interval_s=0.05,
        claim_idle_s=0.05,
        retry_initial_ms=1,
        retry_max_ms=5,
        shutdown_grace_s=0.5,
    )


class Recorder:
    """What happened, in order, across the worker's two threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, int, str]] = []  # (what, batch number, thread)
        self.keys: dict[tuple[str, int], list[str]] = {}

    def add(self, what: str, n: int, keys: list[str]) -> None:
        with self.lock:
            self.events.append((what, n, threading.current_thread().name))
            self.keys[(what, n)] = keys

    def count(self, what: str) -> int:
        with self.lock:
            return sum(1 for e in self.events if e[0] == what)


class WatchedStream(RedisStream):
    recorder: Recorder

    def dead_letter_and_ack(self, dead, ack):
        super().dead_letter_and_ack(dead, ack)
        keys = [e.key.entry_id for e, _ in dead] + [k.entry_id for k in ack]
        self.recorder.add("ack", self.recorder.count("ack"), by_id(keys))


class WatchedWorker(Worker):
    recorder: Recorder

    def _prepare(self, batch):
        self.recorder.add("parse", self.recorder.count("parse"), [])
        return super()._prepare(batch)


def make(settings, redis_client, store, recorder=None):
    recorder = recorder or Recorder()
    stream = WatchedStream(
        "redis://unused",
        streams=settings.streams(),
        group=settings.group,
        consumer=settings.consumer_name,
        dlq_stream=settings.dlq_stream,
        client=redis_client,
    )
    stream.recorder = recorder
    worker = WatchedWorker(settings, store, stream)
    worker.recorder = recorder
    original = store.write_batch

    def write(items):
        recorder.add("write", recorder.count("write"), by_id([i.key.entry_id for i in items]))
        time.sleep(0.01)  # a commit that takes a while: the next batch is read meanwhile
        return original(items)

    store.write_batch = write
    return worker, recorder


def committer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("committer-")]


def pending(redis_client, settings) -> int:
    return sum(
        redis_client.xpending(name, settings.group)["pending"]
        for name in settings.streams()
        if redis_client.exists(name)
    )


def test_each_batch_is_acked_after_its_commit_in_read_order_on_the_committer(
    settings, redis_client
):
    publish_fills(redis_client, settings, 95)
    store = MemoryStore()
    worker, rec = make(settings, redis_client, store)
    assert worker.run(until_idle=True) == EXIT_OK
    writes = [e for e in rec.events if e[0] == "write"]
    acks = [e for e in rec.events if e[0] == "ack"]
    assert len(writes) == len(acks) == len(store.batches) >= 10
    # Writes and acks alternate: write N, ack N, write N+1 ... (one committer, in order).
    commits = [e for e in rec.events if e[0] in ("write", "ack")]
    assert [e[0] for e in commits] == ["write", "ack"] * len(writes)
    for n in range(len(writes)):
        assert rec.keys[("ack", n)] == rec.keys[("write", n)]  # acks exactly what it committed
    assert {e[2] for e in commits} == {"committer-unit"}
    assert {e[2] for e in rec.events if e[0] == "parse"} == {threading.main_thread().name}
    # Read order: the concatenated batches are the stream, in order, each entry once.
    written = [i for n in range(len(writes)) for i in rec.keys[("write", n)]]
    assert written == by_id(written)
    assert len(set(written)) == 95
    assert pending(redis_client, settings) == 0
    assert committer_threads() == []  # joined


def test_at_most_one_batch_in_flight_and_one_parsed_ahead_and_they_overlap(settings, redis_client):
    publish_fills(redis_client, settings, 120)
    worker, rec = make(settings, redis_client, MemoryStore())
    worker.run(until_idle=True)
    acked = 0
    parsed_while_in_flight = 0
    for what, n, _ in rec.events:
        if what == "parse":
            # Batch n is parsed only once batch n - 2 is acknowledged: n - 1 may be in flight.
            assert n - acked <= 1, (n, acked)
            parsed_while_in_flight += n - acked == 1
        elif what == "ack":
            acked += 1
    assert parsed_while_in_flight >= 3  # the stages really overlapped


def test_sequential_mode_runs_no_committer_and_never_overlaps(settings, redis_client):
    publish_fills(redis_client, settings, 40)
    settings = settings.model_copy(update={"pipeline_commits": False})
    worker, rec = make(settings, redis_client, MemoryStore())
    assert worker.run(until_idle=True) == EXIT_OK
    kinds = [e[0] for e in rec.events]
    assert kinds == ["parse", "write", "ack"] * (len(kinds) // 3)
    assert {e[2] for e in rec.events} == {threading.main_thread().name}


def test_an_error_in_the_committer_is_raised_by_run_and_nothing_of_it_is_acked(
    settings, redis_client
):
    publish_fills(redis_client, settings, 60)
    store = MemoryStore()
    worker, rec = make(settings, redis_client, store)
    inner = store.write_batch

    def broken(items):
        if rec.count("write") == 2:
            raise RuntimeError("boom in the committer")
        return inner(items)

    store.write_batch = broken
    with pytest.raises(RuntimeError, match="boom in the committer"):
        worker.run(until_idle=True)
    assert committer_threads() == []
    assert rec.count("ack") == 2  # batches 0 and 1; batch 2 failed, later ones never committed
    assert len(store.batches) == 2
    assert len(store.state.fills) == sum(store.batches)
    assert pending(redis_client, settings) >= 10  # batch 2 (and any read after) stays pending


def test_stop_finishes_the_batch_in_flight_and_what_was_parsed(settings, redis_client):
    publish_fills(redis_client, settings, 60)
    store = MemoryStore()
    worker, rec = make(settings, redis_client, store)
    inner = store.write_batch

    def stop_in_second(items):
        if rec.count("write") == 2:
            worker.stop()
        return inner(items)

    store.write_batch = stop_in_second
    assert worker.run() == EXIT_OK
    assert committer_threads() == []
    # Everything read was committed and acknowledged: nothing left pending, nothing lost.
    assert pending(redis_client, settings) == 0
    assert rec.count("ack") == len(store.batches) >= 2
    assert len(store.state.fills) == sum(store.batches)


def test_a_commit_stuck_in_an_outage_past_the_grace_exits_grace_expired(settings, redis_client):
    publish_fills(redis_client, settings, 40)
    store = MemoryStore()
    worker, rec = make(settings, redis_client, store)
    inner = store.write_batch

    def outage_from_the_second(items):
        if rec.count("write") == 2:  # batch 2 (and every retry of it) finds PostgreSQL down
            store.down = True
            threading.Timer(0.05, worker.stop).start()
        return inner(items)

    store.write_batch = outage_from_the_second
    assert worker.run() == EXIT_GRACE_EXPIRED
    assert committer_threads() == []
    assert rec.count("ack") == 2  # batch 2 was never committed, so never acknowledged
    assert len(store.batches) == 2
    assert len(store.state.fills) == sum(store.batches)
    assert pending(redis_client, settings) >= 10  # batch 2 and what was parsed after it


def test_the_batch_in_flight_never_triggers_a_drain_of_our_pending_list(settings, redis_client):
    publish_fills(redis_client, settings, 100)
    store = MemoryStore()
    worker, _rec = make(settings, redis_client, store)
    drains = []
    original = worker.reader.drain_own_pending
    worker.reader.drain_own_pending = lambda: (drains.append(1), original())[1]
    seen = []
    inner = store.write_batch
    store.write_batch = lambda items: (seen.extend(i.key.entry_id for i in items), inner(items))[1]
    gate = []
    pending_owners = worker._pending_owners
    worker._pending_owners = lambda: (gate.append(worker._in_flight), pending_owners())[1]
    worker.run(until_idle=True)
    assert drains == []
    assert max(gate) > 0  # the gate did look while a batch was in flight
    assert len(seen) == len(set(seen)) == 100  # nothing re-read, nothing applied twice


def test_our_own_pending_entry_beyond_the_batch_in_flight_is_still_drained(settings, redis_client):
    """A read whose reply was lost leaves an entry pending under our name, not in hand: the
    gate sees it beside the batch in flight, waits for the committer and drains it in order."""
    ids = [redis_client.xadd(settings.fills_stream, fill(n)) for n in range(50)]
    store = MemoryStore()
    worker, rec = make(settings, redis_client, store)
    drains = []
    original = worker.reader.drain_own_pending
    worker.reader.drain_own_pending = lambda: (drains.append(1), original())[1]
    seen = []
    inner = store.write_batch

    def lose_a_reply(items):
        if rec.count("write") == 2:  # an XREADGROUP '>' by us whose reply never arrived
            redis_client.xreadgroup(
                settings.group, settings.consumer_name, {settings.fills_stream: ">"}, count=1
            )
        seen.extend(i.key.entry_id for i in items)
        return inner(items)

    store.write_batch = lose_a_reply
    worker.run(until_idle=True)
    assert drains  # the lost entry made the gate drain
    assert sorted(seen) == sorted(ids)  # each once: the batch in flight was not re-read
    assert len(store.state.fills) == 50
    assert pending(redis_client, settings) == 0


def test_committer_runs_jobs_in_order_one_at_a_time_and_reraises():
    done: list[int] = []
    running = []

    def job(n: int) -> None:
        running.append(n)
        assert len(running) == 1
        time.sleep(0.005)
        if n == 3:
            running.pop()
            raise ValueError("job 3")
        done.append(n)
        running.pop()

    committer: Committer[int] = Committer(job, name="committer-test")
    for n in range(3):
        committer.submit(n)
    committer.wait()
    assert done == [0, 1, 2]
    committer.submit(3)
    with pytest.raises(ValueError, match="job 3"):
        committer.submit(4)  # the error of 3 surfaces at the next hand-off; 4 not taken
    committer.submit(5)
    assert committer.close() is None
    assert done == [0, 1, 2, 5]
    assert not committer.alive
