"""An independent, deliberately plain reference for position accounting (accounting.md).

Written from the spec alone, never from ``consumer.accounting``: per symbol, fills in publish
(stream) order, average cost, fees realized on every fill, a flip closes ``|q|`` and opens the
rest at the fill price, every stored value rounded to 8 dp half-even after each fill. Tests
compare the worker's ``paper_positions`` with what this computes from the published events.

One convention the spec leaves open: the P&L a reducing fill realizes, ``x·(P − p)·sign(q)``, is
rounded to 8 dp on its own before it is added to R (so lifetime R equals the sum of the round
trips' P&L, rule 6). Rounding only the new total ``R + x·(P − p)·sign(q) − f`` instead differs by
1e-8 when that P&L ends in an exact half (…5 at the 9th decimal), as random trades often do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext

STEP = Decimal("0.00000001")
_CTX = Context(prec=60, rounding=ROUND_HALF_EVEN)


def q8(value: Decimal) -> Decimal:
    return value.quantize(STEP, rounding=ROUND_HALF_EVEN, context=_CTX)


@dataclass(frozen=True)
class RefFill:
    """One published fill: ``side`` is BUY or SELL; every number already at 8 dp."""

    fill_id: str
    symbol: str
    side: str
    quantity: Decimal
    price: Decimal
    fee: Decimal


@dataclass
class RefPosition:
    quantity: Decimal = Decimal(0)
    avg_entry_price: Decimal = Decimal(0)
    realized_pnl: Decimal = Decimal(0)

    def as_tuple(self) -> tuple[Decimal, Decimal, Decimal]:
        return (self.quantity, self.avg_entry_price, self.realized_pnl)


def apply(pos: RefPosition, fill: RefFill) -> None:
    """Rules 1-4 of accounting.md for one fill (mutates ``pos``)."""
    with localcontext(_CTX):
        q, p, r = pos.quantity, pos.avg_entry_price, pos.realized_pnl
        x, price, fee = q8(fill.quantity), q8(fill.price), q8(fill.fee)
        d = x if fill.side == "BUY" else -x
        if q == 0 or (q > 0) == (d > 0):  # rule 1: open or increase
            p = (abs(q) * p + x * price) / (abs(q) + x)
            q = q + d
        elif x <= abs(q):  # rule 2: reduce or close; p keeps its value
            r = r + q8(x * (price - p) * (1 if q > 0 else -1))
            q = q + d
        else:  # rule 3: flip = close |q|, open the rest at the fill price
            r = r + q8(abs(q) * (price - p) * (1 if q > 0 else -1))
            q = q + d
            p = price
        r = r - fee  # rule 4: every fill's whole fee is realized
        pos.quantity, pos.avg_entry_price, pos.realized_pnl = q8(q), q8(p), q8(r)


def positions(fills: Iterable[RefFill]) -> dict[str, tuple[Decimal, Decimal, Decimal]]:
    """Final (quantity, avg_entry_price, realized_pnl_usdt) per symbol.

    ``fills`` in stream order; a fill id seen before (a publisher retry) changes nothing.
    """
    seen: set[str] = set()
    book: dict[str, RefPosition] = {}
    for fill in fills:
        if fill.fill_id in seen:
            continue
        seen.add(fill.fill_id)
        apply(book.setdefault(fill.symbol, RefPosition()), fill)
    return {symbol: pos.as_tuple() for symbol, pos in book.items()}
