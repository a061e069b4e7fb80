"""How data lost in Redis is read from the stream's and the group's counters (``losses.py``).

The rules on hand-made positions (the numbers real Redis 7 gives: entries-read never counts a
trimmed entry, lag is nil past an XDEL), then ``LossWatch`` inside the worker loop on fakeredis
with ``Metrics``; the same against real Redis 7 and PostgreSQL is
tests/integration/test_stream_data_loss.py.
"""

from __future__ import annotations

import fakeredis
import pytest
from structlog import get_logger
from structlog.testing import capture_logs

from consumer.errors import DatabaseUnavailableError
from consumer.losses import Committed, LossWatch, assess, never_read
from consumer.metrics import Metrics
from consumer.records import StreamPosition
from consumer.settings import Settings
from consumer.status import describe_gap
from consumer.stream import RedisStream
from consumer.testing import MemoryStore
from consumer.worker import EXIT_OK, Worker


def position(**changes) -> StreamPosition:
    """A group delivered 3-0 of a stream of entries 1-0 .. 10-0 (nothing lost)."""
    base = {"stream": "s", "exists": True, "length": 10, "entries_added": 10, "first_id": "1-0",
            "last_id": "10-0", "group": True, "last_delivered_id": "3-0", "entries_read": 3,
            "lag": 7}  # fmt: skip
    return StreamPosition(**{**base, **changes})


def test_never_read_counts_what_was_trimmed_before_the_group_read_it():
    assert never_read(position()) is None  # unread entries still mixed with read ones
    # 4-0 .. 9-0 trimmed: the stream holds 10-0 only (all unread), lag still counts 7.
    assert never_read(position(length=1, first_id="10-0")) == 6
    # Only read entries trimmed (the stream starts right after 3-0): nothing lost.
    assert never_read(position(length=7, first_id="4-0")) == 0
    # Delivered the last entry: Redis's lag IS the count, for good.
    assert never_read(position(last_delivered_id="10-0", entries_read=4, lag=6)) == 6
    assert never_read(position(length=0, first_id=None, lag=7)) == 7  # all trimmed
    assert never_read(position(lag=None, length=1, first_id="10-0")) is None  # Redis 6.2
    assert never_read(position(group=False)) is None


@pytest.mark.parametrize(
    ("changes", "committed", "cause", "lost"),
    [
        ({}, None, None, None),
        ({"length": 1, "first_id": "10-0"}, None, "trimmed", 6),
        ({"max_deleted_id": "5-0", "lag": None}, None, "deleted", None),
        ({"max_deleted_id": "2-0"}, None, None, None),  # deleted after it was read
        ({"exists": False, "group": False}, Committed("3-0", 3), "stream_vanished", None),
        # Recreated empty (MKSTREAM): its ids went back below the committed one.
        ({"length": 0, "entries_added": 0, "first_id": None, "last_id": "0-0",
          "last_delivered_id": "0-0", "lag": 0}, Committed("3-0", 3), "stream_vanished", None),
        # Refilled by a publisher, ids past the committed one: entries-added went back.
        ({"length": 2, "entries_added": 2, "first_id": "20-0", "last_id": "21-0",
          "group": False}, Committed("3-0", 3), "stream_vanished", None),
        # Redis 6.2 (no entries-added): the stream starts after the committed id.
        ({"length": 2, "entries_added": None, "first_id": "20-0", "last_id": "21-0",
          "group": False, "lag": None}, Committed("3-0", 3), "group_vanished", None),
        # The group went away, the stream kept the committed entry: nothing lost.
        ({"group": False}, Committed("3-0", 3), None, None),
        ({"last_delivered_id": "0-0", "lag": 10}, Committed("3-0", 3), None, None),
        ({"group": False}, None, None, None),  # a group never created
    ],
)  # fmt: skip
def test_assess_reads_each_kind_of_loss_from_one_look(changes, committed, cause, lost):
    gap = assess(position(**changes), "g", committed)
    assert (gap and gap.cause, gap and gap.lost) == (cause, lost)
    if gap is not None:
        assert describe_gap(gap.as_dict()).startswith("DATA LOST: ")


