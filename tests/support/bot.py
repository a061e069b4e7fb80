"""Real-shaped messages of the Claire de Binare bot (bot-dialect.md), as its services XADD them.

Every value is a string (``str()`` of the Python value, so floats look like ``84000.0``), keys
whose value is None are missing, timestamps are epoch seconds, and results carry both the
canonical keys and the aliases the execution service adds (``filled_size``, ``avg_fill_price``).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

T0 = 1_795_000_000  # 2026-11-18T11:06:40Z, epoch seconds as the bot sends them


def _strings(values: dict[str, Any]) -> dict[str, str]:
    return {key: str(value) for key, value in values.items() if value is not None}


def result(
    order_id: str,
    *,
    symbol: str = "BTCUSDT",
    side: str = "BUY",
    quantity: Any = "0.01",
    filled: Any = None,
    price: Any = None,
    status: str = "FILLED",
    ts: int = T0,
    client_id: str | None = None,
    aliases: str = "both",
    metadata: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, str]:
    """An ``order_result`` entry. ``aliases``: "both" (canonical + alias, as the execution
    service publishes), "only" (just the aliases, older builds) or "none"."""
    fields: dict[str, Any] = {
        "type": "order_result",
        "order_id": order_id,
        "status": status,
        "symbol": symbol,
        "side": side,
        "quantity": quantity,
        "timestamp": ts,
        "strategy_id": "paper",
        "bot_id": "cdb-bot-1",
        "client_id": client_id,
        **extra,
    }
    filled = quantity if filled is None and status.upper() == "FILLED" else filled
    filled = "0.0" if filled is None else filled
    if aliases != "only":
        fields["filled_quantity"] = filled
        fields["price"] = price
    if aliases != "none":
        fields["filled_size"] = filled
        fields["avg_fill_price"] = price
    if metadata is not None:
        fields["metadata"] = json.dumps(metadata, default=str)
    return _strings(fields)


def request(
    client_id: str,
    *,
    symbol: str = "BTCUSDT",
    side: str = "BUY",
    quantity: Any = "0.01",
    price: Any = "84000.0",
    ts: int = T0,
    **extra: Any,
) -> dict[str, str]:
    """An order request from the risk service: ``type`` order, a client id, no order id."""
    return _strings(
        {
            "type": "order",
            "symbol": symbol,
            "side": side,
            "quantity": quantity,
            "price": price,
            "client_id": client_id,
            "signal_id": f"SIG_{client_id}",
            "stop_loss_pct": "0.02",
            "reason": "momentum breakout",
            "timestamp": ts,
            "strategy_id": "paper",
            "bot_id": "cdb-bot-1",
            **extra,
        }
    )


def derived_price(
    total: Decimal, avg: Decimal, previous: Decimal, previous_avg: Decimal
) -> Decimal:
    """The price of the fill a growth derives (the spec's formula, rounded to 8 dp)."""
    raw = (total * avg - previous * previous_avg) / (total - previous)
    return raw.quantize(Decimal("0.00000001"))
