"""An independent, plain reference for HOURLY/DAILY P&L snapshots with per-symbol clocks.

Written from the definition (docs/scaling.md "P&L snapshots"), not from consumer.snapshots:

    snapshot(B) = sum over symbols s of state_s(B)
    state_s(B)  = the state of s after the events of s (in its stream order) that come before
                  its first event at or after B; nothing if that is its very first event
                  (or it has none); all of them if none is at or after B.

A row (B, HOURLY) exists when an event of some symbol s with an earlier event crosses B by the
clock of s (the newest time among the earlier events of s is < B <= the event's time); DAILY
too when B is a midnight. The state modelled here is what fills alone determine exactly:
traded volume, fees and the symbols present (marks move clocks only). It only takes each
symbol's own sequence, so any interleaving of the symbols gives the same answer by
construction. No caps: keep jumps < 7 days.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class RefFillAt:
    time: datetime
    quantity: Decimal
    price: Decimal
    fee: Decimal


@dataclass(frozen=True)
class RefMarkAt:
    """A mark: it moves the symbol's clock; its effect on unrealized P&L is not modelled here."""

    time: datetime


Event = RefFillAt | RefMarkAt


@dataclass(frozen=True)
class RefSnapshot:
    volume: Decimal
    fees: Decimal
    symbol_volume: dict[str, Decimal]


def _hours_in(after: datetime, until: datetime) -> list[datetime]:
    """Whole UTC hours h with after < h <= until."""
    h = after.replace(minute=0, second=0, microsecond=0) + HOUR
    out = []
    while h <= until:
        out.append(h)
        h += HOUR
    return out


def rows(events: Mapping[str, Sequence[Event]]) -> set[tuple[datetime, str]]:
    out: set[tuple[datetime, str]] = set()
    for fills in events.values():
        clock: datetime | None = None
        for fill in fills:
            if clock is not None:
                for h in _hours_in(clock, fill.time):
                    out.add((h, "HOURLY"))
                    if h.hour == 0:
                        out.add((h, "DAILY"))
            clock = fill.time if clock is None else max(clock, fill.time)
    return out


def snapshot(events: Mapping[str, Sequence[Event]], boundary: datetime) -> RefSnapshot:
    volume, fees, per_symbol = Decimal(0), Decimal(0), {}
    for symbol, fills in events.items():
        cut = next((k for k, f in enumerate(fills) if f.time >= boundary), len(fills))
        if cut == 0:
            continue
        done = [f for f in fills[:cut] if isinstance(f, RefFillAt)]
        if not done:  # marks alone make no position
            continue
        v = sum((f.quantity * f.price for f in done), Decimal(0))
        volume += v
        fees += sum((f.fee for f in done), Decimal(0))
        per_symbol[symbol] = v
    return RefSnapshot(volume, fees, per_symbol)


def all_snapshots(
    events: Mapping[str, Sequence[Event]],
) -> dict[tuple[datetime, str], RefSnapshot]:
    return {row: snapshot(events, row[0]) for row in rows(events)}
