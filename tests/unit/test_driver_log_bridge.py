"""``DriverLogBridge`` on records shaped like psycopg_pool's own: what becomes which event."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest
from structlog.testing import capture_logs

from consumer import redact
from consumer.driver_logs import (
    DRIVER_LOGGERS,
    POOL_LOGGER,
    DriverLogBridge,
    route_driver_logs,
    unroute_driver_logs,
)

pool_log = logging.getLogger(POOL_LOGGER)


@pytest.fixture(autouse=True)
def bridge(monkeypatch) -> Iterator[DriverLogBridge]:
    monkeypatch.setattr(redact, "_known", redact._Secrets())
    installed = route_driver_logs()
    yield installed
    unroute_driver_logs()


def _connect_error(pool: str, error: str) -> None:
    pool_log.warning("error connecting in %r: %s", pool, Exception(error))


def _added_in(pool: str) -> None:
    """psycopg_pool logs a new connection at INFO from one of the pool's worker threads."""
    thread = threading.Thread(
        target=pool_log.info, args=("adding new connection to the pool",), name=f"{pool}-worker-1"
    )
    thread.start()
    thread.join()


def test_repeated_connect_errors_are_one_event_until_the_error_changes_or_the_pool_is_back():
    with capture_logs() as events:
        for _ in range(5):
            _connect_error("p1", "connection refused\n\tIs the server running on that host?")
        _connect_error("p1", "password authentication failed")
        _connect_error("p2", "connection refused")
        _added_in("p1")
        pool_log.info("adding new connection to the pool")  # not a pool thread: ignored
        _connect_error("p1", "password authentication failed")  # a new outage
    assert [(e["event"], e["pool"], e.get("error")) for e in events] == [
        ("postgres_pool_connect_failed", "p1",
         "connection refused Is the server running on that host?"),
        ("postgres_pool_connect_failed", "p1", "password authentication failed"),
        ("postgres_pool_connect_failed", "p2", "connection refused"),
        ("postgres_pool_connected", "p1", None),
        ("postgres_pool_connect_failed", "p1", "password authentication failed"),
    ]  # fmt: skip


def test_info_records_are_read_only_while_a_pool_is_failing():
    assert pool_log.getEffectiveLevel() == logging.WARNING  # psycopg's quiet default
    _connect_error("p1", "refused")
    _connect_error("p2", "refused")
    assert pool_log.level == logging.INFO
    with capture_logs() as events:
        pool_log.info("connection given by %r", "p2")
        assert pool_log.level == logging.INFO  # p1 still failing
        pool_log.info("connection requested from %r", "p1")  # no event
        _added_in("p1")
    assert pool_log.level == logging.NOTSET
    assert [(e["event"], e["pool"]) for e in events] == [
        ("postgres_pool_connected", "p2"),
        ("postgres_pool_connected", "p1"),
    ]


def test_other_warnings_are_events_with_secrets_scrubbed():
    redact.remember("s3cret-pw")
    with capture_logs() as events:
        pool_log.warning("reconnection attempt in pool %r failed after %s sec", "p1", 300)
        logging.getLogger("psycopg").warning("odd thing with %s\nsecond line", "s3cret-pw")
        logging.getLogger("psycopg_pool.sched").error("scheduler %s", "broke")
        logging.getLogger("psycopg").info("quiet")  # below psycopg's WARNING: never a record
    assert events == [
        {"component": "psycopg", "pool": "p1", "after_s": 300,
         "event": "postgres_pool_reconnect_gave_up", "log_level": "error"},
        {"component": "psycopg", "logger": "psycopg", "message": "odd thing with *** second line",
         "event": "psycopg_log", "log_level": "warning"},
        {"component": "psycopg", "logger": "psycopg_pool.sched", "message": "scheduler broke",
         "event": "psycopg_log", "log_level": "error"},
    ]  # fmt: skip


def test_routing_twice_leaves_one_bridge():
    route_driver_logs()
    for name in DRIVER_LOGGERS:
        bridges = [h for h in logging.getLogger(name).handlers if isinstance(h, DriverLogBridge)]
        assert len(bridges) == 1
