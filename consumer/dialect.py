"""The trading bot's own messages (bot-dialect.md), translated into the internal events.

Pure: no I/O, no clock. ``parse.parse`` recognises the bot's messages by their content and hands
their decoded record (envelope unwrapped, empty values dropped, ``type`` taken out) to
``translate_result`` or ``translate_request``, which give an internal event or the ``Rejection``
with its reason, so everything downstream (order fold, accounting, stats, snapshots, replay) is
shared with the contract:

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

import hashlib
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Final

from pydantic import TypeAdapter, ValidationError

from consumer import events, fields
from consumer.events import FillEvent, OrderEvent, OrderStatus, Rejection, Side, entry_time
from consumer.fastpath import validate
from consumer.fields import ID_MAX_CHARS
from consumer.orders import OrderState

__all__ = [
    "DialectOptions",
    "OrderRequestEvent",
    "OrderResultEvent",
    "derive_fill",
    "derived_fill_id",
    "is_request_row",
    "merge_request",
    "translate_request",
    "translate_result",
]

RESULT: Final = "order_result"
REQUEST: Final = "order_request"
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


def translate_result(
    record: dict[str, Any], entry_id: str, options: DialectOptions | None = None
) -> OrderEvent | Rejection:
    """The ``OrderResultEvent`` of an execution result's decoded ``record`` (it is consumed), or
    the ``Rejection`` with the human-readable reason when it is not a valid one."""
    try:
        return _result(record, entry_id, options or DialectOptions())
    except ValidationError as exc:
        return Rejection(fields.validation_reason(exc))


def translate_request(
    record: dict[str, Any], entry_id: str, options: DialectOptions | None = None
) -> OrderEvent | Rejection:
    """The ``OrderRequestEvent`` of an order request's decoded ``record`` (it is consumed), or
    the ``Rejection`` with its reason. ``options`` are not needed for requests."""
    try:
        return _request(record, entry_id)
    except ValidationError as exc:
        return Rejection(fields.validation_reason(exc))


def _event_time(record: dict[str, Any], entry_id: str) -> Any:
    """The record's ``timestamp`` (taken out of it), else the entry id's time."""
    return record.pop("timestamp") if "timestamp" in record else entry_time(entry_id)


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
        return fields.metadata(value)
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
        return fields.to_decimal(value).is_zero()
    except ValueError:
        return False


def _result(
    record: dict[str, Any], entry_id: str, options: DialectOptions
) -> OrderEvent | Rejection:
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
        "timestamp": _event_time(record, entry_id),
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
    event = validate(OrderResultEvent, values)
    if event.filled_quantity and event.filled_price is None:
        return Rejection(
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


def _request(record: dict[str, Any], entry_id: str) -> OrderEvent | Rejection:
    client_id = record.pop("client_id", None)
    values: dict[str, Any] = {
        "order_id": client_id,
        "client_id": client_id,
        "symbol": record.pop("symbol", None),
        "side": record.pop("side", None),
        "order_type": record.pop("order_type", None),
        "quantity": record.pop("quantity", None),
        "status": OrderStatus.PENDING,
        "timestamp": _event_time(record, entry_id),
    }
    if "price" in record:  # the signal's price: informational, not a limit price
        record["signal_price"] = record.pop("price")
    explicit = _bot_metadata(record.pop("metadata", None))
    values["metadata"] = {**record, **explicit}
    event = validate(OrderRequestEvent, values)
    missing = [name for name in ("symbol", "side", "quantity") if getattr(event, name) is None]
    if missing:
        return Rejection(
            f"{', '.join(missing)}: required in the bot's order request "
            f"(client_id {event.client_id!r})"
        )
    return event


# --- the store's fold: pure helpers --------------------------------------------------------------


def is_request_row(state: OrderState) -> bool:
    """A row that is still only a request: keyed by its client id, nothing filled yet (so it has
    no fills pointing at its key, and re-keying it is safe)."""
    return (
        state.client_id is not None
        and state.order_id == state.client_id
        and state.filled_quantity == 0
        and not state.is_placeholder
    )


def merge_request(state: OrderState | None, request: OrderState, order_id: str) -> OrderState:
    """The row of ``order_id`` once its request row is linked to it: the request row re-keyed
    (no row yet), or the request's fields filled into the existing row where it is silent,
    ``created_at`` moved to the earlier request time."""
    if state is None:
        return replace(request, order_id=order_id)
    return replace(
        state,
        client_id=state.client_id or request.client_id,
        price=state.price if state.price is not None else request.price,
        created_at=min(state.created_at, request.created_at),
        metadata={**request.metadata, **state.metadata},
    )


def _q8(value: Decimal) -> Decimal:
    return value.quantize(STEP, rounding=ROUND_HALF_EVEN, context=fields.EXACT)


def _plain(value: Decimal) -> str:
    text = f"{value.normalize():f}"
    return "0" if text in ("-0", "") else text


def derived_fill_id(order_id: str, cumulative: Decimal) -> str:
    """``<order_id>:<cumulative filled quantity>``: the same result (repeated, duplicated, or
    read from the audit stream) always names the same fill. Beyond 100 characters the tail is
    replaced by a stable hash of the whole id."""
    full = f"{order_id}:{_plain(cumulative)}"
    if len(full) <= ID_MAX_CHARS:
        return full
    digest = hashlib.sha256(full.encode("utf-8")).hexdigest()[:24]
    return f"{full[: ID_MAX_CHARS - len(digest) - 1]}#{digest}"


def derive_fill(
    before: OrderState | None, after: OrderState, event: OrderResultEvent
) -> tuple[FillEvent, OrderState] | None:
    """The fill a result adds: the growth of ``filled_quantity`` beyond what ``before`` had, at
    the price that makes the order's fills average to the result's price; and ``after`` with
    its fees counting that fill. None when nothing grew."""
    if event.filled_quantity is None or event.filled_price is None:
        return None
    previous = before.filled_quantity if before is not None and not before.is_placeholder else _ZERO
    growth = event.filled_quantity - previous
    if growth <= 0:
        return None
    average = event.filled_price
    meta: dict[str, Any] = {
        "derived_from": RESULT,
        "cumulative_filled_quantity": _plain(event.filled_quantity),
        "order_avg_price": _plain(average),
    }
    previous_avg = before.filled_price if before is not None else None
    price = average
    if previous > 0 and previous_avg is not None:
        price = _q8((event.filled_quantity * average - previous * previous_avg) / growth)
        if price <= 0:
            meta["price_fallback"] = (
                f"the averages imply {_plain(price)}; the result's average price is used"
            )
            price = average
    charged = before.fees_usdt if before is not None and not before.is_placeholder else _ZERO
    if event.fee_amount is not None:
        fee = max(_ZERO, event.fee_amount - charged)  # the part of the cumulative fee not yet
        meta["fee_source"] = "fee_amount"
    else:
        fee = _q8(event.default_fee_rate * growth * price)
        meta["fee_source"] = "default_fee_rate"
        meta["fee_rate"] = _plain(event.default_fee_rate)
    side: Side = event.side or after.side
    fill = FillEvent(
        fill_id=derived_fill_id(event.order_id, event.filled_quantity),
        order_id=event.order_id,
        symbol=event.symbol or after.symbol,
        side=side,
        quantity=growth,
        price=price,
        fees_usdt=fee,
        fee_type=event.fee_type,
        timestamp=event.timestamp,
        metadata=meta,
    )
    return fill, replace(after, fees_usdt=max(after.fees_usdt, charged + fee))
