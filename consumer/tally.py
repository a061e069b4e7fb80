"""What the worker counts and says about its batches: ``Totals`` over its life and the one
``batch_committed`` line per batch, with the group lag sampled at most once a second.

The counts come from the store's ``BatchResult``s (orders written, fills inserted, duplicate
fills) and the entries dead-lettered; ``--until-idle`` and ``worker_stopped`` print the totals.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from consumer.errors import RedisUnavailableError
from consumer.fold import BatchResult
from consumer.records import RawEntry


@dataclass
class Totals:
    """Counters over the worker's life (also what ``--until-idle`` prints at the end)."""

    entries: int = 0
    orders: int = 0
    fills: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    batches: int = 0


class LagSample:
    """Entries not yet delivered to the group (``RedisStream.lag``: XINFO GROUPS, Redis >= 7),
    asked at most once every ``period_s`` so the batch line costs no round trip under load;
    None when unknown or Redis did not answer."""

    def __init__(
        self,
        lag: Callable[[], int | None],
        *,
        period_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lag = lag
        self._period_s = period_s
        self._clock = clock
        self._checked_at = float("-inf")
        self._last: int | None = None

    def __call__(self) -> int | None:
        now = self._clock()
        if now >= self._checked_at + self._period_s:
            self._checked_at = now
            try:
                self._last = self._lag()
            except RedisUnavailableError:
                self._last = None
        return self._last


class Tally:
    """Adds each batch to ``totals`` and logs its ``batch_committed`` line. ``batch`` runs on
    the worker's committer thread when commits are pipelined: read the counts with
    ``snapshot()`` (a consistent copy) from any other thread."""

    def __init__(self, lag: Callable[[], int | None], log: Any) -> None:
        self.totals = Totals()
        self._lock = threading.Lock()
        self._lag = LagSample(lag)
        self._log = log

    def snapshot(self) -> Totals:
        with self._lock:
            return dataclasses.replace(self.totals)

    def batch(
        self,
        batch: Sequence[RawEntry],
        results: Sequence[BatchResult],
        dead: Sequence[tuple[RawEntry, str]],
        started: float,
    ) -> None:
        """``batch`` (every entry read, in stream order) was committed and acknowledged;
        ``started``: its ``time.perf_counter()`` at the start."""
        orders = sum(r.orders_written for r in results)
        fills = sum(r.fills_inserted for r in results)
        duplicates = sum(r.fills_duplicate for r in results)
        with self._lock:
            totals = self.totals
            totals.entries += len(batch)
            totals.orders += orders
            totals.fills += fills
            totals.duplicates += duplicates
            totals.dead_lettered += len(dead)
            totals.batches += 1
        self._log.info(
            "batch_committed",
            lag=self._lag(),
            entries=len(batch),
            orders=orders,
            fills=fills,
            duplicate_fills=duplicates,
            dead_lettered=len(dead),
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
            first_id=batch[0].key.entry_id,
            last_id=batch[-1].key.entry_id,
        )
