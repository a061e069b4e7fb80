"""When to take P&L snapshots: hourly and daily boundaries crossed in *event time*. Pure.

The store keeps one clock, the newest event time it has processed (``paper_pnl_clock``). An
event whose time lies past one or more UTC hour boundaries (and midnights) crosses them: the
snapshots for those boundaries are taken from the state *before* that event is applied. So a
batch is cut into segments at its crossing points, and because crossings depend only on the
sequence of event times, live consumption and a replay of the same stream — whatever their
batch boundaries — take the same snapshots of the same states. When the streams are idle, the
wall clock crosses boundaries instead (``Store.tick``), and the clock then rests *on* the last
boundary, so a late event stamped just before it does not cross it again.

A jump over a long gap (a weekend) takes every hourly snapshot in between, up to
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


@dataclass
class Segment(Generic[T]):
    """Items to apply, then the snapshots to take of the state they leave."""

    items: list[T] = field(default_factory=list)
    snapshots_after: list[Boundary] = field(default_factory=list)


def plan(
    times: Sequence[tuple[T, datetime]], clock: datetime | None
) -> tuple[list[Segment[T]], datetime | None]:
    """Cut ``times`` (items with their event times, in stream order) at crossing points.

    Returns the segments and the new clock (the newest event time seen, or the old clock).
    """
    segments: list[Segment[T]] = [Segment()]
    for item, moment in times:
        boundaries = crossed(clock, moment)
        if boundaries:
            segments[-1].snapshots_after.extend(boundaries)
            segments.append(Segment())
        segments[-1].items.append(item)
        if clock is None or moment > clock:
            clock = moment
    return segments, clock


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
