"""Position accounting: netting, average cost, realized P&L and round trips, all in USDT.

This module owns the arithmetic of the accounting rules (the spec's ``accounting.md``, rules
1-6): how a fill moves a symbol's position (signed quantity, average entry price, lifetime
realized P&L, trade counters, open/close times), how a mark moves its unrealized P&L, and which
round trips a fill closes. It is pure: no I/O, no clock, no logging. ``consumer/db/`` persists
what it returns (the columns of ``paper_positions``, plus the open round trip and the mark time
in its ``metadata`` JSONB) and ``worker.py`` decides what to feed it.

Determinism contract: every stored value is quantized to 8 dp with ROUND_HALF_EVEN (the scale of
the ``DECIMAL(18,8)`` columns), inputs included, and each fill starts from those stored values
(the open trip's notionals alone are kept exact at 16 dp; see ``OpenTrip``).
So a position folded live, folded batch by batch through the database, or replayed from the
tables is the same row, digit for digit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from typing import Any, Literal

from consumer.values import immutable

__all__ = [
    "Q8",
    "ClosedTrip",
    "Fill",
    "FillOutcome",
    "OpenTrip",
    "Position",
    "Side",
    "apply_fill",
    "apply_fills",
    "apply_mark",
    "new_position",
    "q8",
]

Side = Literal["BUY", "SELL"]
Direction = Literal["LONG", "SHORT"]
CloseReason = Literal["FLAT", "FLIP"]

Q8 = Decimal("0.00000001")
# Notionals x·P of two 8-dp values have at most 16 dp: kept exact at that scale (see OpenTrip).
Q16 = Decimal("0.0000000000000001")
ZERO = Decimal(0)
# Our own context, never the global one (which a library or a test may have changed). 50 digits
# hold any sum or product of DECIMAL(18,8) values exactly, so the only roundings are the explicit
# 8-dp quantizes and the divisions of averages, which are rounded at 50 digits first — far below
# the 8-dp step, so they cannot move the final half-even rounding.
_CTX = Context(prec=50, rounding=ROUND_HALF_EVEN)
# Written into the metadata so a later format change can still read what was stored before it.
METADATA_VERSION = 1


def q8(value: Decimal) -> Decimal:
    """Round ``value`` to the stored scale: 8 dp, half-even."""
    return value.quantize(Q8, rounding=ROUND_HALF_EVEN, context=_CTX)


# --------------------------------------------------------------------------------------- values


@immutable
class Fill:
    """One execution: ``quantity`` > 0 and ``price`` > 0 in USDT, ``fee`` >= 0 in USDT.

    ``time`` is the tz-aware event time. ``apply_fill`` validates and rounds these to 8 dp (the
    scale ``paper_fills`` stores), so a fill re-read from the table gives the same result.
    """

    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal
    fee: Decimal
    time: dt.datetime


@immutable
class OpenTrip:
    """The round trip currently open: what is needed to report it when it closes.

    ``realized_pnl`` and ``fees`` are accumulated during the trip, fees included (rules 4, 6).
    ``entry_*`` sum the opening/increasing fills, ``exit_*`` the reducing/closing ones. The
    notionals are kept exact (16 dp) rather than at 8 dp: rounding each ``x·P`` of a tiny fill
    would lose it (1e-8 @ 1e-8 would add 0 and report an average price of 0). Exact values are
    just as deterministic, and the averages are rounded to 8 dp once, when the trip closes.
    """

    direction: Direction
    opened_at: dt.datetime
    realized_pnl: Decimal
    fees: Decimal
    fills: int
    max_quantity: Decimal
    entry_quantity: Decimal
    entry_notional: Decimal
    exit_quantity: Decimal
    exit_notional: Decimal

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (Decimals as strings, times as ISO-8601) for ``metadata``."""
        return {
            "direction": self.direction,
            "opened_at": self.opened_at.isoformat(),
            "realized_pnl": _decimal_to_json(self.realized_pnl),
            "fees": _decimal_to_json(self.fees),
            "fills": self.fills,
            "max_quantity": _decimal_to_json(self.max_quantity),
            "entry_quantity": _decimal_to_json(self.entry_quantity),
            "entry_notional": _decimal_to_json(self.entry_notional, Q16),
            "exit_quantity": _decimal_to_json(self.exit_quantity),
            "exit_notional": _decimal_to_json(self.exit_notional, Q16),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OpenTrip:
        """Inverse of ``to_dict``; raises ValueError on a malformed entry."""
        direction = data["direction"]
        if direction not in ("LONG", "SHORT"):
            raise ValueError(f"open trip direction must be LONG or SHORT, got {direction!r}")
        return cls(
            direction=direction,
            opened_at=_time_from_json(data["opened_at"]),
            realized_pnl=_decimal_from_json(data["realized_pnl"]),
            fees=_decimal_from_json(data["fees"]),
            fills=int(data["fills"]),
            max_quantity=_decimal_from_json(data["max_quantity"]),
            entry_quantity=_decimal_from_json(data["entry_quantity"]),
            entry_notional=_decimal_from_json(data["entry_notional"], Q16),
            exit_quantity=_decimal_from_json(data["exit_quantity"]),
            exit_notional=_decimal_from_json(data["exit_notional"], Q16),
        )


@immutable
class ClosedTrip:
    """A finished round trip (flat -> ... -> flat, or ended by a flip): one *trade* of rule 6.

    ``realized_pnl`` includes the fees paid during the trip (on a flip, the closing share of the
    flip's fee). It wins when > 0 and loses when < 0; 0 is neither. ``quantity`` is the total
    quantity closed, which equals the total quantity opened.
    """

    symbol: str
    direction: Direction
    opened_at: dt.datetime
    closed_at: dt.datetime
    max_quantity: Decimal
    entry_avg_price: Decimal
    exit_avg_price: Decimal
    quantity: Decimal
    realized_pnl: Decimal
    fees: Decimal
    fills: int
    reason: CloseReason


@immutable
class Position:
    """A symbol's netted position, as stored in ``paper_positions`` (all Decimals at 8 dp).

    ``quantity`` is signed (+ long, - short). ``avg_entry_price`` is 0 until the first fill and
    > 0 ever after: closing keeps the last value (rule 2; the column requires > 0).
    ``realized_pnl`` is lifetime (all trips, fees included). ``current_price`` is the latest mark
    by event time and ``mark_time`` that event's time. ``trip`` is None exactly when flat.
    """

    symbol: str
    quantity: Decimal = ZERO
    avg_entry_price: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    current_price: Decimal | None = None
    mark_time: dt.datetime | None = None
    entry_trades: int = 0
    exit_trades: int = 0
    opened_at: dt.datetime | None = None
    closed_at: dt.datetime | None = None
    trip: OpenTrip | None = None

    @property
    def unrealized_pnl(self) -> Decimal:
        """``q·(current_price - p)``; 0 when flat or when no price is known yet."""
        if self.quantity == 0 or self.current_price is None:
            return ZERO
        with localcontext(_CTX):
            return q8(self.quantity * (self.current_price - self.avg_entry_price))

    @property
    def cost_basis(self) -> Decimal:
        """``q·p``, signed like the quantity (0 when flat)."""
        with localcontext(_CTX):
            return q8(self.quantity * self.avg_entry_price)

    @property
    def market_value(self) -> Decimal | None:
        """``q·current_price``, signed, so unrealized = market value - cost basis; None unpriced."""
        if self.current_price is None:
            return None
        with localcontext(_CTX):
            return q8(self.quantity * self.current_price)

    @property
    def total_pnl(self) -> Decimal:
        """Realized (lifetime) + unrealized: what the generated ``total_pnl_usdt`` holds."""
        with localcontext(_CTX):
            return self.realized_pnl + self.unrealized_pnl

    def to_metadata(self) -> dict[str, Any]:
        """What the columns cannot hold (the open trip and the mark time), JSON-safe.

        The store writes it into ``paper_positions.metadata``; ``from_metadata``/``from_row``
        read it back exactly.
        """
        return {
            "accounting_version": METADATA_VERSION,
            "mark_time": None if self.mark_time is None else self.mark_time.isoformat(),
            "trip": None if self.trip is None else self.trip.to_dict(),
        }

    def to_row(self) -> dict[str, Any]:
        """The ``paper_positions`` columns this module owns (``total_pnl_usdt`` is generated)."""
        return {
            "symbol": self.symbol,
            "quantity": self.quantity,
            "avg_entry_price": self.avg_entry_price,
            "current_price": self.current_price,
            "unrealized_pnl_usdt": self.unrealized_pnl,
            "realized_pnl_usdt": self.realized_pnl,
            "cost_basis_usdt": self.cost_basis,
            "market_value_usdt": self.market_value,
            "entry_trades": self.entry_trades,
            "exit_trades": self.exit_trades,
            "opened_at": self.opened_at,
            "closed_at": self.closed_at,
            "metadata": self.to_metadata(),
        }

    @classmethod
    def from_metadata(
        cls,
        metadata: Mapping[str, Any] | None,
        *,
        symbol: str,
        quantity: Decimal,
        avg_entry_price: Decimal,
        realized_pnl: Decimal,
        current_price: Decimal | None = None,
        entry_trades: int = 0,
        exit_trades: int = 0,
        opened_at: dt.datetime | None = None,
        closed_at: dt.datetime | None = None,
    ) -> Position:
        """Rebuild a position from its column values plus the ``to_metadata`` dict.

        Missing metadata (None, or keys absent) means no mark time and no recorded trip; an open
        position without a trip gets one rebuilt from the columns at its next fill.
        """
        metadata = metadata or {}
        mark_time = metadata.get("mark_time")
        trip = metadata.get("trip")
        return cls(
            symbol=symbol,
            quantity=q8(Decimal(quantity)),
            avg_entry_price=q8(Decimal(avg_entry_price)),
            realized_pnl=q8(Decimal(realized_pnl)),
            current_price=None if current_price is None else q8(Decimal(current_price)),
            mark_time=None if mark_time is None else _time_from_json(mark_time),
            entry_trades=entry_trades,
            exit_trades=exit_trades,
            opened_at=opened_at,
            closed_at=closed_at,
            trip=None if trip is None else OpenTrip.from_dict(trip),
        )

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Position:
        """Rebuild from a ``paper_positions`` row mapping (column names as keys; extras ignored)."""
        return cls.from_metadata(
            row.get("metadata"),
            symbol=row["symbol"],
            quantity=row["quantity"],
            avg_entry_price=row["avg_entry_price"],
            realized_pnl=row["realized_pnl_usdt"],
            current_price=row.get("current_price"),
            entry_trades=row.get("entry_trades", 0),
            exit_trades=row.get("exit_trades", 0),
            opened_at=row.get("opened_at"),
            closed_at=row.get("closed_at"),
        )


@immutable
class FillOutcome:
    """The result of one fill: the new position, the change of its realized P&L (fees included)
    and the round trips the fill closed (at most one; a flip closes one and opens another)."""

    position: Position
    realized_delta: Decimal
    closed_trips: tuple[ClosedTrip, ...]


# ------------------------------------------------------------------------------------ public API


def new_position(symbol: str) -> Position:
    """A symbol that has never traded: flat, no price, no trip."""
    return Position(symbol=symbol)


def apply_fill(position: Position, fill: Fill) -> FillOutcome:
    """Apply one fill (rules 1-4) and record its price as a mark (rule 5).

    Raises ValueError when quantity <= 0, price <= 0 or fee < 0 (after rounding to 8 dp), when
    a value is not finite, the side is unknown, the time is naive, or the symbol differs. The fill
    price replaces ``current_price`` only if the fill is not older than the current mark.
    """
    fill = _validated(position, fill)
    with localcontext(_CTX):
        signed = fill.quantity if fill.side == "BUY" else -fill.quantity
        held = position.quantity
        if held == 0 or (held > 0) == (signed > 0):
            outcome = _open_or_increase(position, fill)
        elif fill.quantity <= abs(held):
            outcome = _reduce(position, fill)
        else:
            outcome = _flip(position, fill)
    marked = _marked(outcome.position, fill.price, fill.time)
    return FillOutcome(
        position=marked, realized_delta=outcome.realized_delta, closed_trips=outcome.closed_trips
    )


def apply_mark(position: Position, price: Decimal, time: dt.datetime) -> Position:
    """Record a mark price (rule 5) unless it is older than the mark already held.

    Marks and fills come from different streams, read in batches that interleave arbitrarily;
    keeping the newest *event time* makes the result independent of that interleaving. On equal
    times the later call wins. Raises ValueError for a price <= 0 or a naive time.
    """
    price = _checked_price(price)
    _check_aware(time)
    return _marked(position, price, time)


def apply_fills(
    position: Position, fills: Iterable[Fill]
) -> tuple[Position, list[ClosedTrip], Decimal]:
    """Fold ``fills`` in order: the final position, every trip closed, the total realized delta."""
    closed: list[ClosedTrip] = []
    realized = ZERO
    for fill in fills:
        outcome = apply_fill(position, fill)
        position = outcome.position
        closed.extend(outcome.closed_trips)
        with localcontext(_CTX):
            realized += outcome.realized_delta
    return position, closed, realized


# ------------------------------------------------------------------------------------- the rules
# The helpers below run inside ``localcontext(_CTX)`` (entered by ``apply_fill``) and receive a
# validated fill whose values are already at 8 dp.


def _open_or_increase(position: Position, fill: Fill) -> FillOutcome:
    """Rule 1 (+ rule 4): average the price in; a new trip starts when the position was flat."""
    held, x = abs(position.quantity), fill.quantity
    quantity = position.quantity + (x if fill.side == "BUY" else -x)
    opened_at = fill.time if held == 0 else position.opened_at
    if held == 0:
        trip = _new_trip(_direction(fill), fill, x, fill.fee)
    else:
        trip = _trip_entry(_current_trip(position), fill, abs(quantity))
    new = Position(
        symbol=position.symbol,
        quantity=quantity,
        avg_entry_price=q8((held * position.avg_entry_price + x * fill.price) / (held + x)),
        realized_pnl=position.realized_pnl - fill.fee,
        current_price=position.current_price,
        mark_time=position.mark_time,
        entry_trades=position.entry_trades + 1,
        exit_trades=position.exit_trades,
        opened_at=opened_at,
        closed_at=None,
        trip=trip,
    )
    return FillOutcome(position=new, realized_delta=-fill.fee, closed_trips=())


def _reduce(position: Position, fill: Fill) -> FillOutcome:
    """Rule 2 (+ rule 4): realize ``x·(P - p)·sign(q)``; at 0 the trip ends, ``p`` is kept."""
    gross = _gross_pnl(position, fill.quantity, fill.price)
    trip = _trip_exit(_current_trip(position), fill.quantity, fill.price, gross, fill.fee)
    quantity = position.quantity + (fill.quantity if fill.side == "BUY" else -fill.quantity)
    closed: tuple[ClosedTrip, ...] = ()
    if quantity == 0:
        closed = (_closed(position.symbol, trip, fill.time, "FLAT"),)
    new = Position(
        symbol=position.symbol,
        quantity=quantity,
        avg_entry_price=position.avg_entry_price,
        realized_pnl=position.realized_pnl + gross - fill.fee,
        current_price=position.current_price,
        mark_time=position.mark_time,
        entry_trades=position.entry_trades,
        exit_trades=position.exit_trades + 1,
        opened_at=position.opened_at,
        closed_at=fill.time if quantity == 0 else position.closed_at,
        trip=None if quantity == 0 else trip,
    )
    return FillOutcome(position=new, realized_delta=gross - fill.fee, closed_trips=closed)


def _flip(position: Position, fill: Fill) -> FillOutcome:
    """Rule 3 (+ rule 4): close ``|q|`` (trip ends, FLIP), open the rest at ``P`` as a new trip.

    The fee is split pro rata (as Nautilus Trader does): ``f·|q|/x`` rounded to 8 dp to the trip
    that closes, the exact remainder to the trip that opens, so the two shares sum to ``f`` and
    lifetime realized P&L stays equal to the sum over trips.
    """
    closing = abs(position.quantity)
    rest = fill.quantity - closing
    gross = _gross_pnl(position, closing, fill.price)
    closing_fee = q8(fill.fee * closing / fill.quantity)
    ended = _trip_exit(_current_trip(position), closing, fill.price, gross, closing_fee)
    new = Position(
        symbol=position.symbol,
        quantity=rest if fill.side == "BUY" else -rest,
        avg_entry_price=fill.price,
        realized_pnl=position.realized_pnl + gross - fill.fee,
        current_price=position.current_price,
        mark_time=position.mark_time,
        entry_trades=position.entry_trades + 1,
        exit_trades=position.exit_trades + 1,
        opened_at=fill.time,
        closed_at=None,
        trip=_new_trip(_direction(fill), fill, rest, fill.fee - closing_fee),
    )
    return FillOutcome(
        position=new,
        realized_delta=gross - fill.fee,
        closed_trips=(_closed(position.symbol, ended, fill.time, "FLIP"),),
    )


def _gross_pnl(position: Position, closed_quantity: Decimal, price: Decimal) -> Decimal:
    """P&L before fees of closing ``closed_quantity`` at ``price``, rounded once to 8 dp.

    Rounded once and then added both to the position and to the trip, so lifetime realized P&L
    equals the sum over trips exactly (rounding each sum separately could differ by 1e-8).
    """
    sign = 1 if position.quantity > 0 else -1
    return q8(closed_quantity * (price - position.avg_entry_price) * sign)


# ------------------------------------------------------------------------------------ round trips


def _direction(fill: Fill) -> Direction:
    return "LONG" if fill.side == "BUY" else "SHORT"


def _new_trip(direction: Direction, fill: Fill, quantity: Decimal, fee: Decimal) -> OpenTrip:
    """A trip opened by ``fill`` with ``quantity`` (all of a fill, or a flip's remainder)."""
    return OpenTrip(
        direction=direction,
        opened_at=fill.time,
        realized_pnl=-fee,
        fees=fee,
        fills=1,
        max_quantity=quantity,
        entry_quantity=quantity,
        entry_notional=quantity * fill.price,
        exit_quantity=ZERO,
        exit_notional=ZERO,
    )


def _trip_entry(trip: OpenTrip, fill: Fill, new_abs_quantity: Decimal) -> OpenTrip:
    """The trip after an increasing fill."""
    return OpenTrip(
        direction=trip.direction,
        opened_at=trip.opened_at,
        realized_pnl=trip.realized_pnl - fill.fee,
        fees=trip.fees + fill.fee,
        fills=trip.fills + 1,
        max_quantity=max(trip.max_quantity, new_abs_quantity),
        entry_quantity=trip.entry_quantity + fill.quantity,
        entry_notional=trip.entry_notional + fill.quantity * fill.price,
        exit_quantity=trip.exit_quantity,
        exit_notional=trip.exit_notional,
    )


def _trip_exit(
    trip: OpenTrip, quantity: Decimal, price: Decimal, gross: Decimal, fee: Decimal
) -> OpenTrip:
    """The trip after reducing/closing ``quantity`` at ``price`` (``fee``: this trip's share)."""
    return OpenTrip(
        direction=trip.direction,
        opened_at=trip.opened_at,
        realized_pnl=trip.realized_pnl + gross - fee,
        fees=trip.fees + fee,
        fills=trip.fills + 1,
        max_quantity=trip.max_quantity,
        entry_quantity=trip.entry_quantity,
        entry_notional=trip.entry_notional,
        exit_quantity=trip.exit_quantity + quantity,
        exit_notional=trip.exit_notional + quantity * price,
    )


def _closed(symbol: str, trip: OpenTrip, closed_at: dt.datetime, reason: CloseReason) -> ClosedTrip:
    return ClosedTrip(
        symbol=symbol,
        direction=trip.direction,
        opened_at=trip.opened_at,
        closed_at=closed_at,
        max_quantity=trip.max_quantity,
        entry_avg_price=q8(trip.entry_notional / trip.entry_quantity),
        exit_avg_price=q8(trip.exit_notional / trip.exit_quantity),
        quantity=trip.exit_quantity,
        realized_pnl=trip.realized_pnl,
        fees=trip.fees,
        fills=trip.fills,
        reason=reason,
    )


def _current_trip(position: Position) -> OpenTrip:
    """The open trip; rebuilt from the columns if an open row carries none (no metadata).

    Only a row written outside this module can lack it. The rebuilt trip knows the position as
    one entry at ``p`` and none of the P&L realized before, which is the best the row can tell.
    """
    if position.trip is not None:
        return position.trip
    if position.opened_at is None:  # paper_positions.opened_at is NOT NULL: a corrupt position
        raise ValueError(f"open position {position.symbol!r} has no opened_at")
    held = abs(position.quantity)
    return OpenTrip(
        direction="LONG" if position.quantity > 0 else "SHORT",
        opened_at=position.opened_at,
        realized_pnl=ZERO,
        fees=ZERO,
        fills=0,
        max_quantity=held,
        entry_quantity=held,
        entry_notional=held * position.avg_entry_price,
        exit_quantity=ZERO,
        exit_notional=ZERO,
    )


# ------------------------------------------------------------------------------ marks and checks


def _marked(position: Position, price: Decimal, time: dt.datetime) -> Position:
    """Take ``price`` as the current price unless it is older than the mark held (ties: take)."""
    if position.mark_time is not None and time < position.mark_time:
        return position
    return Position(
        symbol=position.symbol,
        quantity=position.quantity,
        avg_entry_price=position.avg_entry_price,
        realized_pnl=position.realized_pnl,
        current_price=price,
        mark_time=time,
        entry_trades=position.entry_trades,
        exit_trades=position.exit_trades,
        opened_at=position.opened_at,
        closed_at=position.closed_at,
        trip=position.trip,
    )


def _validated(position: Position, fill: Fill) -> Fill:
    """``fill`` with its values rounded to 8 dp, or ValueError (see ``apply_fill``)."""
    if fill.symbol != position.symbol:
        raise ValueError(f"fill for {fill.symbol!r} applied to the {position.symbol!r} position")
    if fill.side not in ("BUY", "SELL"):
        raise ValueError(f"fill side must be BUY or SELL, got {fill.side!r}")
    _check_aware(fill.time)
    quantity = _finite(fill.quantity, "quantity")
    fee = _finite(fill.fee, "fee")
    if quantity <= 0:
        raise ValueError(f"fill quantity must be > 0 at 8 dp, got {fill.quantity}")
    if fee < 0:
        raise ValueError(f"fill fee must be >= 0, got {fill.fee}")
    return Fill(
        symbol=fill.symbol,
        side=fill.side,
        quantity=quantity,
        price=_checked_price(fill.price),
        fee=fee,
        time=fill.time,
    )


def _checked_price(price: Decimal) -> Decimal:
    rounded = _finite(price, "price")
    if rounded <= 0:
        raise ValueError(f"price must be > 0 at 8 dp, got {price}")
    return rounded


def _finite(value: Decimal, name: str) -> Decimal:
    """``value`` rounded to 8 dp; ValueError for NaN/Infinity (and for non-Decimal input)."""
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValueError(f"{name} must be a finite Decimal, got {value!r}")
    return q8(value)


def _check_aware(time: dt.datetime) -> None:
    # Comparing a naive and an aware time raises TypeError deep inside; say it at the door.
    if time.tzinfo is None or time.utcoffset() is None:
        raise ValueError(f"event time must be timezone-aware, got {time!r}")


def _decimal_to_json(value: Decimal, scale: Decimal = Q8) -> str:
    # Fixed point at a fixed scale ("0.00000000", never "0E-8"): one spelling per value, so the
    # metadata written live and after a reload are the same text, not just the same numbers.
    return format(value.quantize(scale, rounding=ROUND_HALF_EVEN, context=_CTX), "f")


def _decimal_from_json(value: object, scale: Decimal = Q8) -> Decimal:
    # Stored as strings; a float here would mean someone wrote binary floats into the metadata.
    if isinstance(value, str | int) and not isinstance(value, bool):
        return Decimal(value).quantize(scale, rounding=ROUND_HALF_EVEN, context=_CTX)
    raise ValueError(f"expected a decimal string in position metadata, got {value!r}")


def _time_from_json(value: object) -> dt.datetime:
    if isinstance(value, str):
        time = dt.datetime.fromisoformat(value)
        _check_aware(time)
        return time
    raise ValueError(f"expected an ISO-8601 time in position metadata, got {value!r}")
