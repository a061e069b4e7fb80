"""The stream-order merge (``consumer/merge.py``) on its own: fakeredis behind a real
``RedisStream``, batches taken from ``OrderedReader`` and acknowledged as the worker would.

The worker's tests (tests/unit/test_worker_loop.py, tests/integration) run the same reader
through the whole loop; these pin its own promises: stream order across streams, the stream
that is ahead held back, the held-back bound on a busy/sparse backlog, reads past the wait,
empty streams, and restarts (our own pending entries first).
"""

from __future__ import annotations

import random
from typing import Any

import fakeredis
import pytest

from consumer.errors import RedisUnavailableError
from consumer.merge import OrderedReader, entry_order, merge_point
from consumer.records import EntryKey, RawEntry
from consumer.stream import RedisStream

GROUP, ME = "g", "me"


class RecordingStream(RedisStream):
    """A ``RedisStream`` that records each read (its arguments and how many entries it
    returned) and can lose the reply of one read: Redis delivered, the client raised."""

    def __init__(self, client: Any, streams: list[str]) -> None:
        super().__init__(
            "redis://unused", streams=streams, group=GROUP, consumer=ME, dlq_stream="dlq",
            client=client,
        )  # fmt: skip
        self.reads: list[tuple[dict[str, Any], int]] = []
        self.lose_next_reply = False

    def read(self, **options: Any) -> list[RawEntry]:
        entries = super().read(**options)
        self.reads.append((options, len(entries)))
        if self.lose_next_reply:
            self.lose_next_reply = False
            raise RedisUnavailableError("connection lost after the read was sent")
        return entries


@pytest.fixture
def client():
    return fakeredis.FakeRedis(decode_responses=True)


def add(client, stream: str, *ids: str) -> list[str]:
    return [client.xadd(stream, {"n": entry_id}, id=entry_id) for entry_id in ids]


def make(client, streams=("o", "f"), *, limit=4, max_wait_ms=0, block_ms=5):
    stream = RecordingStream(client, list(streams))
    stream.ensure_groups()
    return stream, OrderedReader(stream, limit=limit, max_wait_ms=max_wait_ms, block_ms=block_ms)


def batches(stream: RedisStream, reader: OrderedReader, most: int = 1000) -> list[list[str]]:
    """Every batch until the reader has nothing more (each acknowledged, as the worker does);
    an empty batch while draining is not the end (new entries are read next)."""
    out: list[list[str]] = []
    for _ in range(most):
        draining = reader.draining
        batch = reader.next_batch()
        if not batch and not draining:
            return out
        if batch:
            stream.ack([entry.key for entry in batch])
            out.append([entry.key.entry_id for entry in batch])
    raise AssertionError("the reader never ran out")


def by_id(ids):
    return sorted(ids, key=lambda i: tuple(int(p) for p in i.split("-")))


def flat(groups):
    return [entry_id for group in groups for entry_id in group]


def test_merge_point_is_the_smallest_last_id_of_streams_with_more():
    order = entry_order(["a", "b", "c"])
    assert merge_point({}, order) is None
    assert merge_point({"a": EntryKey("a", "9-0"), "b": EntryKey("b", "5-2")}, order) == (5, 2, 1)


def test_entry_order_is_the_id_then_the_configured_stream_order():
    order = entry_order(["o", "f"])
    entries = [RawEntry(EntryKey(s, i), {}) for s, i in [("f", "2-0"), ("o", "2-0"), ("f", "1-5")]]
    assert [(e.key.stream, e.key.entry_id) for e in sorted(entries, key=order)] == [
        ("f", "1-5"), ("o", "2-0"), ("f", "2-0")]  # fmt: skip
    assert order(RawEntry(EntryKey("x", "2-0"), {})) == (2, 0, 2)  # unknown streams last


def test_batches_interleave_the_streams_by_entry_id(client):
    ids = add(client, "o", *(f"{n}-0" for n in range(1, 13)))
    ids += add(client, "f", *(f"{n}-1" for n in range(1, 13)))
    stream, reader = make(client)
    got = batches(stream, reader)
    assert flat(got) == by_id(ids)
    assert all(len(batch) <= 4 for batch in got)


