"""Reading a replay's source ahead, in a thread, while the main thread parses and folds.

``prefetched(source)`` runs the ``source`` iterator in a reader thread and yields its items in
the same order. What overlaps is what the source does outside the interpreter lock: inflating
a ``.jsonl.gz`` archive (zlib releases the lock), waiting for a Redis XRANGE page or a page of
the ledger's server-side cursor (the server works on another core meanwhile). The rest of the
source (decoding lines, building entries) still takes turns with the main thread.

- Items cross in lists of ``block`` through a queue of at most ``depth`` lists, so memory stays
  bounded: at most ``(depth + 2) * block`` items are read ahead.
- An exception the source raises is raised again in the consumer after every item the source
  gave before it: the consumer sees exactly the sequence, and the error, of the plain iterator.
- Closing the generator early (Ctrl-C, a failed write, ``break``) stops the reader thread: it
  finishes the read it is in, closes the source (its ``finally`` blocks run in the thread that
  ran it) and exits; the close waits for that.
- The source must not share state with the consumer while it runs, except what the consumer
  reads only after the last item (the replay's ``skipped`` counts, complete before the end).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from typing import Generic, TypeVar

__all__ = ["DEFAULT_BLOCK", "DEFAULT_DEPTH", "prefetched"]

T = TypeVar("T")

DEFAULT_BLOCK = 1_000
DEFAULT_DEPTH = 8
_POLL_S = 0.05  # how often a reader blocked on a full queue looks whether it must stop


class _End:
    """The source is exhausted."""


class _Failed:
    """The source raised ``error``."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = _End()


class _Reader(Generic[T]):
    """The reader thread: fills the queue with blocks of the source's items."""

    def __init__(self, source: Iterator[T], *, block: int, depth: int) -> None:
        self._source = source
        self._block = block
        self.queue: queue.Queue[list[T] | _End | _Failed] = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="replay-read", daemon=True)

    def _put(self, item: list[T] | _End | _Failed) -> bool:
        """Queue ``item``; False when told to stop first."""
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=_POLL_S)
            except queue.Full:
                continue
            return True
        return False

    def _run(self) -> None:
        source, size = self._source, self._block
        block: list[T] = []
        try:
            for item in source:
                block.append(item)
                if len(block) >= size:
                    if not self._put(block):
                        return
                    block = []
            if block and not self._put(block):
                return
            self._put(_END)
        except BaseException as exc:  # re-raised in the consumer, after the items before it
            if not block or self._put(block):
                self._put(_Failed(exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()


def prefetched(
    source: Iterator[T], *, block: int = DEFAULT_BLOCK, depth: int = DEFAULT_DEPTH
) -> Generator[T, None, None]:
    """The items of ``source``, in order, read ahead by a thread (see the module doc)."""
    if block < 1 or depth < 1:
        raise ValueError("prefetched: block and depth must be at least 1")
    reader = _Reader(source, block=block, depth=depth)
    reader.thread.start()
    try:
        while True:
            got = reader.queue.get()
            if isinstance(got, _End):
                return
            if isinstance(got, _Failed):
                raise got.error
            yield from got
    finally:
        reader.stop.set()
        reader.thread.join()
