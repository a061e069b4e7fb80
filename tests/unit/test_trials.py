"""Poison by evidence (``consumer/trials.py``): the delivery count makes an entry a suspect,
only attempts that never finished make it poison.

The regression: ``bench/chaos.py`` dead-lettered 1,471 valid entries at 6 deliveries — read
ahead by five short-lived workers, never attempted by any of them.
"""

from __future__ import annotations

import fakeredis
import pytest

from consumer import trials
from consumer.records import EntryKey, RawEntry
from consumer.settings import Settings
from consumer.testing import MemoryStore
from tests.unit.test_worker_loop import make_worker, publish_fills

LIMIT = 2


def entry(n: int, deliveries: int = 1) -> RawEntry:
    return RawEntry(EntryKey("fills", f"{n}-0"), {"n": str(n)}, deliveries)


def shape(segments: list[trials.Segment]) -> list[tuple[list[int], list[int], bool]]:
    return [
        (
            [int(e.key.entry_id.split("-")[0]) for e in s.entries],
            [int(k.entry_id.split("-")[0]) for k in s.suspects],
            s.poison is not None,
        )
        for s in segments
    ]


def test_a_batch_without_suspects_is_one_segment_recording_nothing():
    batch = [entry(n, LIMIT) for n in range(4)]
    assert trials.suspects(batch, LIMIT) == []
    assert shape(trials.plan(batch, LIMIT, {})) == [([0, 1, 2, 3], [], False)]


def test_a_suspect_never_attempted_is_tried_with_the_others_and_recorded():
    batch = [entry(0), entry(1, LIMIT + 1), entry(2), entry(3, LIMIT + 4)]
    assert trials.suspects(batch, LIMIT) == [batch[1].key, batch[3].key]
    assert shape(trials.plan(batch, LIMIT, {})) == [([0, 1, 2, 3], [1, 3], False)]


def test_after_an_unfinished_attempt_a_suspect_is_tried_alone_in_stream_order():
    batch = [entry(0), entry(1, LIMIT + 1), entry(2, LIMIT + 1), entry(3)]
    unfinished = {batch[1].key: 1, batch[2].key: 0}
    assert shape(trials.plan(batch, LIMIT, unfinished)) == [
        ([0], [], False),
        ([1], [1], False),
        ([2, 3], [2], False),
    ]


def test_poison_only_after_the_alone_attempts_did_not_finish():
    suspect = entry(1, LIMIT + 9)
    for alone in range(trials.ALONE_ATTEMPTS):
        (segment,) = trials.plan([suspect], LIMIT, {suspect.key: 1 + alone})
        assert segment.alone
        assert segment.poison is None
    (segment,) = trials.plan([suspect], LIMIT, {suspect.key: 1 + trials.ALONE_ATTEMPTS})
    assert segment.poison is not None
    assert "poison" in segment.poison
    assert f"delivered {LIMIT + 9} times" in segment.poison


@pytest.fixture
def redis_client():
    return fakeredis.FakeRedis(decode_responses=True)


@pytest.fixture
def settings():
    return Settings(
        database_url="postgresql://unused/db",
        redis_url="redis://unused",
        consumer_name="unit",
        batch_max_entries=10,
        batch_min_entries=10,
        block_ms=10,
        max_deliveries=LIMIT,
        retry_initial_ms=1,
        retry_max_ms=5,
        shutdown_grace_s=0.3,
    )


@pytest.fixture(params=[True, False], ids=["pipelined", "sequential"])
def pipelined(request):
    return request.param


class WorkerDied(RuntimeError):
    """What a crash of the process looks like to the test: ``run`` does not return."""


def dies_on(store: MemoryStore, fill_id: str | None) -> MemoryStore:
    original = store.write_batch

    def write(items):
        if any(getattr(i.event, "fill_id", None) == fill_id for i in items):
            raise WorkerDied(fill_id)
        return original(items)

    store.write_batch = write
    return store


