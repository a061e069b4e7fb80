"""Data lost in Redis before the group read it is never lost without a word (issue 22 #6).

Entries trimmed (XTRIM/MAXLEN) or deleted (XDEL) before the consumer group read them, and a
stream that vanished (deleted, as FLUSHALL or a restart without persistence would) while
PostgreSQL holds committed offsets for it: the worker logs one ``stream_data_lost`` error per
gap with where it is and how many entries (when Redis can count them), counts it in /metrics,
and ``status`` shows it. Real Redis and PostgreSQL: the counters read are Redis's own. Redis
6.2 (the embedded server) has no such counters: trimmed and deleted entries cannot be seen
there, and nothing is reported falsely; a vanished stream still is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from prometheus_client import generate_latest
from structlog.testing import capture_logs

from consumer import status
from consumer.db import PostgresStore
from consumer.metrics import Metrics
from consumer.settings import Settings
from consumer.stream import RedisStream
from consumer.worker import Worker
from tests.support.pipeline import publish, rows

FILL = {"order_id": "o-1", "symbol": "BTCUSDT", "side": "BUY", "quantity": "1", "price": "100"}


@pytest.fixture
def redis7(redis_client) -> bool:
    """Whether the server counts entries (entries-added, entries-read, lag: Redis >= 7)."""
    return int(str(redis_client.info("server")["redis_version"]).split(".")[0]) >= 7


@pytest.fixture
def fast(settings: Settings) -> Settings:
    return settings.model_copy(update={"metrics_refresh_s": 0.05})


@contextmanager
def worker_with_metrics(settings: Settings) -> Iterator[tuple[Worker, Metrics]]:
    store = PostgresStore(settings.database_dsn(), group=settings.group)
    store.open()
    stream = RedisStream.from_settings(settings)
    metrics = Metrics()
    try:
        yield Worker(settings, store, stream, metrics), metrics
    finally:
        stream.close()
        store.close()


def drain(settings: Settings, logs: list[dict] | None = None) -> tuple[list[dict], Metrics]:
    """Run a worker until idle; its ``stream_data_lost`` log events (all its events are added
    to ``logs``) and its metrics."""
    with capture_logs() as captured, worker_with_metrics(settings) as (worker, metrics):
        assert worker.run(until_idle=True) == 0
    if logs is not None:
        logs.extend(captured)
    return [e for e in captured if e["event"] == "stream_data_lost"], metrics


def sample(metrics: Metrics, name: str, stream: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"stream": stream})


def fills(settings: Settings, redis_client, names) -> list[str]:
    return [publish(redis_client, settings.fills_stream, {**FILL, "fill_id": n}) for n in names]


def committed_fills(settings: Settings) -> list[str]:
    found = rows(settings.database_dsn(), "SELECT fill_id FROM paper_fills ORDER BY fill_id")
    return [r["fill_id"] for r in found]


def test_entries_trimmed_before_the_group_read_them_are_reported_once(
    fast: Settings, redis_client, redis7
):
    read = fills(fast, redis_client, ["a1", "a2", "a3"])
    assert drain(fast)[0] == []  # a first start: nothing lost
    later = fills(fast, redis_client, [f"b{n:02}" for n in range(10)])
    redis_client.xtrim(fast.fills_stream, maxlen=4, approximate=False)  # 6 never read

    current = status.gather(fast)  # before the worker: status shows the gap as it is
    (fills_state,) = [s for s in current["streams"] if s["stream"] == fast.fills_stream]
    assert fills_state["lag"] == 4  # the entries still there, not Redis's 10
    if not redis7:
        assert fills_state["data_lost"] is None
        assert drain(fast)[0] == []
        return
    assert fills_state["data_lost"]["cause"] == "trimmed"
    assert fills_state["data_lost"]["lost"] == 6
    assert "DATA LOST: 6 entries trimmed before the group read them" in status.render(current)

    events, metrics = drain(fast)

    assert events == [
        {
            "event": "stream_data_lost",
            "log_level": "error",
            "stream": fast.fills_stream,
            "group": fast.group,
            "cause": "trimmed",
            "lost": 6,
            "last_delivered_id": read[-1],
            "committed_id": None,
            "first_available_id": later[6],
            "component": "worker",
            "consumer": fast.consumer_name,
        }
    ]
    assert sample(metrics, "paper_consumer_stream_entries_lost_total", fast.fills_stream) == 6
    assert sample(metrics, "paper_consumer_stream_gaps_total", fast.fills_stream) == 1
    text = generate_latest(metrics.registry).decode()
    assert f'paper_consumer_stream_gaps_total{{stream="{fast.fills_stream}"}} 1.0' in text
    assert committed_fills(fast) == ["a1", "a2", "a3", "b06", "b07", "b08", "b09"]

    # Read past, the gap stays in Redis's counters: status still shows it (the group's whole
    # count), the lag is 0, and a worker that starts later does not report it again.
    current = status.gather(fast)
    (fills_state,) = [s for s in current["streams"] if s["stream"] == fast.fills_stream]
    assert fills_state["lag"] == 0
    assert fills_state["data_lost"]["lost"] == 6
    assert drain(fast)[0] == []


def test_a_gap_the_running_worker_reads_across_is_still_reported(
    fast: Settings, redis_client, redis7
):
    fills(fast, redis_client, ["a1"])
    with capture_logs() as logs, worker_with_metrics(fast) as (worker, metrics):
        thread = threading.Thread(target=worker.run)
        thread.start()
        try:
            wait_for(lambda: committed_fills(fast) == ["a1"])
            time.sleep(0.2)  # a look after it caught up
            # Entries trimmed between two looks (here before the worker reads them).
            pipe = redis_client.pipeline(transaction=True)
            for n in range(5):
                pipe.xadd(fast.fills_stream, {**FILL, "fill_id": f"b{n}"})
            pipe.xtrim(fast.fills_stream, maxlen=2, approximate=False)
            pipe.execute()
            wait_for(lambda: committed_fills(fast) == ["a1", "b3", "b4"])
            if redis7:
                wait_for(lambda: any(e["event"] == "stream_data_lost" for e in logs))
            time.sleep(0.2)  # later looks: nothing more
        finally:
            worker.stop()
            thread.join(timeout=10)
    events = [e for e in logs if e["event"] == "stream_data_lost"]
    if not redis7:
        assert events == []
        return
    (event,) = events
    assert (event["cause"], event["lost"], event["stream"]) == ("trimmed", 3, fast.fills_stream)
    assert sample(metrics, "paper_consumer_stream_entries_lost_total", fast.fills_stream) == 3


def test_a_stream_that_vanished_is_reported_when_the_worker_starts(
    fast: Settings, redis_client, redis7
):
    read = fills(fast, redis_client, ["a1", "a2", "a3"])
    drain(fast)
    redis_client.delete(fast.fills_stream)  # what FLUSHALL or a restart without persistence do
    current = status.gather(fast)
    (fills_state,) = [s for s in current["streams"] if s["stream"] == fast.fills_stream]
    assert fills_state["data_lost"]["cause"] == "stream_vanished"
    assert "DATA LOST: an unknown number of entries gone with the stream" in status.render(current)
    fills(fast, redis_client, ["c1"])  # a publisher recreates it, without the group

    events, metrics = drain(fast)

    (event,) = events
    # Redis 6.2 does not count entries-added: a stream refilled by a publisher, its ids past
    # the committed one, looks like a group that went away (its entries after that id too).
    assert event["cause"] == ("stream_vanished" if redis7 else "group_vanished")
    assert event["stream"] == fast.fills_stream
    assert event["lost"] is None
    assert event["committed_id"] == read[-1]
    assert sample(metrics, "paper_consumer_stream_gaps_total", fast.fills_stream) == 1
    assert sample(metrics, "paper_consumer_stream_entries_lost_total", fast.fills_stream) == 0
    assert committed_fills(fast) == ["a1", "a2", "a3", "c1"]  # the new entries are read
    assert drain(fast)[0] == []  # reported once


def test_a_stream_deleted_while_the_worker_runs_is_reported(fast: Settings, redis_client, redis7):
    read = fills(fast, redis_client, ["a1", "a2"])
    with capture_logs() as logs, worker_with_metrics(fast) as (worker, metrics):
        thread = threading.Thread(target=worker.run)
        thread.start()
        try:
            wait_for(lambda: committed_fills(fast) == ["a1", "a2"])
            time.sleep(0.2)  # a look after it read them: the gap is told from there
            redis_client.delete(fast.fills_stream)  # the worker is blocked reading it
            time.sleep(0.3)
            fills(fast, redis_client, ["c1", "c2"])
            wait_for(lambda: committed_fills(fast) == ["a1", "a2", "c1", "c2"])
            wait_for(lambda: any(e["event"] == "stream_data_lost" for e in logs))
        finally:
            worker.stop()
            thread.join(timeout=10)
        assert not thread.is_alive()
    (event,) = [e for e in logs if e["event"] == "stream_data_lost"]
    # Redis 6.2: stream_vanished when the worker recreated it empty (MKSTREAM) before the
    # publisher did, else (no entries-added to compare) group_vanished.
    causes = ["stream_vanished"] if redis7 else ["stream_vanished", "group_vanished"]
    assert event["cause"] in causes
    assert event["last_delivered_id"] == read[-1]
    assert sample(metrics, "paper_consumer_stream_gaps_total", fast.fills_stream) == 1


def test_an_entry_deleted_before_the_group_read_it_is_reported(
    fast: Settings, redis_client, redis7
):
    fills(fast, redis_client, ["a1"])
    drain(fast)
    later = fills(fast, redis_client, ["b1", "b2", "b3"])
    redis_client.xdel(fast.fills_stream, later[1])

    events, metrics = drain(fast)

    assert committed_fills(fast) == ["a1", "b1", "b3"]
    if not redis7:  # no max-deleted-entry-id
        assert events == []
        return
    (event,) = events
    assert (event["cause"], event["lost"]) == ("deleted", None)
    assert sample(metrics, "paper_consumer_stream_gaps_total", fast.fills_stream) == 1


def test_a_group_recreated_on_a_stream_that_kept_its_entries_loses_nothing(
    fast: Settings, redis_client
):
    fills(fast, redis_client, ["a1", "a2"])
    drain(fast)
    redis_client.xgroup_destroy(fast.fills_stream, fast.group)
    assert status.gather(fast)["streams"][1]["data_lost"] is None
    logs: list[dict] = []
    events, _ = drain(fast, logs)
    assert events == []
    (warning,) = [e for e in logs if e["event"] == "consumer_group_recreated"]
    assert warning["stream"] == fast.fills_stream
    assert committed_fills(fast) == ["a1", "a2"]


def wait_for(condition, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
