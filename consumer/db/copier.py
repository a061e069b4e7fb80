"""The bulk replay's writer thread: runs the COPY (and upsert) statements of each folded chunk
on the replay connection while the main thread reads, parses and folds the next ones.

``put(jobs)`` hands over one chunk's statements (a bounded queue: the main thread waits when
the writer is ``depth`` chunks behind, so memory stays bounded); ``drain()`` waits until every
job handed over ran, after which the main thread may use the connection itself (it never
touches it while the writer may, and the writer only runs jobs). An error in the writer is
raised again in the main thread by the next ``put`` or ``drain``; later jobs are skipped (the
transaction is lost anyway and rolls back). ``close()`` stops the thread (also on Ctrl-C: it
finishes the statement it runs, the caller then rolls back).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import psycopg

Job = Callable[[psycopg.Connection[dict[str, Any]]], None]


def copy_job(statement: str, rows: Iterable[Sequence[Any]]) -> Job:
    """A job COPYing ``rows`` with ``statement`` (``COPY ... FROM STDIN``)."""

    def run(conn: psycopg.Connection[dict[str, Any]]) -> None:
        copy_rows(conn, statement, rows)

    return run


def copy_rows(
    conn: psycopg.Connection[dict[str, Any]], statement: str, rows: Iterable[Sequence[Any]]
) -> None:
    with conn.cursor().copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def execute_job(statement: str, params: dict[str, Any]) -> Job:
    def run(conn: psycopg.Connection[dict[str, Any]]) -> None:
        conn.execute(statement, params)

    return run


class Copier:
    """One writer thread on ``conn`` (see the module doc)."""

    def __init__(self, conn: psycopg.Connection[dict[str, Any]], *, depth: int = 2) -> None:
        self._conn = conn
        self._queue: queue.Queue[list[Job] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="bulk-copy", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            jobs = self._queue.get()
            try:
                if jobs is None:
                    return
                if self._error is None:
                    for job in jobs:
                        job(self._conn)
            except BaseException as exc:
                self._error = exc
            finally:
                self._queue.task_done()

    def _check(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def put(self, jobs: list[Job]) -> None:
        self._check()
        if not self._thread.is_alive():
            raise RuntimeError("the bulk writer thread is stopped")
        if jobs:
            self._queue.put(jobs)

    def drain(self) -> None:
        """Wait for every job handed over; the connection is the caller's until the next put."""
        self._queue.join()
        self._check()

    def close(self) -> None:
        """Stop the thread (idempotent). Jobs still queued run first, unless one failed."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
