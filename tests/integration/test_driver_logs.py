"""psycopg's own warnings during a PostgreSQL outage are structured events, one per state change
(issue 22.7), with a real pool against a real server behind a proxy whose link is cut.

Before: the pool's ``error connecting in 'paper-consumer': …`` / ``Is the server running …``
went to stderr as plain text at every reconnection attempt.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import structlog
from psycopg.conninfo import make_conninfo
from psycopg_pool.base import AttemptWithBackoff

from consumer import logs, redact
from consumer.db import PostgresStore
from consumer.driver_logs import POOL_LOGGER, unroute_driver_logs
from consumer.errors import DatabaseUnavailableError
from tests.support.proxy import TcpProxy, postgres_target, postgres_via

PASSWORD = "pool-pw-Q7x"  # noqa: S105 - trust auth ignores it; it must appear nowhere


def _wait(condition: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def json_log(monkeypatch) -> Iterator[io.StringIO]:
    """The CLI's logging: JSON lines (into a buffer here)."""
    monkeypatch.setattr(redact, "_known", redact._Secrets())
    out = io.StringIO()
    logs.configure("json", "info", stream=out)
    yield out
    unroute_driver_logs()
    structlog.reset_defaults()


@contextmanager
def no_root_handler() -> Iterator[None]:
    """As in production: the root logger has no handler (pytest gives it one for each test
    phase), so Python's last-resort handler prints a driver's record nobody handles to stderr."""
    saved = logging.root.handlers[:]
    logging.root.handlers.clear()
    try:
        yield
    finally:
        logging.root.handlers[:] = saved


def _pingable(store: PostgresStore) -> bool:
    try:
        store.ping()
    except DatabaseUnavailableError:
        return False
    return True


@pytest.mark.slow
def test_pool_outages_are_one_structured_event_per_state_change(
    db_url, json_log, monkeypatch, capsys
):
    monkeypatch.setattr(AttemptWithBackoff, "INITIAL_DELAY", 0.05)  # many attempts, quickly
    url = make_conninfo(db_url, password=PASSWORD)
    redact.remember_url(url)
    with no_root_handler(), TcpProxy(postgres_target(db_url)) as proxy:
        proxy.cut()
        store = PostgresStore(postgres_via(url, proxy), group="g", connect_timeout_s=1)
        store.open()
        try:
            for _outage in range(2):
                refused = proxy.refused
                _wait(lambda n=refused: proxy.refused >= n + 4)  # the pool retried 4+ times
                proxy.restore()
                _wait(lambda: _pingable(store))
                proxy.cut()  # the next outage: the live connection goes too
                _wait(lambda: not _pingable(store))
            proxy.restore()
            _wait(lambda: _pingable(store))
        finally:
            store.close()

    assert capsys.readouterr().err == ""  # nothing printed outside the structured log
    text = json_log.getvalue()
    assert PASSWORD not in text
    events = [json.loads(line) for line in text.splitlines()]
    assert all(e["component"] == "psycopg" for e in events)
    changes = [(e["event"], e["level"], e["pool"]) for e in events if "pool" in e]
    assert (
        changes
        == [
            ("postgres_pool_connect_failed", "warning", "paper-consumer"),
            ("postgres_pool_connected", "info", "paper-consumer"),
        ]
        * 2
    )
    failed = next(e for e in events if e["event"] == "postgres_pool_connect_failed")
    assert "\n" not in failed["error"]
    assert "server closed the connection unexpectedly" in failed["error"]
    # Other driver warnings of the outage (a broken connection discarded) are events too.
    others = [e for e in events if "pool" not in e]
    assert all(e["event"] == "psycopg_log" and e["logger"] == POOL_LOGGER for e in others)
    assert len(others) <= 4
    assert logging.getLogger(POOL_LOGGER).level == logging.NOTSET  # INFO only while failing
