"""Outages and the shutdown grace: how the worker waits out an unreachable server.

``Shutdown`` is the stop flag: ``request()`` (safe from a signal handler) sets it and starts the
grace period, ``shutdown_grace_s``, within which the batch in hand may still commit and ack.

``Outages`` runs the worker's calls to PostgreSQL and Redis. A call whose server is unreachable
(``DatabaseUnavailableError`` / ``RedisUnavailableError``) is retried with capped exponential
backoff and full jitter (sleep uniformly in [0, delay], the delay doubling from
``retry_initial_ms`` up to ``retry_max_ms``; AWS architecture blog). Each state change is logged
once — ``postgres_unavailable`` / ``redis_unavailable`` (an error, with the error text) when a
server goes, ``postgres_available`` / ``redis_available`` (a warning) when it is back — and told
to the observer (``server_state``); every failed call is one ``observer.retry``. A pause wakes
early when a stop is requested, but retrying goes on until the grace period ends: then
``ShutdownTimeoutError`` is raised (nothing was acknowledged, the entries are redelivered).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from consumer.errors import DatabaseUnavailableError, RedisUnavailableError
from consumer.observer import Observer, Server

T = TypeVar("T")

Clock = Callable[[], float]
Jitter = Callable[[float, float], float]


class ShutdownTimeoutError(Exception):
    """The grace period ended while a batch could not be committed."""


class Shutdown:
    """The stop flag and its grace period (``clock``: monotonic seconds)."""

    def __init__(self, grace_s: float, *, clock: Clock = time.monotonic) -> None:
        self.grace_s = grace_s
        self._clock = clock
        self._event = threading.Event()
        self._deadline: float | None = None

    def request(self) -> None:
        """Stop: the grace period starts now (a second request changes nothing)."""
        if not self._event.is_set():
            self._deadline = self._clock() + self.grace_s
            self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    @property
    def expired(self) -> bool:
        """Whether a stop was requested and its grace period is over."""
        return self._deadline is not None and self._clock() >= self._deadline

    def wait(self, seconds: float) -> None:
        """Idle up to ``seconds``; return at once when (or as soon as) a stop is requested."""
        self._event.wait(seconds)

    def pause(self, seconds: float) -> None:
        """A backoff pause: before a stop it wakes at the request; once stopping it sleeps on,
        but never past the end of the grace period."""
        deadline = self._deadline
        if deadline is None:
            self._event.wait(seconds)
        else:
            time.sleep(min(seconds, max(0.0, deadline - self._clock())))


class Outages:
    """Calls to PostgreSQL and Redis, retried through outages: see the module docstring."""

    def __init__(
        self,
        *,
        initial_ms: float,
        max_ms: float,
        shutdown: Shutdown,
        log: Any,
        observer: Observer,
        jitter: Jitter = random.uniform,
        pause: Callable[[float], None] | None = None,
    ) -> None:
        self.initial_ms = float(initial_ms)
        self.max_ms = float(max_ms)
        self.shutdown = shutdown
        self.log = log
        self.observer = observer
        self._jitter = jitter
        self._pause = pause if pause is not None else shutdown.pause
        self._down: dict[Server, bool] = {"postgres": False, "redis": False}
        # The worker's thread and its committer thread both call through here: a state change
        # is logged once whichever thread sees it.
        self._lock = threading.Lock()

    def down(self, server: Server) -> bool:
        """Whether the last call to ``server`` found it unreachable."""
        return self._down[server]

    def retry(self, server: Server, call: Callable[[], T]) -> T:
        """Run ``call`` until it succeeds, backing off while ``server`` is unreachable."""
        delay_ms = self.initial_ms
        while True:
            try:
                return self.attempt(server, call, delay_ms)
            except (DatabaseUnavailableError, RedisUnavailableError):
                delay_ms = min(delay_ms * 2, self.max_ms)

    def redis(self, call: Callable[[], T], *, once: bool = False) -> T:
        """The reader's Redis calls (``merge.RedisCalls``): retried, or ``once`` attempted."""
        if once:
            return self.attempt("redis", call, self.initial_ms)
        return self.retry("redis", call)

    def attempt(self, server: Server, call: Callable[[], T], delay_ms: float) -> T:
        """Run ``call`` once. If ``server`` is unreachable: log the state change (once), pause
        a full-jitter time of up to ``delay_ms`` and re-raise; ``ShutdownTimeoutError`` instead
        once the grace period of a requested stop is over."""
        unavailable = DatabaseUnavailableError if server == "postgres" else RedisUnavailableError
        try:
            value = call()
        except unavailable as exc:
            with self._lock:
                went, self._down[server] = not self._down[server], True
            if went:
                self.log.error(f"{server}_unavailable", error=str(exc))
                self.observer.server_state(server, available=False)
            self.observer.retry(server)
            if self.shutdown.expired:
                raise ShutdownTimeoutError from exc
            self._pause(self._jitter(0, delay_ms) / 1000)
            raise
        with self._lock:
            back, self._down[server] = self._down[server], False
        if back:
            self.log.warning(f"{server}_available")
            self.observer.server_state(server, available=True)
        return value