def test_a_stream_that_is_ahead_is_held_back_until_the_other_catches_up(client):
    dense = add(client, "o", *(f"{n}-0" for n in range(1, 21)))
    sparse = add(client, "f", "5-1", "15-1")
    stream, reader = make(client, limit=8)
    reader.next_batch()  # the drain of an empty pending list
    first = reader.next_batch()
    # COUNT cut "o" at 4-0 (then 5-0, read on) while "f" read up to 15-1: "f" is ahead, its
    # entries held back (still pending).
    assert [e.key.entry_id for e in first] == ["1-0", "2-0", "3-0", "4-0", "5-0"]
    assert reader.in_hand == 2
    assert client.xpending("f", GROUP)["pending"] == 2
    stream.ack([e.key for e in first])
    rest = batches(stream, reader)
    assert [e.key.entry_id for e in first] + flat(rest) == by_id(dense + sparse)


def test_a_stream_that_read_short_holds_nothing_back(client):
    """A stream whose read came back below its share has been read to its end: the other's
    entries are complete in stream order and handed out, no waiting for entries to come."""
    add(client, "o", "1-0", "2-0")
    add(client, "f", "5-1", "15-1")
    _, reader = make(client, limit=8)
    reader.next_batch()  # the drain of an empty pending list
    assert [e.key.entry_id for e in reader.next_batch()] == ["1-0", "2-0", "5-1", "15-1"]
    assert reader.in_hand == 0


def backlog(client) -> list[str]:
    """Three orders for each fill (ids 40 ms apart), 1,200 entries; read with an empty third
    stream, as the worker reads its marks."""
    ids = []
    for n in range(300):
        ids += add(client, "o", *(f"{40 * n + k + 1}-0" for k in range(3)))
        ids += add(client, "f", f"{40 * n + 5}-0")
    return ids


def test_entries_held_back_stay_within_one_batch_on_a_busy_and_sparse_backlog(client):
    """The held-back bound: a read cuts the busy stream at an earlier id than the sparse one,
    so part of every read waits in hand. It never exceeds one batch (it grew by ~27 % of each
    read before: the merge point was rebuilt from the entries in hand only), the batches stay
    at least half full, and everything comes out in stream order."""
    ids = backlog(client)
    limit = 40
    stream, reader = make(client, streams=("o", "f", "m"), limit=limit)
    held: list[int] = []
    out: list[list[str]] = []
    while True:
        draining = reader.draining
        batch = reader.next_batch()
        if not batch and not draining:
            break
        stream.ack([entry.key for entry in batch])
        out += [[entry.key.entry_id for entry in batch]] if batch else []
        held.append(reader.in_hand)
    assert flat(out) == by_id(ids)
    assert max(held) <= limit, held
    assert len(out) <= 1200 // (limit // 2) + 2


def test_past_the_wait_a_stream_at_the_merge_point_is_read_on_while_an_eighth_is_free(client):
    backlog(client)
    limit = 40
    stream, reader = make(client, streams=("o", "f", "m"), limit=limit, max_wait_ms=0)
    reader.next_batch()  # the drain of an empty pending list
    read_on = 0
    while True:
        stream.reads.clear()
        batch = reader.next_batch()
        if not batch:
            break
        stream.ack([entry.key for entry in batch])
        fresh = 0
        for n, (options, got) in enumerate(stream.reads):
            if n:  # a read after the first: never blocking, only while an eighth is free
                read_on += 1
                assert options["block_ms"] is None
                assert limit - fresh >= limit // 8, (fresh, stream.reads)
            fresh += got
    assert read_on >= 60  # on this backlog every batch reads on (about three more reads)


def test_the_first_read_blocks_only_with_nothing_in_hand_and_no_drain(client):
    stream, reader = make(client, block_ms=7)
    assert reader.next_batch() == []  # the drain of an empty pending list: never blocks
    assert [options["block_ms"] for options, _ in stream.reads] == [None]
    assert not reader.draining
    stream.reads.clear()
    assert reader.next_batch() == []  # empty streams: one read, blocking block_ms
    assert [(options["block_ms"], got) for options, got in stream.reads] == [(7, 0)]
    add(client, "o", *(f"{n}-0" for n in range(1, 9)))
    add(client, "f", "9-1")
    reader.next_batch()
    assert reader.in_hand  # "f" is ahead: held back
    stream.reads.clear()
    reader.next_batch()
    assert stream.reads[0][0]["block_ms"] is None  # entries in hand: no waiting for more


def test_empty_streams_give_empty_batches_and_end_the_drain(client):
    _, reader = make(client, streams=("o", "f", "m"))
    assert reader.draining
    assert reader.next_batch() == []
    assert not reader.draining
    assert reader.in_hand == 0
    assert reader.next_batch() == []
    add(client, "m", "3-0")
    assert [e.key.entry_id for e in reader.next_batch()] == ["3-0"]


