"""Poison by evidence: which entries of a batch are tried together, which alone, which set aside.

Redis counts deliveries, not attempts. Every read of an entry counts — the batch being written,
but also the batches read ahead of it, and every re-read of the pending list after a restart or
a failed read. A worker killed again and again soon after its start (a crash loop, an OOM
killer, the 20 SIGKILLs of ``bench/chaos.py``) re-reads far more than it commits, so valid
entries pass any delivery limit without ever having been attempted (chaos: 1,471 valid entries
dead-lettered at 6 deliveries, lost to the accounting). The delivery count therefore only makes
an entry a *suspect* (``deliveries > max_deliveries``); what sets it aside is evidence that
processing it stops the worker:

- an attempt at suspects is recorded in Redis before it begins (``RedisStream.begin_trial``)
  and forgotten once its batch is committed and acknowledged (``end_trial``); a recorded
  attempt still there at the next delivery did not finish;
- a suspect with no unfinished attempt is tried with the entries around it, as usual;
- after one unfinished attempt it is tried alone (the batch is cut around it, stream order
  kept), so the entries beside a real poison entry are not held hostage by it;
- after ``ALONE_ATTEMPTS`` unfinished attempts alone it is poison: dead-lettered untried.

An entry that fails with an error (a parse error, a refusal by PostgreSQL) is dead-lettered
with that reason at once, as always; this is only for failures no ``except`` sees.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from consumer.records import EntryKey, RawEntry

ALONE_ATTEMPTS = 2
"""Unfinished attempts of a suspect alone after which it is poison."""


@dataclass(frozen=True, slots=True)
class Segment:
    """Entries processed as one batch, in stream order. ``suspects``: those whose attempt is
    recorded first. ``alone``: a suspect tried alone. ``poison``: the reason to dead-letter the
    single entry untried."""

    entries: list[RawEntry]
    suspects: list[EntryKey] = field(default_factory=list)
    alone: bool = False
    poison: str | None = None


def suspects(batch: Sequence[RawEntry], max_deliveries: int) -> list[EntryKey]:
    """The entries of ``batch`` delivered more than ``max_deliveries`` times."""
    return [entry.key for entry in batch if entry.deliveries > max_deliveries]


def plan(
    batch: Sequence[RawEntry], max_deliveries: int, unfinished: Mapping[EntryKey, int]
) -> list[Segment]:
    """Cut ``batch`` (in stream order) into the segments to process one after the other:
    runs of entries tried together, suspects tried alone, poison set aside (see the module
    docstring). ``unfinished``: each suspect's attempts begun and never finished."""
    segments: list[Segment] = []
    run: list[RawEntry] = []
    run_suspects: list[EntryKey] = []

    def close_run() -> None:
        nonlocal run, run_suspects
        if run:
            segments.append(Segment(run, run_suspects))
        run, run_suspects = [], []

    for entry in batch:
        if entry.deliveries <= max_deliveries:
            run.append(entry)
            continue
        tried = unfinished.get(entry.key, 0)
        if tried == 0:
            run.append(entry)
            run_suspects.append(entry.key)
            continue
        close_run()
        alone = tried - 1  # the first unfinished attempt was with other entries
        if alone < ALONE_ATTEMPTS:
            segments.append(Segment([entry], [entry.key], alone=True))
        else:
            reason = poison_reason(entry, max_deliveries)
            segments.append(Segment([entry], [entry.key], poison=reason))
    close_run()
    return segments


def poison_reason(entry: RawEntry, max_deliveries: int) -> str:
    return (
        f"delivered {entry.deliveries} times without being committed (limit {max_deliveries}), "
        f"and the worker stopped each of the {ALONE_ATTEMPTS} times it processed the entry "
        "alone; set aside as poison"
    )
