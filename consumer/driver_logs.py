"""psycopg's and psycopg_pool's own log records as structured events, one per state change.

psycopg writes to the standard-library loggers ``psycopg`` (and its child ``psycopg.pool``) and
``psycopg_pool``. With no handler, Python prints their warnings as plain text on stderr, outside
the JSON log, and the pool warns at every reconnection attempt of an outage (``error connecting
in 'paper-consumer': connection failed: … Is the server running on that host …``).
``route_driver_logs()`` (called by ``logs.configure``) hands every record to ``DriverLogBridge``,
which writes it through structlog, secrets scrubbed (``redact.scrub``):

- ``postgres_pool_connect_failed`` (pool, error): a pool could not connect. Once per outage of
  that pool; again only if the error changes (refused, then authentication failed, …).
- ``postgres_pool_connected`` (pool): the pool connected again after that. To see it, the
  ``psycopg.pool`` logger is let down to INFO while a pool is failing, and only then (at INFO it
  logs each connection handed out, which is nothing to pay for in normal operation).
- ``postgres_pool_reconnect_gave_up`` (pool, after_s): the pool stopped retrying for now.
- ``psycopg_log`` (logger, message) at the record's level: any other record at WARNING or above.

Pools are told apart by name (``PostgresStore``'s is ``paper-consumer``, the leases' is
``paper-consumer-leases``); the shards' stores share one name, so they share one state too.
"""

from __future__ import annotations

import logging
import threading

import structlog

from consumer import redact

DRIVER_LOGGERS = ("psycopg", "psycopg_pool")
POOL_LOGGER = "psycopg.pool"

# psycopg_pool's message templates (psycopg_pool/pool.py) this bridge reads.
_CONNECT_FAILED = "error connecting in %r: %s"
_GAVE_UP = "reconnection attempt in pool %r failed after %s sec"
_ADDED = "adding new connection to the pool"  # no pool name: it is in the worker thread's name
_GIVEN = "connection given by %r"
_WORKER_THREAD = "-worker-"  # psycopg_pool names its threads "<pool>-worker-<n>"


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


class DriverLogBridge(logging.Handler):
    """A ``logging.Handler`` for the driver loggers; see the module docstring."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self._state_lock = threading.Lock()
        self._failing: dict[str, str] = {}  # pool name -> the error last written for it
        self._pool_level: int | None = None  # psycopg.pool's own level before we lowered it
        self._log = structlog.get_logger(component="psycopg")

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._route(record)
        except Exception:  # a log line must never break the code that wrote it
            self.handleError(record)

    def _route(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        if record.msg == _CONNECT_FAILED and len(args) == 2:
            self._connect_failed(str(args[0]), redact.scrub(_one_line(str(args[1]))))
        elif record.msg == _GAVE_UP and len(args) == 2:
            self._log.error("postgres_pool_reconnect_gave_up", pool=str(args[0]), after_s=args[1])
        elif record.msg == _ADDED:
            pool, marker, _ = (record.threadName or "").rpartition(_WORKER_THREAD)
            if marker:
                self._connected(pool)
        elif record.msg == _GIVEN and len(args) == 1:
            self._connected(str(args[0]))
        elif record.levelno >= logging.WARNING:
            self._forward(record)

    def _connect_failed(self, pool: str, error: str) -> None:
        with self._state_lock:
            if self._failing.get(pool) == error:
                return
            first = not self._failing
            self._failing[pool] = error
            if first:  # from now on psycopg.pool's INFO records tell when a pool is back
                logger = logging.getLogger(POOL_LOGGER)
                self._pool_level = logger.level
                logger.setLevel(logging.INFO)
        self._log.warning("postgres_pool_connect_failed", pool=pool, error=error)

    def _connected(self, pool: str) -> None:
        with self._state_lock:
            if self._failing.pop(pool, None) is None:
                return
            if not self._failing:
                self._restore_level()
        self._log.info("postgres_pool_connected", pool=pool)

    def _restore_level(self) -> None:
        if self._pool_level is not None:
            logging.getLogger(POOL_LOGGER).setLevel(self._pool_level)
            self._pool_level = None

    def _forward(self, record: logging.LogRecord) -> None:
        method = logging.getLevelName(record.levelno).lower()
        if method not in ("warning", "error", "critical"):
            method = "warning"
        message = redact.scrub(_one_line(record.getMessage()))
        getattr(self._log, method)("psycopg_log", logger=record.name, message=message)

    def close(self) -> None:
        with self._state_lock:
            self._failing.clear()
            self._restore_level()
        super().close()


def route_driver_logs() -> DriverLogBridge:
    """Install one ``DriverLogBridge`` on the driver loggers, replacing any earlier one (safe to
    call more than once). Records still propagate: the process's root logger has no handler, so
    nothing else prints them (and pytest's log capture still sees them)."""
    unroute_driver_logs()
    bridge = DriverLogBridge()
    for name in DRIVER_LOGGERS:
        logging.getLogger(name).addHandler(bridge)
    return bridge


def unroute_driver_logs() -> None:
    """Remove the bridge (Python prints the drivers' warnings itself again)."""
    for name in DRIVER_LOGGERS:
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if isinstance(h, DriverLogBridge)]:
            logger.removeHandler(handler)
            handler.close()