@pytest.mark.parametrize("read_before_crash", [0, 1, 3])
def test_a_restart_hands_out_its_pending_entries_first_merged_with_older_new_ones(
    client, read_before_crash
):
    """A previous life read orders far ahead of fills and died: its pending orders come out
    again (delivered twice), in stream order with the older fills it never read."""
    ids = []
    for n in range(8):
        ids += add(client, "o", f"{10 * n + 10}-0")
        ids += add(client, "f", f"{10 * n + 15}-0")
    stream, reader = make(client)
    client.xreadgroup(GROUP, ME, {"o": ">"}, count=6)
    if read_before_crash:
        client.xreadgroup(GROUP, ME, {"f": ">"}, count=read_before_crash)
    seen: list[RawEntry] = []
    while True:
        draining = reader.draining
        batch = reader.next_batch()
        if not batch and not draining:
            break
        stream.ack([entry.key for entry in batch])
        seen += batch
    assert [e.key.entry_id for e in seen] == by_id(ids)
    redelivered = {e.key.entry_id for e in seen if e.deliveries > 1}
    assert redelivered == set(ids[0:12:2]) | set(ids[1 : 2 * read_before_crash : 2])


def test_with_another_consumers_entries_pending_our_whole_pending_list_is_drained_first(client):
    """Reading new entries after our drained stream would pass the other consumer's pending
    ones (their stream's order): nothing new is read until our pending list is exhausted (the
    worker's order gate applies after that)."""
    add(client, "o", "1-0", "2-0", "3-0", "4-0")
    add(client, "f", "1-1", "2-1", "5-1")
    stream, reader = make(client, limit=2)
    client.xreadgroup(GROUP, "other", {"f": ">"}, count=2)
    client.xreadgroup(GROUP, ME, {"o": ">"}, count=3)
    drained: list[str] = []
    while reader.draining:
        drained += [entry.key.entry_id for entry in reader.next_batch()]
    assert drained == ["1-0", "2-0", "3-0"]
    assert all(options["pending"] and not options.get("new") for options, _ in stream.reads)
    assert client.xpending("f", GROUP)["consumers"] == [{"name": "other", "pending": 2}]


def test_a_failed_read_drops_what_is_in_hand_and_drains_our_pending_list_again(client):
    add(client, "o", *(f"{n}-0" for n in range(1, 9)))
    add(client, "f", "9-1")
    stream, reader = make(client)
    reader.next_batch()  # the drain of an empty pending list
    first = reader.next_batch()
    assert reader.in_hand
    stream.ack([entry.key for entry in first])
    stream.lose_next_reply = True  # Redis delivers the next read, its reply is lost
    assert reader.next_batch() == []
    assert reader.draining
    assert reader.in_hand == 0
    rest = batches(stream, reader)
    assert [e.key.entry_id for e in first] + flat(rest) == by_id(
        [f"{n}-0" for n in range(1, 9)] + ["9-1"]
    )


def test_drain_own_pending_drops_what_is_in_hand(client):
    add(client, "o", *(f"{n}-0" for n in range(1, 9)))
    add(client, "f", "9-1")
    stream, reader = make(client)
    reader.next_batch()
    reader.next_batch()  # not acknowledged: still pending
    assert reader.in_hand
    reader.drain_own_pending()
    assert reader.draining
    assert reader.in_hand == 0
    assert flat(batches(stream, reader)) == [*(f"{n}-0" for n in range(1, 9)), "9-1"]


def test_a_limit_that_shrinks_keeps_batches_full_while_the_backlog_lasts(client):
    """The worker's sizing (batch_size.py) doubles the limit and halves it back. With more in
    hand than the new limit after both streams were read to their end, batches stay full: a
    stream with entries in hand bounds the merge point at its last one (at its first, the two
    streams handed out one to six entries at a time, in turn, for the rest of the backlog)."""
    rnd = random.Random(3)  # noqa: S311 - a seeded test layout, not crypto
    n = rnd.randint(200, 1500)
    share = rnd.random()
    for i in range(1, n + 1):
        add(client, "o" if rnd.random() < share else "f", f"{i}-0")
    limits = [50, 100, 200, 400, 200, 100, 50, 25]
    stream, reader = make(client, limit=limits[0])
    sizes: list[int] = []
    seen: list[str] = []
    for _ in range(1000):
        draining = reader.draining
        batch = reader.next_batch()
        if not batch:
            if draining:
                continue  # our (empty) pending list first
            break
        stream.ack([entry.key for entry in batch])
        sizes.append(len(batch))
        seen.extend(entry.key.entry_id for entry in batch)
        reader.limit = limits[min(len(sizes), len(limits) - 1)]
    assert seen == by_id(seen)
    assert len(seen) == n
    assert len(sizes) <= 8, sizes
