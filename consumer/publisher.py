"""A synthetic paper-trading bot: publishes contract events (events.md) with XADD.

It stands in for the real bot in ``paper-consumer publish`` and ``demo``, and in tests. Several
symbols follow seeded random walks; orders move PENDING → SUBMITTED → (PARTIALLY_FILLED) → FILLED
with 1-3 fills each, a few are REJECTED or CANCELLED (some after a partial fill); marks go to the
mark stream; every fill pays the 0.1 % taker fee. A configurable share of entries is malformed on
purpose (negative quantity, a side that does not exist, a ``data`` field that is not JSON, ...) so
the dead-letter path shows. Malformed entries are *extra* entries: they never replace a step of a
simulated order, so the valid events always tell a consistent story.

Determinism: given ``seed`` the sequence of entries (streams, fields, values) is always the same;
given ``start`` and ``run_id`` too, even the timestamps and ids are. Without ``start`` every event
carries the wall-clock time of its publication; without ``run_id`` one is made from the clock, so
the ids of two runs never collide (a resumed demo adds orders rather than repeating them).

With ``shards`` N > 0 each entry goes to its symbol's shard, ``<stream>.{k}`` with
k = ``shards.shard_of(symbol, N)`` (an entry naming no symbol goes to shard 0).

Only XADD is used; without a rate, entries go out in pipelines of ``PIPELINE_SIZE`` commands.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Literal, NamedTuple

from consumer.settings import Settings
from consumer.shards import stream_for
from consumer.stream import Client

DEFAULT_SYMBOLS: tuple[str, ...] = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
PIPELINE_SIZE = 500
TAKER_FEE_RATE = Decimal("0.001")  # 0.1 % of notional
MAX_ACTIVE_ORDERS = 4  # orders in flight at once: their events interleave, as a bot's would

# Shares of the simulated flow (of valid events / of new orders).
MARK_SHARE = 0.3
NEW_ORDER_SHARE = 0.35
REJECTED_SHARE = 0.06
CANCELLED_SHARE = 0.08
LIMIT_SHARE = 0.25
ENVELOPE_SHARE = 0.2  # entries sent as one JSON `data` field instead of flat fields

_SYMBOL = re.compile(r"[A-Z0-9]{2,20}")
_AMOUNT = Decimal("0.00000001")
_REJECTIONS = (
    "insufficient paper balance",
    "order notional below exchange minimum",
    "risk limit: max exposure per symbol reached",
)

EntryKind = Literal["order", "fill", "mark", "malformed"]


@dataclass(frozen=True)
class Market:
    """How a symbol trades: starting price, price tick, quantity step, steps per order."""

    price: Decimal
    tick: Decimal
    lot: Decimal
    max_lots: int = 500


MARKETS: dict[str, Market] = {
    "BTCUSDT": Market(Decimal("60000.00"), Decimal("0.01"), Decimal("0.0001")),
    "ETHUSDT": Market(Decimal("3000.00"), Decimal("0.01"), Decimal("0.001")),
    "SOLUSDT": Market(Decimal("150.000"), Decimal("0.001"), Decimal("0.01")),
}


def _market_for(symbol: str) -> Market:
    if symbol in MARKETS:
        return MARKETS[symbol]
    # A stable price from the name (never hash(): it is salted per process).
    price = Decimal(10 + sum(ord(c) * (i + 1) for i, c in enumerate(symbol)) % 990)
    return Market(price.quantize(Decimal("0.01")), Decimal("0.01"), Decimal("0.01"))


@dataclass
class PublishStats:
    """What a ``publish`` call put on the streams.

    ``orders`` counts order *events* and ``new_orders`` the distinct orders they belong to (the
    rows ``paper_orders`` gains); ``fills`` and ``marks`` count valid entries only; every
    malformed entry, whatever its stream, counts once in ``malformed`` (the dead letters to
    expect).
    """

    orders: int = 0
    new_orders: int = 0
    fills: int = 0
    marks: int = 0
    malformed: int = 0
    elapsed_s: float = 0.0

    @property
    def events(self) -> int:
        return self.orders + self.fills + self.marks + self.malformed

    def add(self, other: PublishStats) -> None:
        self.orders += other.orders
        self.new_orders += other.new_orders
        self.fills += other.fills
        self.marks += other.marks
        self.malformed += other.malformed
        self.elapsed_s += other.elapsed_s

    def describe(self) -> str:
        """One line, ``key=value`` pairs (stable: tests and scripts parse it)."""
        rate = self.events / self.elapsed_s if self.elapsed_s > 0 else 0.0
        return (
            f"events={self.events} orders={self.orders} new_orders={self.new_orders} "
            f"fills={self.fills} marks={self.marks} malformed={self.malformed} "
            f"elapsed_s={self.elapsed_s:.2f} events_per_s={rate:.0f}"
        )


@dataclass
class _Order:
    """One simulated order and the steps of its life still to publish."""

    order_id: str
    client_id: str
    symbol: str
    side: str
    order_type: str
    quantity: Decimal
    limit_price: Decimal | None
    reference_price: Decimal
    steps: list[str]  # "PENDING", "SUBMITTED", "FILL", "PARTIALLY_FILLED", "FILLED", ...
    fill_sizes: list[Decimal]
    rejection_reason: str | None = None
    filled: Decimal = Decimal(0)
    notional: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)
    fills_done: int = 0


class Entry(NamedTuple):
    """One entry to XADD: where, what, and what it counts as."""

    stream: str
    fields: dict[str, str]
    kind: EntryKind
    opens_order: bool = False  # the first event of a new order (a new paper_orders row)


class Publisher:
    """Publishes a deterministic synthetic event flow to the three streams.

    ``marks_stream`` None publishes no marks. ``stop()`` may be called from another thread or a
    signal handler: ``publish`` then returns after the entry in hand (with what it published).
    """

    def __init__(
        self,
        client: Client,
        *,
        orders_stream: str,
        fills_stream: str,
        marks_stream: str | None,
        seed: int = 0,
        symbols: Sequence[str] = DEFAULT_SYMBOLS,
        malformed_ratio: float = 0.01,
        start: datetime | None = None,
        run_id: str | None = None,
        shards: int = 0,
        time_step_ms: tuple[int, int] = (5, 250),
        symbol_lag: Mapping[str, timedelta] | None = None,
    ) -> None:
        """``time_step_ms`` (with ``start``): the simulated clock advances by a random number of
        milliseconds in that range per event. ``symbol_lag``: each symbol's events are stamped
        that much behind the simulated clock, so times are not monotone across symbols (as
        several exchanges' feeds or a lagging source would be); each symbol's own stay monotone.
        """
        if not symbols:
            raise ValueError("symbols: give at least one symbol")
        bad = [s for s in symbols if not _SYMBOL.fullmatch(s)]
        if bad:
            raise ValueError(f"symbols: must match ^[A-Z0-9]{{2,20}}$ (got {', '.join(bad)})")
        if not 0 <= malformed_ratio <= 1:
            raise ValueError(f"malformed_ratio: must be between 0 and 1 (got {malformed_ratio})")
        self._client = client
        self.orders_stream = orders_stream
        self.fills_stream = fills_stream
        self.marks_stream = marks_stream
        self.shards = shards  # > 0: each entry goes to its symbol's shard (consumer/shards.py)
        self.seed = seed
        self.symbols = tuple(dict.fromkeys(symbols))
        self.malformed_ratio = malformed_ratio
        self._rng = random.Random(seed)  # noqa: S311 - a reproducible simulation, not crypto
        self._clock = start.astimezone(UTC) if start is not None else None
        self._time_step_ms = time_step_ms
        self._symbol_lag = dict(symbol_lag or {})
        stamp = (self._clock or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%f")[:-3]
        self.run_id = run_id or f"{stamp}s{seed}"
        self._markets = {s: _market_for(s) for s in self.symbols}
        self._prices = {s: m.price for s, m in self._markets.items()}
        self._active: list[_Order] = []
        self._sequence = 0
        self._next_due: float | None = None
        self._stop = threading.Event()
        self.totals = PublishStats()

    # -- control --------------------------------------------------------------------------------

    @classmethod
    def for_settings(cls, client: Client, settings: Settings, **options: Any) -> Publisher:
        """A publisher to the streams ``settings`` names (orders, fills, marks); ``options``
        are the other constructor arguments (``shards`` is the caller's to choose)."""
        return cls(
            client,
            orders_stream=settings.orders_stream,
            fills_stream=settings.fills_stream,
            marks_stream=settings.marks_stream,
            **options,
        )

    def stop(self) -> None:
        """Make ``publish`` return soon (safe from another thread or a signal handler)."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def prices(self) -> dict[str, Decimal]:
        """The current simulated price of every symbol."""
        return dict(self._prices)

    # -- publishing -----------------------------------------------------------------------------

    def publish(self, n_events: int, *, rate_per_s: float | None = None) -> PublishStats:
        """XADD ``n_events`` entries (fewer if stopped), paced at ``rate_per_s`` when given.

        Pacing carries over between calls, so publishing in chunks keeps the rate.
        """
        if n_events < 0:
            raise ValueError(f"n_events: must not be negative (got {n_events})")
        if rate_per_s is not None and rate_per_s <= 0:
            raise ValueError(f"rate_per_s: must be greater than 0 (got {rate_per_s})")
        stats = PublishStats()
        started = time.perf_counter()
        pipe = self._client.pipeline(transaction=False)
        try:
            for _ in range(n_events):
                if rate_per_s is not None:
                    self._pace(rate_per_s, pipe)
                if self._stop.is_set():
                    break
                entry = self.next_entry()
                stream = stream_for(entry.stream, entry.fields, self.shards)
                pipe.xadd(stream, dict(entry.fields))  # type: ignore[arg-type]
                _count(stats, entry)
                if len(pipe) >= PIPELINE_SIZE:
                    pipe.execute()
            pipe.execute()
        finally:
            pipe.reset()
            stats.elapsed_s = time.perf_counter() - started
            self.totals.add(stats)
        return stats

    def _pace(self, rate_per_s: float, pipe: Any) -> None:
        """Wait for this entry's turn; send what is queued before waiting."""
        now = time.monotonic()
        if self._next_due is None or now - self._next_due > 1.0:
            self._next_due = now  # first entry, or far behind: do not burst to catch up
        if self._next_due > now:
            if len(pipe):
                pipe.execute()
            self._stop.wait(self._next_due - now)
        self._next_due += 1.0 / rate_per_s

    def entries(self, n_events: int) -> Iterator[Entry]:
        """The next ``n_events`` entries, without publishing them (for tests and previews)."""
        for _ in range(n_events):
            yield self.next_entry()

    # -- the simulation -------------------------------------------------------------------------

    def next_entry(self) -> Entry:
        """The next entry: ``(stream, fields, kind)``; advances the simulation."""
        rng = self._rng
        if self.malformed_ratio and rng.random() < self.malformed_ratio:
            return self._malformed()
        if self.marks_stream and rng.random() < MARK_SHARE:
            return self._mark(rng.choice(self.symbols))
        if not self._active or (
            len(self._active) < MAX_ACTIVE_ORDERS and rng.random() < NEW_ORDER_SHARE
        ):
            self._active.append(self._new_order())
            order = self._active[-1]
        else:
            order = rng.choice(self._active)
        return self._advance(order)

    def _now(self, symbol: str | None = None) -> str:
        if self._clock is None:
            moment = datetime.now(UTC)
        else:
            self._clock += timedelta(milliseconds=self._rng.randint(*self._time_step_ms))
            moment = self._clock
        if symbol is not None:
            moment -= self._symbol_lag.get(symbol, timedelta(0))
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def _step_price(self, symbol: str) -> Decimal:
        """Move ``symbol`` one step of its random walk (about 0.1 % per step) and return it."""
        market = self._markets[symbol]
        change = Decimal(repr(round(self._rng.gauss(0.0, 0.001), 6)))
        price = (self._prices[symbol] * (1 + change)).quantize(market.tick, ROUND_HALF_EVEN)
        # Keep the walk away from 0 (and from DECIMAL(18,8)'s ceiling).
        price = min(max(price, market.price / 10), market.price * 10)
        self._prices[symbol] = price
        return price

    def _mark(self, symbol: str) -> Entry:
        price = self._step_price(symbol)
        assert self.marks_stream is not None  # noqa: S101 - checked by the caller
        fields = {"symbol": symbol, "price": str(price), "timestamp": self._now(symbol)}
        return Entry(self.marks_stream, self._shape(fields), "mark")

    def _new_order(self) -> _Order:
        rng = self._rng
        self._sequence += 1
        symbol = rng.choice(self.symbols)
        market = self._markets[symbol]
        lots = rng.randint(1, market.max_lots)
        quantity = market.lot * lots
        side = rng.choice(("BUY", "SELL"))
        reference = self._prices[symbol]
        order_type = "LIMIT" if rng.random() < LIMIT_SHARE else "MARKET"
        limit_price = None
        if order_type == "LIMIT":
            # A marketable limit a little through the price, so it fills at the limit.
            through = Decimal("1.0005") if side == "BUY" else Decimal("0.9995")
            limit_price = (reference * through).quantize(market.tick, ROUND_HALF_EVEN)
        outcome = rng.random()
        rejection_reason = None
        if outcome < REJECTED_SHARE:
            steps, sizes = ["PENDING", "REJECTED"], []
            rejection_reason = rng.choice(_REJECTIONS)
        elif outcome < REJECTED_SHARE + CANCELLED_SHARE:
            partial = lots > 1 and rng.random() < 0.5
            sizes = [market.lot * rng.randint(1, lots - 1)] if partial else []
            steps = ["PENDING", "SUBMITTED", *(["FILL", "PARTIALLY_FILLED"] if partial else [])]
            steps.append("CANCELLED")
        else:
            sizes = _split(lots, rng.randint(1, min(3, lots)), rng, market.lot)
            steps = ["PENDING", "SUBMITTED"]
            for i in range(len(sizes)):
                steps += ["FILL", "FILLED" if i == len(sizes) - 1 else "PARTIALLY_FILLED"]
        return _Order(
            order_id=f"paper-{self.run_id}-{self._sequence:07d}",
            client_id=f"bot-{self.run_id}-{self._sequence:07d}",
            symbol=symbol,
            side=side,
            order_type=order_type,
            quantity=quantity,
            limit_price=limit_price,
            reference_price=reference,
            steps=steps,
            fill_sizes=sizes,
            rejection_reason=rejection_reason,
        )

    def _advance(self, order: _Order) -> Entry:
        step = order.steps.pop(0)
        if not order.steps:
            self._active.remove(order)
        if step == "FILL":
            return self._fill(order)
        fields = {
            "order_id": order.order_id,
            "client_id": order.client_id,
            "symbol": order.symbol,
            "side": order.side,
            "order_type": order.order_type,
            "quantity": str(order.quantity),
            "status": step,
            "timestamp": self._now(order.symbol),
        }
        if order.limit_price is not None:
            fields["price"] = str(order.limit_price)
        if order.fills_done:
            average = (order.notional / order.filled).quantize(_AMOUNT, ROUND_HALF_EVEN)
            fields |= {
                "filled_quantity": str(order.filled),
                "filled_price": str(average),
                "fees_usdt": str(order.fees),
                "fee_type": "TAKER",
            }
            if step == "FILLED":
                slip = (average - order.reference_price) / order.reference_price * 100
                fields["slippage_pct"] = str(slip.quantize(Decimal("0.000001"), ROUND_HALF_EVEN))
        if step == "REJECTED" and order.rejection_reason:
            fields["rejection_reason"] = order.rejection_reason
        if step == "PENDING":
            # Keys outside the contract: the consumer keeps them in the order's metadata.
            fields |= {"strategy": "random_walk", "run_id": self.run_id}
        if step == "CANCELLED":
            fields["cancel_reason"] = "timed out before a full fill"
        return Entry(self.orders_stream, self._shape(fields), "order", step == "PENDING")

    def _fill(self, order: _Order) -> Entry:
        market = self._markets[order.symbol]
        quantity = order.fill_sizes[order.fills_done]
        current = self._step_price(order.symbol)
        if order.limit_price is not None:
            price = order.limit_price
        else:
            # Market orders pay up to 0.05 % slippage, always against the taker.
            slip = Decimal(self._rng.randint(0, 50)) / Decimal(100_000)
            factor = 1 + slip if order.side == "BUY" else 1 - slip
            price = (current * factor).quantize(market.tick, ROUND_HALF_EVEN)
        fee = (quantity * price * TAKER_FEE_RATE).quantize(_AMOUNT, ROUND_HALF_EVEN)
        order.fills_done += 1
        order.filled += quantity
        order.notional += quantity * price
        order.fees += fee
        fields = {
            "fill_id": f"{order.order_id}-f{order.fills_done}",
            "order_id": order.order_id,
            "symbol": order.symbol,
            "side": order.side,
            "quantity": str(quantity),
            "price": str(price),
            "fees_usdt": str(fee),
            "fee_type": "TAKER",
            "timestamp": self._now(order.symbol),
        }
        return Entry(self.fills_stream, self._shape(fields), "fill")

    def _shape(self, fields: dict[str, str]) -> dict[str, str]:
        """Flat fields, or (sometimes) the same keys in one JSON ``data`` field: both are valid."""
        if self._rng.random() < ENVELOPE_SHARE:
            return {"data": json.dumps(fields, separators=(",", ":"))}
        return fields

    def _malformed(self) -> Entry:
        """An entry that breaks the contract; its ids never match a real order's."""
        rng = self._rng
        self._sequence += 1
        symbol = rng.choice(self.symbols)
        bad_id = f"bad-{self.run_id}-{self._sequence:07d}"
        now = self._now(symbol)
        choices = ["negative_quantity", "bad_side", "not_json", "zero_price"]
        if self.marks_stream:
            choices.append("bad_mark")
        match rng.choice(choices):
            case "negative_quantity":
                fields = {
                    "order_id": bad_id,
                    "symbol": symbol,
                    "side": "BUY",
                    "quantity": "-0.5",
                    "status": "PENDING",
                    "timestamp": now,
                }
                return Entry(self.orders_stream, fields, "malformed")
            case "bad_side":
                fields = {
                    "fill_id": f"{bad_id}-f1",
                    "order_id": bad_id,
                    "symbol": symbol,
                    "side": "SIDEWAYS",
                    "quantity": "1",
                    "price": str(self._prices[symbol]),
                    "timestamp": now,
                }
                return Entry(self.fills_stream, fields, "malformed")
            case "not_json":
                stream = rng.choice((self.orders_stream, self.fills_stream))
                text = json.dumps({"order_id": bad_id, "symbol": symbol, "timestamp": now})
                return Entry(stream, {"data": text[: len(text) // 2]}, "malformed")
            case "zero_price":
                fields = {
                    "fill_id": f"{bad_id}-f1",
                    "order_id": bad_id,
                    "symbol": symbol,
                    "side": "SELL",
                    "quantity": "1",
                    "price": "0",
                    "timestamp": now,
                }
                return Entry(self.fills_stream, fields, "malformed")
            case _:
                assert self.marks_stream is not None  # noqa: S101 - in choices only when set
                fields = {"symbol": symbol, "price": "not-a-price", "timestamp": now}
                return Entry(self.marks_stream, fields, "malformed")


def _split(lots: int, parts: int, rng: random.Random, lot: Decimal) -> list[Decimal]:
    """``lots`` lots in ``parts`` positive pieces (random cuts), as quantities."""
    cuts = sorted(rng.sample(range(1, lots), parts - 1)) if parts > 1 else []
    bounds = [0, *cuts, lots]
    return [lot * (b - a) for a, b in itertools.pairwise(bounds)]


def _count(stats: PublishStats, entry: Entry) -> None:
    kind = entry.kind
    if kind == "order":
        stats.orders += 1
        stats.new_orders += entry.opens_order
    elif kind == "fill":
        stats.fills += 1
    elif kind == "mark":
        stats.marks += 1
    else:
        stats.malformed += 1
