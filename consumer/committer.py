"""The committer thread of the pipelined worker loop: one batch in flight, in order.

``Committer`` runs one callable (the worker's commit: write in one transaction, then
dead-letter and acknowledge, then tally and observe) on a thread of its own, one job at a time,
so the worker's thread can read and parse the next batch meanwhile. The hand-off holds one job:
``submit`` first waits for the job in flight to finish, so at most one batch is committing
while at most one more is being parsed, and jobs finish in the order they were submitted.

An exception of a job (``ShutdownTimeoutError``, ``LeaseLostError``, a bug) is kept and raised
again in the submitting thread by the next ``submit`` or ``wait``: it is never swallowed.
``close`` lets the job in flight finish and joins the thread (a daemon thread as well, so a
stuck job never keeps the interpreter alive).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

J = TypeVar("J")


class Committer(Generic[J]):
    """Runs ``commit(job)`` for each submitted job on one thread, in order: see the module
    docstring. ``submit``, ``wait`` and ``close`` belong to one thread (the worker's)."""

    def __init__(self, commit: Callable[[J], None], *, name: str) -> None:
        self._commit = commit
        self._cond = threading.Condition()
        self._job: J | None = None
        self._busy = False
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        """Whether a job is in flight (handed over and not finished)."""
        with self._cond:
            return self._busy

    def submit(self, job: J) -> None:
        """Hand ``job`` over, after the job in flight has finished (its error raised here)."""
        self.wait()
        with self._cond:
            if self._closed:
                raise RuntimeError("committer closed")
            self._job, self._busy = job, True
            self._cond.notify_all()

    def wait(self) -> None:
        """Return once no job is in flight; raise the error of the last one if it failed."""
        with self._cond:
            while self._busy:
                self._cond.wait()
            error, self._error = self._error, None
        if error is not None:
            raise error

    def close(self) -> BaseException | None:
        """Let the job in flight finish, stop the thread and join it. Returns the error of a
        job that nobody has seen yet (the caller is failing already and logs it)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()
        with self._cond:
            error, self._error = self._error, None
        return error

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._job is None and not self._closed:
                    self._cond.wait()
                job = self._job
                if job is None:
                    return
            error: BaseException | None = None
            try:
                self._commit(job)
            except BaseException as exc:  # raised again in the worker's thread (``wait``)
                error = exc
            with self._cond:
                self._job, self._busy, self._error = None, False, error
                self._cond.notify_all()
