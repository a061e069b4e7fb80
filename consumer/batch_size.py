"""Adaptive batch sizing: how many entries the next batch may hold (issue 20). Pure.

Caught up, a batch is what has arrived when the worker reads (small: latency); behind, bigger
batches spread each transaction's fixed costs over more entries. So the limit the reader cuts
batches at moves with the backlog:

- it starts at ``batch_min_entries`` and **doubles** after each batch whose reads came back
  full (a stream filled its share of the count, or the batch was cut at the limit: there is
  more to read), up to ``batch_max_entries``;
- it **halves** after a batch whose reads did not come back full, back down to
  ``batch_min_entries`` (``min(batch_min_entries, batch_max_entries)``: a small maximum pins
  the size, as before);
- **bytes**: the limit times the mean size of the last batch's entries (field names and
  values, estimated from a sample) stays within ``batch_max_bytes``;
- **time**: it grows only while a batch took at most half the time budget (the doubled one
  should still fit) and halves after one that took longer than the budget. The budget is
  ``batch_max_duration_ms``, and at most a fifth of ``lease_ttl_s``: a batch holds its lease
  row FOR SHARE until COMMIT, and the lease renewal waits for it.

The sizing changes only where batches are cut, never what a batch promises (one transaction,
ack after commit, stream order): results do not depend on batch boundaries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from consumer.records import RawEntry
from consumer.settings import Settings

SAMPLE = 64
"""How many entries (evenly spread) the mean entry size is estimated from."""


def entry_bytes(entry: RawEntry) -> int:
    """Characters of an entry's field names and values (bytes, for ASCII)."""
    fields = entry.fields
    return sum(map(len, fields)) + sum(map(len, fields.values()))


def mean_entry_bytes(batch: Sequence[RawEntry]) -> float:
    """The mean ``entry_bytes`` of ``batch``, from at most ``SAMPLE`` entries spread over it."""
    if not batch:
        return 0.0
    step = max(1, len(batch) // SAMPLE)
    sample = batch[::step]
    return sum(map(entry_bytes, sample)) / len(sample)


def time_budget_s(settings: Settings) -> float:
    """How long a batch may take before the sizing backs off (see the module docstring)."""
    return min(settings.batch_max_duration_ms / 1000, settings.lease_ttl_s / 5)


@dataclass
class BatchSizer:
    """The reader's entry limit, adjusted after every batch (see the module docstring)."""

    floor: int
    cap: int
    max_bytes: int
    budget_s: float
    limit: int = field(init=False)

    def __post_init__(self) -> None:
        self.floor = max(1, min(self.floor, self.cap))
        self.limit = self.floor

    @classmethod
    def from_settings(cls, settings: Settings) -> BatchSizer:
        return cls(
            floor=settings.batch_min_entries,
            cap=settings.batch_max_entries,
            max_bytes=settings.batch_max_bytes,
            budget_s=time_budget_s(settings),
        )

    def after(self, *, full: bool, seconds: float, mean_bytes: float) -> int:
        """The limit for the next batch, after one whose reads came back ``full`` (or not),
        that took ``seconds`` to process and whose entries held ``mean_bytes`` each."""
        limit = self.limit
        if not full or seconds > self.budget_s:
            limit = max(self.floor, limit // 2)
        elif seconds * 2 <= self.budget_s:
            limit = min(self.cap, limit * 2)
        if mean_bytes > 0:
            limit = min(limit, max(1, int(self.max_bytes // mean_bytes)))
        self.limit = limit
        return limit
