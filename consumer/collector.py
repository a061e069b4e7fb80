"""Less cyclic-GC work while the process folds: the collector policy of replay and the worker.

Both keep thousands of parsed entries and fold objects alive at once (a replay chunk of 10,000
entries; a backlog batch of up to ``PAPER_BATCH_MAX_ENTRIES``), and at CPython's default
young-generation threshold (700 allocations) every collection walked them again, and every
older-generation one the whole heap of modules and pydantic schemas too. Inside
``fewer_collections()`` the objects that existed before it are frozen out of the collections
(``gc.freeze``) and a young collection runs after 10,000 allocations instead of 700. Cycles are
still collected, less often; the objects of a batch are freed by reference counting as before.

Within the policy, ``paused()`` turns automatic collection off for ONE batch (the worker's
``_step``, a replay chunk): its entries, events and fold objects are all alive until it is
written, so every collection during it walked them (about 0.3 us an object), and they are
garbage by its end, freed by reference counting (which also takes each off the collector's
count). The next collection, after the batch, walks only what survived it. Garbage in cycles
made during a batch waits for that collection: at most one batch's worth.

Measured (docs/benchmarks.md): 1.0-1.2 s of a 100,000-entry replay went to the collector, 0.2 s
with this; collections inside the policy while the worker drains a 100,000-entry backlog
(``bench/throughput.py``): 0.45 s (158), and 0.01 s (2) with ``paused`` batches; a replay
0.38 s, then 0.01 s.

The policy is process-wide, so it is counted: several workers of one process (``shards``) or a
replay inside a test may enter it at once; the first in sets it, the last out restores the
thresholds and freeze state it found (a caller that had frozen objects itself keeps them
frozen).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# Young-generation threshold while folding (CPython's default is 700 allocations), and the two
# older generations' (CPython's defaults).
THRESHOLDS = (10_000, 10, 10)
# Overlapping paused batches collect once the young generation is this many thresholds past.
OVERLAP_BACKSTOP = 20


class _Counted:
    """A process-wide collector setting held by any number of holders (threads, nested
    blocks): the first in applies it (``_apply``, which saves what it changes), the last out
    restores it (``_restore``); one that leaves while others hold it calls ``_left_early``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0

    def enter(self) -> None:
        with self._lock:
            if self._holders == 0:
                self._apply()
            self._holders += 1

    def leave(self) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders == 0:
                self._restore()
            else:
                self._left_early()

    def _apply(self) -> None:
        raise NotImplementedError

    def _restore(self) -> None:
        raise NotImplementedError

    def _left_early(self) -> None:
        pass


class _Policy(_Counted):
    """``fewer_collections``: the thresholds and the freeze of the module doc."""

    def _apply(self) -> None:
        self._saved_thresholds = gc.get_threshold()
        self._froze = gc.get_freeze_count() == 0  # else the caller froze objects
        if self._froze:
            gc.freeze()
        gc.set_threshold(*THRESHOLDS)

    def _restore(self) -> None:
        gc.set_threshold(*self._saved_thresholds)
        if self._froze:
            gc.unfreeze()


_POLICY = _Policy()


class _Pause(_Counted):
    """``paused``: automatic collections off while any holder runs; back on, if they were on
    when the first holder came, once the last leaves. Holders that overlap without end (the
    batches of several shard workers in one process) would keep it off for ever: so a holder
    that leaves while others still run collects itself once the young generation has grown
    past ``OVERLAP_BACKSTOP`` times its threshold, as the collector would have (the
    generation that is due)."""

    def _apply(self) -> None:
        self._was_enabled = gc.isenabled()
        gc.disable()

    def _restore(self) -> None:
        if self._was_enabled:
            gc.enable()

    def _left_early(self) -> None:
        if self._was_enabled:
            _collect_if_overdue()


def _collect_if_overdue() -> None:
    """Collect the generation that is due once the young one is ``OVERLAP_BACKSTOP`` times
    past its threshold."""
    young, middle, old = gc.get_count()
    t_young, t_middle, t_old = gc.get_threshold()
    if young <= OVERLAP_BACKSTOP * t_young:
        return
    if middle >= t_middle and old >= t_old:
        gc.collect(2)
    else:
        gc.collect(1 if middle >= t_middle else 0)


_PAUSE = _Pause()


@contextmanager
def fewer_collections() -> Iterator[None]:
    """The collector policy of the module doc while the block runs (nests, thread-safe)."""
    _POLICY.enter()
    try:
        yield
    finally:
        _POLICY.leave()


@contextmanager
def paused() -> Iterator[None]:
    """No automatic collection while the block runs (nests, thread-safe): for one batch, whose
    objects are garbage by its end and freed by reference counting; the next collection, after
    it, walks only what survived (see the module doc)."""
    _PAUSE.enter()
    try:
        yield
    finally:
        _PAUSE.leave()
