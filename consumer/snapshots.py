"""When to take P&L snapshots: hourly and daily boundaries crossed in *event time*. Pure.

Each symbol has its own event clock, the newest event time of that symbol
(``paper_symbol_clocks``, migration 007). An event whose time lies past one or more UTC hour
boundaries (and midnights) by its symbol's clock crosses them: the rows for those boundaries
exist from then on, and that symbol counts in them with its state *before* that event (a
"part"). A row's value is the sum over symbols of: the part whose range holds the boundary, else
the symbol's current state if its clock is before the boundary, else nothing (its first event
was at or after it). A symbol's events all go to one shard in stream order, so the rows are the
same whatever the shard count, batch cuts, worker timing or crash points; the store recomputes
the rows a batch may have changed (``plan_by_symbol``'s ``changed_after``; docs/scaling.md "P&L
snapshots" has the definition and the concurrency argument). When the streams are idle, the
wall clock crosses boundaries instead (``Store.tick``), following the newest event time of any
symbol, and rests *on* the last boundary.

A jump over a long gap (a weekend) makes every hourly row in between, up to
``MAX_HOURLY_PER_JUMP`` (and ``MAX_DAILY_PER_JUMP``): a timestamp far in the future must not
turn into millions of rows. Only the most recent boundaries of such a jump are kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Generic, Literal, TypeVar

SnapshotType = Literal["HOURLY", "DAILY", "MANUAL"]
Boundary = tuple[datetime, SnapshotType]
T = TypeVar("T")

MAX_HOURLY_PER_JUMP = 24 * 7
MAX_DAILY_PER_JUMP = 31
HOUR = timedelta(hours=1)


def _floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def crossed(clock: datetime | None, moment: datetime) -> list[Boundary]:
    """Boundaries ``b`` with ``clock < b <= moment``, oldest first (HOURLY before DAILY)."""
    if clock is None or moment <= clock:
        return []
    last = _floor_hour(moment)
    first = _floor_hour(clock) + HOUR
    if last < first:
        return []
    hours = int((last - first) / HOUR) + 1
    skip = max(0, hours - MAX_HOURLY_PER_JUMP)
    boundaries: list[Boundary] = []
    daily: list[datetime] = []
    for k in range(hours):
        moment_k = first + k * HOUR
        if moment_k.hour == 0:
            daily.append(moment_k)
        if k >= skip:
            boundaries.append((moment_k, "HOURLY"))
    keep_daily = set(daily[-MAX_DAILY_PER_JUMP:])
    out: list[Boundary] = []
    for moment_k, kind in boundaries:
        out.append((moment_k, kind))
        if moment_k in keep_daily:
            out.append((moment_k, "DAILY"))
            keep_daily.discard(moment_k)
    # Midnights skipped by the hourly cap but within the daily cap still get their DAILY row.
    out.extend((d, "DAILY") for d in sorted(keep_daily))
    out.sort(key=lambda b: (b[0], b[1] == "DAILY"))
    return out


IDLE_TRACKING_WINDOW = timedelta(hours=2)


def idle_plan(clock: datetime | None, now: datetime) -> tuple[list[Boundary], datetime | None]:
    """Boundaries the wall clock crossed while idle, and where the clock then rests.

    Only while the clock follows the wall clock (within ``IDLE_TRACKING_WINDOW``): a worker
    working through an old backlog, or restarted after a long stop, leaves the boundaries to
    the next event, exactly as a replay of the same stream would.
    """
    if clock is None or now - clock > IDLE_TRACKING_WINDOW:
        return [], clock
    boundaries = crossed(clock, now)
    if not boundaries:
        return [], clock
    return boundaries, boundaries[-1][0]


@dataclass(frozen=True)
class Part:
    """Symbol ``symbol``'s state *before* a crossing event, for boundaries in (after, until]."""

    symbol: str
    after: datetime
    until: datetime


@dataclass
class SymbolSegment(Generic[T]):
    """Parts to write of the state as it stands, then items to apply."""

    parts_before: list[Part] = field(default_factory=list)
    items: list[T] = field(default_factory=list)


@dataclass
class SymbolPlan(Generic[T]):
    """How to write one batch with per-symbol clocks (``plan_by_symbol``)."""

    segments: list[SymbolSegment[T]]
    clocks: dict[str, datetime]
    boundaries: list[Boundary]
    changed_after: datetime | None


def plan_by_symbol(
    times: Sequence[tuple[T, str | None, datetime]], clocks: dict[str, datetime]
) -> SymbolPlan[T]:
    """Cut ``times`` (items with their symbol and event time, in stream order) where an event
    crosses boundaries by its symbol's clock ``clocks[symbol]`` (absent: no event yet).

    A crossing event of ``s`` needs a part: the state of ``s`` before it. The batch is cut there
    only if the current segment already holds an item of ``s``; otherwise the part is written
    before the current segment (the other symbols' items do not touch ``s``). Returns the
    segments, the symbols' new clocks (only those touched), the boundaries crossed (rows to
    create, sorted) and ``changed_after``: a snapshot row at B can change value only if
    B > changed_after. (An event of ``s`` changes ``state_s(B)`` exactly for B > the clock of
    ``s`` after it — for B at or below it, the part written at the crossing holds the state
    before — and the clock after the first event of ``s`` in the batch is the smallest.)
    Items without a symbol cross nothing."""
    clocks = dict(clocks)
    before = dict(clocks)
    segments: list[SymbolSegment[T]] = [SymbolSegment()]
    in_segment: set[str] = set()
    boundaries: set[Boundary] = set()
    first_after: dict[str, datetime] = {}
    for item, symbol, moment in times:
        if symbol is not None:
            clock = clocks.get(symbol)
            crossings = crossed(clock, moment)
            if crossings and clock is not None:
                if symbol in in_segment:
                    segments.append(SymbolSegment())
                    in_segment = set()
                segments[-1].parts_before.append(Part(symbol, clock, moment))
                boundaries.update(crossings)
            if clock is None or moment > clock:
                clocks[symbol] = moment
            first_after.setdefault(symbol, clocks[symbol])
            in_segment.add(symbol)
        segments[-1].items.append(item)
    touched = {s: clocks[s] for s in first_after if before.get(s) != clocks[s] or s not in before}
    changed_after = min(first_after.values()) if first_after else None
    return SymbolPlan(
        segments=segments,
        clocks=touched,
        boundaries=sorted(boundaries, key=lambda b: (b[0], b[1] == "DAILY")),
        changed_after=changed_after,
    )
