"""FROZEN COPY, for tests/unit/test_parse_differential.py only: the translation half of
consumer/dialect.py as it was at 7355d98, before issue 18 (the bot's messages reached it as an
``UnsupportedDialectError``). Only the imports are changed (to ``legacy_events``) and the store's
fold helpers, which decide nothing about parsing, are cut. Never edit it to follow the new code:
it is the reference the new ``consumer.parse`` is compared with.

The original docstring follows.

The trading bot's own messages (bot-dialect.md), translated into the internal events.

Pure: no I/O, no clock. ``events.parse_entry`` recognises the bot's messages by content and
raises ``UnsupportedDialectError`` carrying the decoded record; ``translate`` turns that record
into an internal event, so everything downstream (order fold, accounting, stats, snapshots,
replay) is shared with the contract:

- an execution result (``type`` = ``order_result``, on ``stream.fills`` and its audit copy
  ``stream.order_results``) becomes an ``OrderResultEvent``: an ``OrderEvent`` carrying the
  *cumulative* fill (``filled_quantity`` and the average ``price``), from which the store derives
  one fill per growth of ``filled_quantity`` (``derive_fill``);
- an order request (``stream.orders``, a ``client_id`` and no ``order_id``) becomes an
  ``OrderRequestEvent``: a PENDING order keyed by its ``client_id`` until the result with the
  same ``client_id`` re-keys it to the result's ``order_id`` (``merge_request``).

Both are subclasses of ``OrderEvent`` (the contract models are unchanged): code that only knows
order events treats them as such. Everything the bot sent that has no column of its own
(strategy, bot id, reason, signal id, stop-loss, the status as sent, slippage and fee details…)
is kept in ``metadata``; nothing is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import TypeAdapter, ValidationError

from tests.support import legacy_events as events
from tests.support.legacy_events import (
    InvalidEventError,
    OrderEvent,
    OrderStatus,
    UnsupportedDialectError,
)

__all__ = ["DialectOptions", "OrderRequestEvent", "OrderResultEvent", "translate"]

RESULT = "order_result"
REQUEST = "order_request"
STEP = Decimal("0.00000001")
_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class DialectOptions:
    """How to read the bot's messages. ``default_fee_rate`` (a fraction of the notional, e.g.
    0.001 = 0.1 %) prices a derived fill when the result reports no ``fee_amount``."""

    default_fee_rate: Decimal = _ZERO


class OrderRequestEvent(OrderEvent):
    """A bot order request: ``order_id`` is its ``client_id`` (the row's key until the result
    arrives), status PENDING, the event time is the request time."""


class OrderResultEvent(OrderEvent):
    """A bot execution result: ``filled_quantity`` is cumulative, ``filled_price`` the average
    over it. ``fee_amount`` is the cumulative fee the bot reported (``metadata.fee_amount``);
    ``default_fee_rate`` prices a derived fill when it did not report one."""

    fee_amount: events.OptionalNonNegative = None
    default_fee_rate: events.NonNegative = _ZERO


# --- translation -------------------------------------------------------------------------------


def translate(
    error: UnsupportedDialectError, entry_id: str, options: DialectOptions | None = None
) -> OrderEvent:
    """The internal event for the bot message ``error`` carries; ``InvalidEventError`` (with the
    human-readable reason) when it is not a valid one."""
    options = options or DialectOptions()
    record = {key: value for key, value in error.record.items() if key != "type"}
    received_at = events.entry_time(entry_id)
    try:
        if error.dialect == RESULT:
            return _result(record, received_at, options)
        if error.dialect == REQUEST:
            return _request(record, received_at)
    except ValidationError as exc:
        raise InvalidEventError(events._reason(exc)) from None
    raise ValueError(f"unknown bot dialect {error.dialect!r}")  # a wiring bug, not bad data


def _alias(record: dict[str, Any], name: str, alias: str, extras: dict[str, Any]) -> Any:
    """``name``, else its alias. An alias that says something else is kept in ``extras``."""
    value = record.pop(name, None)
    other = record.pop(alias, None)
    if value is None:
        return other
    if other is not None and str(other).strip() != str(value).strip():
        extras[alias] = other
    return value


def _bot_metadata(value: Any) -> dict[str, Any]:
    """The result's ``metadata`` (JSON text or object); text that is not an object is kept as
    text, so a malformed field never costs the whole result."""
    if value is None:
        return {}
    try:
        return events._metadata(value)
    except ValueError:
        return {"metadata_text": value if isinstance(value, str) else str(value)}


def _optional(adapter: TypeAdapter[Any], value: Any) -> Any:
    """A column filled from the bot's free-form metadata: None when it does not fit (the value
    stays in ``metadata``, so nothing is lost and the result is not dead-lettered for it)."""
    if value is None:
        return None
    try:
        return adapter.validate_python(value)
    except (ValidationError, ValueError):
        return None


_SLIPPAGE: TypeAdapter[Any] = TypeAdapter(events.Slippage)
_FEE: TypeAdapter[Any] = TypeAdapter(events.OptionalNonNegative)
_FEE_TYPE: TypeAdapter[Any] = TypeAdapter(events.OptionalFeeType)
_TEXT: TypeAdapter[Any] = TypeAdapter(events.Text)


def _is_zero(value: Any) -> bool:
    try:
        return events._number(value).is_zero()
    except ValueError:
        return False


def _result(record: dict[str, Any], received_at: datetime, options: DialectOptions) -> OrderEvent:
    extras: dict[str, Any] = {}
    filled = _alias(record, "filled_quantity", "filled_size", extras)
    price = _alias(record, "price", "avg_fill_price", extras)
    quantity = record.pop("quantity", None)
    if price is not None and _is_zero(price):  # "0.0" on a reject: no price, kept as sent
        extras["price"], price = price, None
    if quantity is not None and _is_zero(quantity) and (filled is None or _is_zero(filled)):
        extras["quantity"], quantity = quantity, None
    sent_status = record.pop("status", None)
    bot = _bot_metadata(record.pop("metadata", None))
    values: dict[str, Any] = {
        "order_id": record.pop("order_id", None),
        "client_id": record.pop("client_id", None),
        "symbol": record.pop("symbol", None),
        "side": record.pop("side", None),
        "quantity": quantity,
        "status": sent_status,
        "filled_quantity": filled,
        "filled_price": price,
        "error_message": record.pop("error_message", None),
        "timestamp": record.pop("timestamp", received_at),
        "slippage_pct": _optional(_SLIPPAGE, bot.get("slippage_pct")),
        "fee_amount": _optional(_FEE, bot.get("fee_amount")),
        "fee_type": _optional(_FEE_TYPE, bot.get("fee_type")),
        "rejection_reason": _optional(_TEXT, bot.get("rejection_reason")),
        "default_fee_rate": options.default_fee_rate,
    }
    values["fees_usdt"] = values["fee_amount"]
    # Everything else the bot said, and the status exactly as it was sent.
    metadata = {**bot, **record, **extras}
    if sent_status is not None:
        metadata["bot_status"] = sent_status
    values["metadata"] = metadata
    event = events.validate(OrderResultEvent, values)
    if event.filled_quantity and event.filled_price is None:
        raise InvalidEventError(
            f"price: required when filled_quantity is above 0 (got filled_quantity "
            f"{event.filled_quantity}), the fill's price cannot be known without it"
        )
    if (
        event.status == OrderStatus.FILLED
        and event.quantity is not None
        and (event.filled_quantity or _ZERO) < event.quantity
    ):
        # The bot reports a partial execution as FILLED (its schema has no partial status).
        event = event.model_copy(update={"status": OrderStatus.PARTIALLY_FILLED})
    return event


def _request(record: dict[str, Any], received_at: datetime) -> OrderEvent:
    client_id = record.pop("client_id", None)
    values: dict[str, Any] = {
        "order_id": client_id,
        "client_id": client_id,
        "symbol": record.pop("symbol", None),
        "side": record.pop("side", None),
        "order_type": record.pop("order_type", None),
        "quantity": record.pop("quantity", None),
        "status": OrderStatus.PENDING,
        "timestamp": record.pop("timestamp", received_at),
    }
    if "price" in record:  # the signal's price: informational, not a limit price
        record["signal_price"] = record.pop("price")
    explicit = _bot_metadata(record.pop("metadata", None))
    values["metadata"] = {**record, **explicit}
    event = events.validate(OrderRequestEvent, values)
    missing = [name for name in ("symbol", "side", "quantity") if getattr(event, name) is None]
    if missing:
        raise InvalidEventError(
            f"{', '.join(missing)}: required in the bot's order request "
            f"(client_id {event.client_id!r})"
        )
    return event