# -- in the worker loop, on fakeredis -------------------------------------------------------------


@pytest.fixture
def client():
    return fakeredis.FakeRedis()


@pytest.fixture
def settings():
    return Settings(
        database_url="postgresql://unused/db", redis_url="redis://unused", consumer_name="unit",
        batch_max_entries=10, batch_max_wait_ms=5, block_ms=10, retry_initial_ms=1,
        retry_max_ms=5, metrics_refresh_s=0.01,
    )  # fmt: skip


FILL = {"order_id": "o-1", "symbol": "BTCUSDT", "side": "BUY", "quantity": "1", "price": "100"}


def run(settings, client, committed=None):
    """A worker run until idle with ``committed`` offsets; its loss events and metrics."""
    metrics = Metrics()
    worker = Worker(settings, MemoryStore(), RedisStream.from_settings(settings, client=client),
                    metrics)  # fmt: skip
    worker.losses.committed = lambda: committed or {}
    with capture_logs() as logs:
        assert worker.run(until_idle=True) == EXIT_OK
    return [e for e in logs if e["event"] == "stream_data_lost"], metrics


def lost_total(metrics: Metrics, stream: str) -> float | None:
    return metrics.registry.get_sample_value(
        "paper_consumer_stream_entries_lost_total", {"stream": stream}
    )


def test_trimmed_entries_are_reported_and_counted_once(settings, client):
    name = settings.fills_stream
    client.xadd(name, {**FILL, "fill_id": "a"})
    assert run(settings, client)[0] == []
    for n in range(6):
        client.xadd(name, {**FILL, "fill_id": f"b{n}"})
    client.xtrim(name, maxlen=2, approximate=False)

    events, metrics = run(settings, client)

    (event,) = events
    assert (event["stream"], event["cause"], event["lost"]) == (name, "trimmed", 4)
    assert event["log_level"] == "error"
    assert lost_total(metrics, name) == 4
    assert (
        metrics.registry.get_sample_value("paper_consumer_stream_gaps_total", {"stream": name}) == 1
    )


def test_a_vanished_stream_is_judged_against_the_committed_offsets(settings, client):
    name = settings.fills_stream
    first = client.xadd(name, {**FILL, "fill_id": "a"}).decode()
    run(settings, client)
    client.delete(name)

    events, metrics = run(settings, client, {name: Committed(first, 1)})

    (event,) = events
    assert (event["cause"], event["committed_id"], event["lost"]) == (
        "stream_vanished",
        first,
        None,
    )
    assert lost_total(metrics, name) == 0  # counted as a gap, its size unknown
    assert run(settings, client, {name: Committed(first, 1)})[0] == []  # a gap once


def test_an_unreachable_database_defers_the_judgement_without_a_word(settings, client):
    stream = RedisStream.from_settings(settings, client=client)
    name = settings.fills_stream
    first = client.xadd(name, {**FILL, "fill_id": "a"}).decode()
    client.delete(name)  # gone before this worker starts: PostgreSQL must say what was read
    answers: list[dict[str, Committed] | None] = [None]

    def committed() -> dict[str, Committed]:
        if answers[-1] is None:
            raise DatabaseUnavailableError("down")
        return answers[-1]

    watch = LossWatch(stream, committed=committed, period_s=0, observer=Metrics(), log=get_logger())
    with capture_logs() as logs:
        stream.ensure_groups()
        watch.check()
        assert logs == []  # the outage is the loop's to log; the judgement waits
        answers.append({name: Committed(first, 1)})
        watch.check()
    (event,) = [e for e in logs if e["event"] == "stream_data_lost"]
    assert event["cause"] == "stream_vanished"
