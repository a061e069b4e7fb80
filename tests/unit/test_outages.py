"""consumer/outages.py: backoff bounds, one log line per state change, the shutdown grace.

No real time passes: the pause, the jitter and the clock are injected.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from consumer.errors import DatabaseUnavailableError, RedisUnavailableError
from consumer.logs import get_logger
from consumer.observer import Observer
from consumer.outages import Outages, Shutdown, ShutdownTimeoutError


class Recorder(Observer):
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def retry(self, server: str) -> None:
        self.calls.append(("retry", server))

    def server_state(self, server: str, *, available: bool) -> None:
        self.calls.append(("state", server, available))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def failing(times: int, error: type[Exception], value: str = "ok") -> Callable[[], str]:
    """A call that raises ``error`` ``times`` times, then returns ``value``."""
    left = {"n": times}

    def call() -> str:
        if left["n"] > 0:
            left["n"] -= 1
            raise error("server gone")
        return value

    return call


def outages(
    *,
    jitter: Callable[[float, float], float] = random.uniform,
    shutdown: Shutdown | None = None,
    observer: Observer | None = None,
    pauses: list[float] | None = None,
) -> Outages:
    slept = pauses if pauses is not None else []
    return Outages(
        initial_ms=10,
        max_ms=80,
        shutdown=shutdown or Shutdown(5.0, clock=Clock()),
        log=get_logger(component="test"),
        observer=observer or Observer(),
        jitter=jitter,
        pause=slept.append,
    )


def test_the_delay_doubles_from_initial_up_to_the_cap():
    pauses: list[float] = []
    # The largest pause the jitter may draw: exactly the delay.
    retrying = outages(jitter=lambda low, high: high, pauses=pauses)
    assert retrying.retry("postgres", failing(7, DatabaseUnavailableError)) == "ok"
    assert pauses == [0.01, 0.02, 0.04, 0.08, 0.08, 0.08, 0.08]


def test_full_jitter_draws_between_zero_and_the_delay():
    drawn: list[tuple[float, float]] = []

    def jitter(low: float, high: float) -> float:
        drawn.append((low, high))
        return random.uniform(low, high)  # noqa: S311 - jitter, not crypto

    pauses: list[float] = []
    outages(jitter=jitter, pauses=pauses).retry("redis", failing(6, RedisUnavailableError))
    assert drawn == [(0, 10), (0, 20), (0, 40), (0, 80), (0, 80), (0, 80)]
    assert all(0 <= p <= high / 1000 for p, (_, high) in zip(pauses, drawn, strict=True))


def test_each_state_change_is_logged_and_observed_once():
    observer = Recorder()
    retrying = outages(observer=observer)
    with capture_logs() as logs:
        retrying.retry("postgres", failing(4, DatabaseUnavailableError))
        retrying.retry("postgres", failing(0, DatabaseUnavailableError))  # still up: silent
        retrying.retry("postgres", failing(2, DatabaseUnavailableError))  # a second outage
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("postgres_unavailable", "error"),
        ("postgres_available", "warning"),
        ("postgres_unavailable", "error"),
        ("postgres_available", "warning"),
    ]
    assert logs[0]["error"] == "server gone"
    assert observer.calls == [
        ("state", "postgres", False),
        *[("retry", "postgres")] * 4,
        ("state", "postgres", True),
        ("state", "postgres", False),
        *[("retry", "postgres")] * 2,
        ("state", "postgres", True),
    ]
    assert not retrying.down("postgres")


def test_servers_are_tracked_apart_and_other_errors_pass_through():
    retrying = outages()
    with capture_logs() as logs, pytest.raises(RedisUnavailableError):
        # A Redis error is not a PostgreSQL outage: not retried as one, not logged as one.
        retrying.attempt("postgres", failing(1, RedisUnavailableError), 10)
    assert logs == []
    with pytest.raises(RedisUnavailableError):
        retrying.redis(failing(1, RedisUnavailableError), once=True)
    assert retrying.down("redis")
    assert not retrying.down("postgres")


def test_the_grace_period_ending_raises_instead_of_retrying():
    clock = Clock()
    shutdown = Shutdown(5.0, clock=clock)
    pauses: list[float] = []
    retrying = outages(shutdown=shutdown, pauses=pauses)

    def advancing() -> str:
        clock.now += 2.0  # each failed call takes 2 s of the grace
        assert clock.now < 120, "retried long past the grace period"
        raise DatabaseUnavailableError("server gone")

    shutdown.request()
    with pytest.raises(ShutdownTimeoutError):
        retrying.retry("postgres", advancing)
    assert len(pauses) == 2  # at 2 s and 4 s still within the grace; at 6 s it is over
    assert shutdown.expired


def test_no_stop_means_no_grace_expiry():
    clock = Clock()
    shutdown = Shutdown(0.5, clock=clock)
    clock.now += 1000
    assert not shutdown.expired
    retrying = outages(shutdown=shutdown)
    assert retrying.retry("redis", failing(3, RedisUnavailableError)) == "ok"


def test_the_grace_period_starts_at_the_first_request():
    clock = Clock()
    shutdown = Shutdown(5.0, clock=clock)
    shutdown.request()
    clock.now += 4.0
    shutdown.request()  # a second signal does not extend the grace
    assert not shutdown.expired
    clock.now += 1.0
    assert shutdown.expired
    assert shutdown.requested
