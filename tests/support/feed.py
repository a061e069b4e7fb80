"""Publish hand-written order, fill and mark events (times as UTC datetimes) to the test streams.

The worker merges its streams by entry id (then orders < fills < marks). Ids of entries XADDed
to different streams within one millisecond compare by their per-stream sequence, not by call
order, so every entry here gets an explicit id one millisecond past the previous one: the
worker sees the events exactly in call order.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import redis

from consumer.settings import Settings


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Feed:
    """A tiny bot: ``order``/``fill``/``trade``/``mark`` XADD one entry each, in call order."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self._last_ms = 0

    def _xadd(self, stream: str, fields: Mapping[str, Any]) -> str:
        self._last_ms = max(self._last_ms + 1, time.time_ns() // 1_000_000)
        entry_id = f"{self._last_ms}-0"
        self.client.xadd(stream, {k: str(v) for k, v in fields.items()}, id=entry_id)
        return entry_id

    def order(self, order_id: str, at: datetime, **fields: Any) -> None:
        body = {"order_id": order_id, "timestamp": iso(at)}
        body.update({k: v for k, v in fields.items() if v is not None})
        self._xadd(self.settings.orders_stream, body)

    def fill(  # noqa: PLR0917 - a fill's fields, in the order a reader expects
        self,
        fill_id: str,
        order_id: str,
        symbol: str,
        side: str,
        qty: str,
        price: str,
        at: datetime,
        fee: str = "0",
    ) -> None:
        self._xadd(
            self.settings.fills_stream,
            {
                "fill_id": fill_id,
                "order_id": order_id,
                "symbol": symbol,
                "side": side,
                "quantity": qty,
                "price": price,
                "fees_usdt": fee,
                "timestamp": iso(at),
            },
        )

    def trade(  # noqa: PLR0917
        self,
        name: str,
        symbol: str,
        side: str,
        qty: str,
        price: str,
        at: datetime,
        *,
        fee: str = "0",
        slippage: str | None = None,
    ) -> None:
        """A FILLED order (one event) and its single fill, both stamped ``at``."""
        self.order(
            name,
            at,
            symbol=symbol,
            side=side,
            quantity=qty,
            status="FILLED",
            filled_quantity=qty,
            filled_price=price,
            fees_usdt=fee,
            slippage_pct=slippage,
        )
        self.fill(f"{name}-f", name, symbol, side, qty, price, at, fee)

    def mark(self, symbol: str, price: str, at: datetime) -> None:
        self._xadd(
            self.settings.marks_stream,
            {"symbol": symbol, "price": price, "timestamp": iso(at)},
        )
