"""Connections: the worker's pool, connection setup and transactions, and driver errors.

``Pooled`` is a small pool opened explicitly (fail fast, ping to learn whether the server is
there). Every worker connection holds the presence lock in SHARED mode (a replay takes it
EXCLUSIVELY) and, for the live writer, plans each prepared statement with its parameters.
``pooled_transaction`` runs one transaction, in pipeline mode if asked (BEGIN and COMMIT sent in
the pipeline). Driver errors leave as ``DatabaseUnavailableError`` (retry later) or the pool's
``refused`` error (the data is bad), with ``describe``'s one-line message.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from consumer.errors import (
    DatabaseUnavailableError,
    RejectedByDatabaseError,
)

PING = "SELECT 1"


# Every worker connection holds this advisory lock in SHARED mode for its whole life; a replay
# (which rewrites history) takes it EXCLUSIVELY, so it refuses to run while a live worker is
# connected to the same database, and a worker starting during a replay waits for it to end.
WORKER_PRESENCE_LOCK_KEY = 0x7061706572_776B  # "paper-wk"


HOLD_WORKER_PRESENCE = "SELECT pg_advisory_lock_shared(%(key)s)"


CUSTOM_PLANS_ONLY = "SET plan_cache_mode = force_custom_plan"


BEGIN = "BEGIN"


COMMIT = "COMMIT"


ROLLBACK = "ROLLBACK"


TRY_EXCLUSIVE_PRESENCE = "SELECT pg_try_advisory_lock(%(key)s) AS acquired"


# A pooled connection used within this many seconds is handed out again without a ping.
RECENT_S = 2.0


TRANSIENT = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout)


DATA_ERRORS = (psycopg.DataError, psycopg.IntegrityError)


class Pooled:
    """A small pool of the worker's connections (opened explicitly) and transactions over it:
    a connection problem is ``DatabaseUnavailableError``, data PostgreSQL refuses is
    ``refused`` (the class attribute)."""

    refused: type[Exception] = RejectedByDatabaseError

    def __init__(
        self,
        dsn: str,
        *,
        name: str,
        max_size: int,
        connect_timeout_s: float,
        custom_plans: bool = False,
    ) -> None:
        self._timeout = connect_timeout_s
        kwargs: dict[str, Any] = {
            "connect_timeout": max(1, round(connect_timeout_s)),
            "autocommit": False,
        }
        configure = _announce_worker
        if custom_plans:
            kwargs["prepare_threshold"] = 0
            configure = _announce_planning_worker
        # When each connection last finished a transaction (see ``_check_unless_recent``).
        self._last_used: weakref.WeakKeyDictionary[psycopg.Connection[Any], float] = (
            weakref.WeakKeyDictionary()
        )
        self._pool = ConnectionPool(
            dsn,
            min_size=1,
            max_size=max_size,
            open=False,
            kwargs=kwargs,
            check=self._check_unless_recent,
            configure=configure,
            name=name,
        )

    def _check_unless_recent(self, conn: psycopg.Connection[Any]) -> None:
        """Pool ``check``: ping a connection handed out again only if it has been idle for
        ``RECENT_S`` or more. A connection that finished a transaction a moment ago is alive
        unless the server went away since, and then the next statement fails like the ping
        would have (``DatabaseUnavailableError``, retried on a new connection, the broken one
        discarded). Under load this saves the ping's round trip on every batch."""
        last = self._last_used.get(conn)
        if last is not None and time.monotonic() - last < RECENT_S:
            return
        ConnectionPool.check_connection(conn)

    def open(self) -> None:
        """Open the pool without waiting; ``ping`` tells whether the server is there."""
        self._pool.open(wait=False)

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def _transaction(
        self, *, pipeline: bool = False
    ) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """One transaction on a pooled connection. With ``pipeline`` it runs in pipeline
        mode, BEGIN and COMMIT included: a statement whose result is not read is sent without
        waiting for the previous one."""
        try:
            with pooled_transaction(
                self._pool, self._timeout, self._last_used, pipeline=pipeline
            ) as conn:
                yield conn
        except DATA_ERRORS as exc:
            raise self.refused(describe(exc)) from exc
        except TRANSIENT as exc:
            raise DatabaseUnavailableError(describe(exc)) from exc

    def ping(self) -> None:
        with self._transaction() as conn:
            conn.execute(PING)


@contextmanager
def pooled_transaction(
    pool: ConnectionPool[Any],
    timeout: float,
    last_used: weakref.WeakKeyDictionary[psycopg.Connection[Any], float],
    *,
    pipeline: bool,
) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """A pooled connection with dict rows, inside one transaction (errors left to the caller);
    the time it ended without an error is recorded in ``last_used``."""
    with pool.connection(timeout=timeout) as conn:
        conn.row_factory = dict_row
        with _pipelined(conn) if pipeline else conn.transaction():
            yield conn
        last_used[conn] = time.monotonic()


@contextmanager
def _pipelined(conn: psycopg.Connection[dict[str, Any]]) -> Iterator[None]:
    """One transaction in pipeline mode, its BEGIN and COMMIT sent by us in the pipeline
    (psycopg's own transaction waits for the server after BEGIN and again before COMMIT: two
    round trips a batch). A statement that fails raises at the next result read or at the
    final sync (the server skips the statements after it, COMMIT included); the transaction
    is then rolled back here, as it is for any other error."""
    conn.autocommit = True  # no implicit BEGIN from psycopg: ours is in the pipeline
    try:
        with conn.pipeline() as pipeline:
            conn.execute(BEGIN, prepare=False)
            try:
                yield
                # Sending COMMIT may read answers already in, and raise an earlier refusal.
                conn.execute(COMMIT, prepare=False)
            except BaseException:
                # Take the server's answers up to here (an aborted part raises again), so that
                # the pipeline ends cleanly on the ROLLBACK.
                with contextlib.suppress(psycopg.Error):
                    pipeline.sync()
                with contextlib.suppress(psycopg.Error):
                    conn.execute(ROLLBACK, prepare=False)
                raise
    except BaseException:
        # Refused at the final sync (COMMIT skipped), or the connection is gone.
        if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            with contextlib.suppress(psycopg.Error):
                conn.execute(ROLLBACK, prepare=False)
        raise
    finally:
        if not conn.closed:
            with contextlib.suppress(psycopg.Error):
                conn.autocommit = False


def _announce_worker(conn: psycopg.Connection[Any]) -> None:
    """Pool ``configure`` hook: mark this connection as a live worker's (see the lock above)."""
    conn.execute(HOLD_WORKER_PRESENCE, {"key": WORKER_PRESENCE_LOCK_KEY})
    conn.commit()


def _announce_planning_worker(conn: psycopg.Connection[Any]) -> None:
    """``_announce_worker``, and plan every prepared statement with its actual parameters."""
    conn.execute(CUSTOM_PLANS_ONLY)
    _announce_worker(conn)


def describe(exc: BaseException) -> str:
    diag = getattr(exc, "diag", None)
    constraint = getattr(diag, "constraint_name", None) if diag is not None else None
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{text} (constraint {constraint})" if constraint else text
