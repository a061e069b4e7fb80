"""``Metrics`` as the worker's observer, in milliseconds: fakeredis streams, MemoryStore."""

from __future__ import annotations

import fakeredis
from prometheus_client import generate_latest

from consumer.metrics import Metrics
from consumer.settings import Settings
from consumer.stream import RedisStream
from consumer.testing import MemoryStore
from consumer.worker import Worker


def test_liveness_follows_the_loop_heartbeat():
    now = [100.0]
    metrics = Metrics(health_stale_s=10, clock=lambda: now[0])
    assert metrics.liveness() == (False, "worker loop not started")
    metrics.heartbeat()
    now[0] += 9
    assert metrics.liveness() == (True, "ok")
    now[0] += 2
    ok, reason = metrics.liveness()
    assert not ok
    assert reason.startswith("worker loop stalled for 11 s")
    metrics.retry("postgres")  # retrying an outage counts as alive
    assert metrics.liveness() == (True, "ok")


def test_readiness_needs_the_schema_and_both_servers():
    metrics = Metrics()
    assert metrics.readiness() == (False, "schema not verified")
    metrics.schema_verified()
    assert metrics.readiness() == (False, "postgres: not checked yet")
    metrics.server_state("postgres", available=True)
    metrics.server_state("redis", available=False)
    assert metrics.readiness() == (False, "redis: unreachable")
    metrics.server_state("redis", available=True)
    assert metrics.readiness() == (True, "ok")


def test_the_worker_reports_batches_and_retries():
    client = fakeredis.FakeRedis(decode_responses=True)
    settings = Settings(
        database_url="postgresql://unused/db", redis_url="redis://unused", consumer_name="unit",
        block_ms=10, batch_max_wait_ms=5, retry_initial_ms=1, retry_max_ms=2,
    )  # fmt: skip
    stream = RedisStream(
        "redis://unused",
        streams=settings.streams(),
        group=settings.group,
        consumer="unit",
        dlq_stream=settings.dlq_stream,
        client=client,
    )
    metrics = Metrics()
    client.xadd(settings.fills_stream, {"fill_id": "f1", "order_id": "o1", "symbol": "BTCUSDT",
                "side": "BUY", "quantity": "1", "price": "100"})  # fmt: skip
    client.xadd(settings.fills_stream, {"fill_id": "broken"})
    worker = Worker(settings, MemoryStore(), stream, metrics)
    assert worker.run(until_idle=True) == 0

    text = generate_latest(metrics.registry).decode()
    fills = settings.fills_stream
    assert (
        f'paper_consumer_entries_total{{outcome="committed",stream="{fills}",type="fill"}} 1.0'
        in text
    )
    assert (
        f'paper_consumer_entries_total{{outcome="dead_lettered",stream="{fills}",type="invalid"}}'
        " 1.0" in text
    )
    assert "paper_consumer_batch_size_entries_count 1.0" in text
    assert "broken" not in text  # no entry content in labels
    assert metrics.liveness() == (True, "ok")


def test_conflicting_duplicates_are_counted_by_stream():
    client = fakeredis.FakeRedis(decode_responses=True)
    settings = Settings(
        database_url="postgresql://unused/db", redis_url="redis://unused", consumer_name="unit",
        block_ms=10, batch_max_wait_ms=5,
    )  # fmt: skip
    stream = RedisStream(
        "redis://unused",
        streams=settings.streams(),
        group=settings.group,
        consumer="unit",
        dlq_stream=settings.dlq_stream,
        client=client,
    )
    metrics = Metrics()
    fill = {"fill_id": "f1", "order_id": "o1", "symbol": "BTCUSDT", "side": "BUY",
            "quantity": "1", "price": "100", "timestamp": "2026-01-01T00:00:00Z"}  # fmt: skip
    client.xadd(settings.fills_stream, fill)
    client.xadd(settings.fills_stream, fill)  # identical: a silent duplicate
    client.xadd(settings.fills_stream, {**fill, "quantity": "2"})  # conflicting
    assert Worker(settings, MemoryStore(), stream, metrics).run(until_idle=True) == 0
    text = generate_latest(metrics.registry).decode()
    fills = settings.fills_stream
    assert f'paper_consumer_conflicting_duplicates_total{{stream="{fills}"}} 1.0' in text
    assert (
        f'paper_consumer_entries_total{{outcome="duplicate",stream="{fills}",type="fill"}} 1.0'
        in text
    )