def lives_until_idle(settings, redis_client, store, most: int = 30) -> int:
    """Run a worker, and a new one each time one dies (a restart), until one drains the
    streams; return how many lives that took."""
    for life in range(1, most + 1):
        try:
            make_worker(settings, redis_client, store).run(until_idle=True)
        except WorkerDied:
            continue
        return life
    raise AssertionError(f"still crashing after {most} lives")


def dead_letters(redis_client, settings):
    return [fields for _, fields in redis_client.xrange(settings.dlq_stream)]


def test_a_crash_loop_sets_aside_the_entry_that_stops_the_worker_and_only_it(
    settings, redis_client, pipelined
):
    settings = settings.model_copy(update={"pipeline_commits": pipelined})
    publish_fills(redis_client, settings, 10)
    store = dies_on(MemoryStore(), "f-3")

    lives = lives_until_idle(settings, redis_client, store)

    (letter,) = dead_letters(redis_client, settings)
    assert letter["fill_id"] == "f-3"
    assert "poison" in letter["error"]
    assert sorted(store.state.fills) == sorted(f"f-{n}" for n in range(10) if n != 3)
    # LIMIT crashes reach the limit, one more with the others, then ALONE_ATTEMPTS alone;
    # the next life sets it aside and finishes.
    assert lives == LIMIT + 1 + trials.ALONE_ATTEMPTS + 1
    assert redis_client.hlen(make_worker(settings, redis_client, store).stream.trials_key) == 0
    assert redis_client.xpending(settings.fills_stream, settings.group)["pending"] == 0


def test_entries_delivered_past_the_limit_but_never_attempted_are_committed(settings, redis_client):
    """Read again and again (read ahead, re-read after restarts) but never attempted: the
    chaos regression. They are committed, nothing is dead-lettered."""
    publish_fills(redis_client, settings, 10)
    redis_client.xgroup_create(settings.fills_stream, settings.group, id="0")
    for n in range(LIMIT + 3):
        redis_client.xreadgroup(
            settings.group, settings.consumer_name, {settings.fills_stream: "0" if n else ">"}
        )
    store = MemoryStore()

    assert lives_until_idle(settings, redis_client, store) == 1

    assert dead_letters(redis_client, settings) == []
    assert sorted(store.state.fills) == sorted(f"f-{n}" for n in range(10))
    assert redis_client.hlen(make_worker(settings, redis_client, store).stream.trials_key) == 0


def test_an_attempt_that_failed_with_an_error_dead_letters_it_at_once_as_always(
    settings, redis_client
):
    """A suspect refused by the database is isolated by the split, with that reason."""
    publish_fills(redis_client, settings, 4)
    redis_client.xgroup_create(settings.fills_stream, settings.group, id="0")
    for n in range(LIMIT + 1):
        redis_client.xreadgroup(
            settings.group, settings.consumer_name, {settings.fills_stream: "0" if n else ">"}
        )
    store = MemoryStore(reject=lambda item: getattr(item.event, "fill_id", None) == "f-2")

    assert lives_until_idle(settings, redis_client, store) == 1

    (letter,) = dead_letters(redis_client, settings)
    assert letter["fill_id"] == "f-2"
    assert "refused" in letter["error"]
    assert sorted(store.state.fills) == ["f-0", "f-1", "f-3"]


def test_recording_an_attempt_twice_counts_it_once_and_the_hash_expires(settings, redis_client):
    """A retry after a lost reply must not count the attempt twice (HSET of the count)."""
    stream = make_worker(settings, redis_client, MemoryStore()).stream
    key = EntryKey(settings.fills_stream, "5-0")
    assert stream.unfinished_trials([key]) == {key: 0}
    stream.begin_trial({key: 1})
    stream.begin_trial({key: 1})
    assert stream.unfinished_trials([key]) == {key: 1}
    assert 0 < redis_client.ttl(stream.trials_key) <= 7 * 24 * 3600
    stream.end_trial([key])
    assert stream.unfinished_trials([key]) == {key: 0}
