"""/metrics, /healthz and /readyz of a real worker on real servers, scraped over HTTP.

The worker runs in-process with ``metrics.start_monitoring`` on an ephemeral port, exactly as
``paper-consumer run`` wires it; counters are read back with prometheus_client's own parser.
"""

from __future__ import annotations

import http.client
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from structlog.testing import capture_logs

from consumer.db import PostgresStore
from consumer.errors import RedisUnavailableError
from consumer.metrics import Metrics, MetricsServer, start_monitoring
from consumer.settings import Settings
from consumer.stream import RedisStream
from consumer.worker import Worker
from tests.support.pipeline import publish
from tests.support.roles import runtime_login

DB_SECRET = "pg-metrics-s3cret"  # noqa: S105 - test passwords
REDIS_SECRET = "redis-metrics-s3cret"  # noqa: S105


def get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def samples(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, text = get(port, "/metrics")
    assert status == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


@contextmanager
def monitored_worker(settings: Settings) -> Iterator[tuple[Worker, object, RedisStream]]:
    store = PostgresStore(settings.database_dsn(), group=settings.group, connect_timeout_s=2)
    store.open()
    stream = RedisStream.from_settings(settings)
    monitoring = start_monitoring(settings, stream, store.ping, port=0)
    try:
        yield Worker(settings, store, stream, monitoring.metrics), monitoring, stream
    finally:
        monitoring.close()
        stream.close()
        store.close()


def _publish_batch(client, names):
    publish(client, names["orders_stream"], {"order_id": "o1", "symbol": "BTCUSDT",
            "side": "BUY", "quantity": "2", "status": "SUBMITTED"})  # fmt: skip
    fill = {"fill_id": "f1", "order_id": "o1", "symbol": "BTCUSDT", "side": "BUY",
            "quantity": "1", "price": "100", "timestamp": "2024-05-01T12:00:00Z"}  # fmt: skip
    publish(client, names["fills_stream"], fill)
    publish(client, names["fills_stream"], fill)  # the same fill again: a duplicate
    publish(client, names["marks_stream"], {"symbol": "BTCUSDT", "price": "101"})
    publish(client, names["fills_stream"], {"fill_id": "bad", "quantity": "x"})


def test_counters_move_and_both_endpoints_answer_200_when_ready(
    settings, redis_client, stream_names
):
    _publish_batch(redis_client, stream_names)
    fills = stream_names["fills_stream"]
    with monitored_worker(settings) as (worker, monitoring, stream):
        assert worker.run(until_idle=True) == 0
        monitoring.metrics.refresh(stream, worker.store.ping)  # what the prober does
        found = samples(monitoring.server.port)
        health = get(monitoring.server.port, "/healthz")
        ready = get(monitoring.server.port, "/readyz")

    entries = "paper_consumer_entries_total"
    orders = stream_names["orders_stream"]
    assert value(found, entries, stream=orders, type="order", outcome="committed") == 1
    assert value(found, entries, stream=fills, type="fill", outcome="committed") == 1
    assert value(found, entries, stream=fills, type="fill", outcome="duplicate") == 1
    assert value(found, entries, stream=fills, type="invalid", outcome="dead_lettered") == 1
    marks = stream_names["marks_stream"]
    assert value(found, entries, stream=marks, type="mark", outcome="committed") == 1
    assert value(found, "paper_consumer_dead_letters_total", stream=fills) == 1
    assert value(found, "paper_consumer_batch_size_entries_sum") == 5
    assert value(found, "paper_consumer_batch_duration_seconds_count") >= 1
    assert value(found, "paper_consumer_last_committed_event_timestamp_seconds") > 1.7e9
    for name in (orders, fills, marks):
        assert value(found, "paper_consumer_group_pending_entries", stream=name) == 0
        assert value(found, "paper_consumer_group_lag_entries", stream=name) == 0
    assert value(found, "paper_consumer_dead_letter_stream_length_entries") == 1
    assert value(found, "paper_consumer_ready") == 1
    assert health == (200, "ok\n")
    assert ready == (200, "ok\n")
    # Labels are configuration and closed sets only: never an entry id or a reason.
    allowed = {
        "stream": set(stream_names.values()),
        "type": {"order", "fill", "mark", "invalid"},
        "outcome": {"committed", "dead_lettered", "duplicate"},
        "server": {"postgres", "redis"},
    }
    for (_, labels), _value in found.items():
        for key, label in labels:
            assert key == "le" or label in allowed[key], (key, label)


def test_readyz_is_503_while_postgresql_is_unreachable(settings, redis_url):
    down = f"postgresql://claire_user:{DB_SECRET}@127.0.0.1:1/x?connect_timeout=1"
    broken = settings.model_copy(update={"database_url": SecretStr(down)})
    with capture_logs() as logs, monitored_worker(broken) as (worker, monitoring, stream):
        monitoring.metrics.refresh(stream, worker.store.ping)
        port = monitoring.server.port
        ready = get(port, "/readyz")
        before_loop = get(port, "/healthz")
        monitoring.metrics.heartbeat()
        alive = get(port, "/healthz")
        found = samples(port)
    assert ready == (503, "postgres: unreachable\n")
    assert before_loop == (503, "worker loop not started\n")
    assert alive == (200, "ok\n")  # alive but not ready: do not restart, do not route
    assert value(found, "paper_consumer_server_up", server="postgres") == 0
    assert value(found, "paper_consumer_server_up", server="redis") == 1
    assert value(found, "paper_consumer_ready") == 0
    everything = repr(logs) + ready[1] + "".join(map(str, found))
    assert DB_SECRET not in everything


def test_readyz_recovers_when_the_worker_sees_the_server_again():
    metrics = Metrics()
    server = MetricsServer(metrics, "127.0.0.1", 0).start()
    try:
        metrics.schema_verified()
        metrics.server_state("redis", available=True)
        assert get(server.port, "/readyz") == (503, "postgres: not checked yet\n")
        metrics.server_state("postgres", available=False)
        assert get(server.port, "/readyz") == (503, "postgres: unreachable\n")
        metrics.server_state("postgres", available=True)
        assert get(server.port, "/readyz") == (200, "ok\n")
        assert get(server.port, "/nope")[0] == 404
    finally:
        server.close()


@pytest.fixture
def redis_acl_url(redis_url) -> Iterator[str]:
    """``redis_url`` logged in as a temporary ACL user with a password."""
    client = redis.Redis.from_url(redis_url)
    user = f"paper_t_{uuid.uuid4().hex[:8]}"
    client.acl_setuser(user, enabled=True, passwords=[f"+{REDIS_SECRET}"], keys=["*"],
                       commands=["+@all"])  # fmt: skip
    scheme, rest = redis_url.split("://", 1)
    auth = f"{user}:{REDIS_SECRET}@"
    yield f"{scheme}://{auth}{rest}" if scheme != "unix" else f"unix://{auth}{rest}"
    client.acl_deluser(user)
    client.close()


@pytest.fixture
def runtime_url(pg_server_url, db_url) -> Iterator[str]:
    """The test database as a LOGIN member of claire_user, with a password in the URL."""
    with runtime_login(pg_server_url, db_url, DB_SECRET) as url:
        yield url


def test_no_secret_in_metrics_logs_or_errors(
    settings, runtime_url, redis_acl_url, redis_client, stream_names
):
    _publish_batch(redis_client, stream_names)
    secret_settings = settings.model_copy(
        update={"database_url": SecretStr(runtime_url), "redis_url": SecretStr(redis_acl_url)}
    )
    with capture_logs() as logs, monitored_worker(secret_settings) as (worker, mon, stream):
        assert worker.run(until_idle=True) == 0
        mon.metrics.refresh(stream, worker.store.ping)
        port = mon.server.port
        bodies = [get(port, path)[1] for path in ("/metrics", "/healthz", "/readyz")]
    assert bodies[2] == "ok\n"
    assert worker.totals.fills == 1
    # An unreachable Redis with a password in its URL: the error names it, masked.
    unreachable = redis_acl_url.replace(redis_acl_url.rsplit("@", 1)[1], "127.0.0.1:1/0")
    down = RedisStream(unreachable, streams=["s"], group="g", consumer="c", dlq_stream="d")
    with pytest.raises(RedisUnavailableError, match="unreachable") as error:
        down.group_state()
    down.close()
    text = repr(logs) + "".join(bodies) + str(error.value)
    assert "***" in str(error.value)
    for secret in (DB_SECRET, REDIS_SECRET):
        assert secret not in text
