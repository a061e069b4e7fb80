"""The event contract's events (events.md): what a stream entry becomes once it is valid.

``OrderEvent``, ``FillEvent`` and ``MarkEvent`` (pydantic models, frozen) attach the field rules of
``fields.py`` to their fields, so every value they hold already fits the schema, and code that
builds events directly (tests, the bot-dialect translation in ``dialect.py``) gets the same rules.
Also here: the enums, the life-cycle rank of a status, the time of a stream entry id, and what a
refused entry gives: ``Rejection`` (the one human-readable reason the dead-letter stream shows)
or, from the raising APIs, ``InvalidEventError`` with that reason.

Turning an entry into one of these is ``parse.py``'s job (``parse.parse``).
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from consumer import fields
from consumer.errors import PaperConsumerError

__all__ = [
    "MODELS",
    "TERMINAL_STATUSES",
    "Event",
    "EventKind",
    "FeeType",
    "FillEvent",
    "InvalidEventError",
    "MarkEvent",
    "OrderEvent",
    "OrderStatus",
    "OrderType",
    "Rejection",
    "Side",
    "UnsupportedDialectError",
    "entry_time",
    "status_rank",
]


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP = "STOP"
    STOP_LIMIT = "STOP_LIMIT"


class OrderStatus(StrEnum):
    PENDING = "PENDING"
    SUBMITTED = "SUBMITTED"
    PARTIAL = "PARTIAL"  # allowed by the schema; parsing stores it as PARTIALLY_FILLED
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"


class FeeType(StrEnum):
    TAKER = "TAKER"
    MAKER = "MAKER"


TERMINAL_STATUSES: frozenset[OrderStatus] = frozenset(
    {OrderStatus.FILLED, OrderStatus.REJECTED, OrderStatus.CANCELLED, OrderStatus.FAILED}
)
_RANKS = {
    OrderStatus.PENDING: 0,
    OrderStatus.SUBMITTED: 1,
    OrderStatus.PARTIAL: 2,
    OrderStatus.PARTIALLY_FILLED: 2,
}


def status_rank(status: OrderStatus) -> int:
    """Order of the life cycle: a status never moves to a lower rank; all terminal ones rank 3."""
    return 3 if status in TERMINAL_STATUSES else _RANKS[status]


class InvalidEventError(PaperConsumerError, ValueError):
    """The entry breaks the contract; retrying cannot help, so it goes to the dead-letter stream.

    ``reason`` is one human-readable sentence naming the field(s), e.g.
    ``"quantity: must be greater than 0 (got '-1')"``; several problems are joined with ``"; "``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnsupportedDialectError(InvalidEventError):
    """The entry is the trading bot's own message (bot-dialect.md), not a contract event: what
    ``parse.parse_entry`` (the contract alone) raises for it. ``parse.parse`` recognises these
    messages by their content before any validation and translates them (``dialect.py``), so the
    worker never sees this error.

    ``dialect`` is ``"order_result"`` or ``"order_request"``; ``record`` is the decoded entry
    (envelope unwrapped, empty values dropped, ``type`` kept).
    """

    def __init__(self, reason: str, *, dialect: str, record: Mapping[str, Any]) -> None:
        super().__init__(reason)
        self.dialect = dialect
        self.record = dict(record)


@dataclass(frozen=True, slots=True)
class Rejection:
    """An entry that breaks the contract, and why: ``reason`` is the one human-readable sentence
    the dead-letter stream shows (e.g. ``"quantity: must be greater than 0 (got '-1')"``; several
    problems are joined with ``"; "``). Retrying cannot help."""

    reason: str


# --- Field types. Required ones reject None; optional ones keep None as "not given".
_positive = fields.amount_rule(fields.AMOUNT_PLACES, fields.AMOUNT_DIGITS, "positive")
_non_negative = fields.amount_rule(fields.AMOUNT_PLACES, fields.AMOUNT_DIGITS, "non-negative")
_slippage = fields.amount_rule(fields.SLIPPAGE_PLACES, fields.SLIPPAGE_DIGITS, "any")
Id = Annotated[str, BeforeValidator(fields.identifier)]
OptionalId = Annotated[str | None, BeforeValidator(fields.identifier)]
Symbol = Annotated[str, BeforeValidator(fields.symbol)]
OptionalSymbol = Annotated[str | None, BeforeValidator(fields.symbol)]
Positive = Annotated[Decimal, BeforeValidator(_positive)]
OptionalPositive = Annotated[Decimal | None, BeforeValidator(_positive)]
NonNegative = Annotated[Decimal, BeforeValidator(_non_negative)]
OptionalNonNegative = Annotated[Decimal | None, BeforeValidator(_non_negative)]
Slippage = Annotated[Decimal | None, BeforeValidator(_slippage)]
OptionalSide = Annotated[
    Side | None, BeforeValidator(fields.enum_rule(Side, {"LONG": Side.BUY, "SHORT": Side.SELL}))
]
OptionalOrderType = Annotated[OrderType | None, BeforeValidator(fields.enum_rule(OrderType))]
_STATUS_ALIASES = {
    "PARTIAL": OrderStatus.PARTIALLY_FILLED,
    "ERROR": OrderStatus.FAILED,
    "CANCELED": OrderStatus.CANCELLED,  # the US spelling exchanges use
}
OptionalStatus = Annotated[
    OrderStatus | None, BeforeValidator(fields.enum_rule(OrderStatus, _STATUS_ALIASES))
]
OptionalFeeType = Annotated[FeeType | None, BeforeValidator(fields.enum_rule(FeeType))]
Text = Annotated[str | None, BeforeValidator(fields.free_text)]
Timestamp = Annotated[datetime, BeforeValidator(fields.timestamp)]
Metadata = Annotated[dict[str, Any], BeforeValidator(fields.metadata)]

_MODEL_CONFIG = ConfigDict(frozen=True, extra="forbid")


class OrderEvent(BaseModel):
    """One step in an order's life. Every field but ``order_id`` may be None: "not given in this
    event" (a later or earlier event of the same order may give it). ``order_type`` None is stored
    as the column default MARKET."""

    model_config = _MODEL_CONFIG

    order_id: Id
    client_id: OptionalId = None
    symbol: OptionalSymbol = None
    side: OptionalSide = None
    order_type: OptionalOrderType = None
    quantity: OptionalPositive = None
    price: OptionalPositive = None
    status: OptionalStatus = None
    filled_quantity: OptionalNonNegative = None
    filled_price: OptionalPositive = None
    slippage_pct: Slippage = None
    fees_usdt: OptionalNonNegative = None
    fee_type: OptionalFeeType = None
    rejection_reason: Text = None
    error_message: Text = None
    timestamp: Timestamp
    metadata: Metadata = Field(default_factory=dict)

    @model_validator(mode="after")
    def _not_overfilled(self) -> Self:
        # The table checks filled_quantity <= quantity; within one event we can say it clearly.
        if (
            self.quantity is not None
            and self.filled_quantity is not None
            and self.filled_quantity > self.quantity
        ):
            raise fields.BadValue(
                f"filled_quantity: must not exceed quantity "
                f"(got {fields.shown(self.filled_quantity)} > {fields.shown(self.quantity)})"
            )
        return self


class FillEvent(BaseModel):
    """One execution. A fill may arrive before any event of its order; it is valid all the same."""

    model_config = _MODEL_CONFIG

    fill_id: Id
    order_id: Id
    symbol: Symbol
    side: OptionalSide = None
    quantity: Positive
    price: Positive
    fees_usdt: NonNegative = Decimal(0)
    fee_type: OptionalFeeType = None
    timestamp: Timestamp
    metadata: Metadata = Field(default_factory=dict)


class MarkEvent(BaseModel):
    """A market price for marking open positions. Other keys (bid, volume, ...) are ignored."""

    model_config = _MODEL_CONFIG

    symbol: Symbol
    price: Positive
    timestamp: Timestamp


Event = OrderEvent | FillEvent | MarkEvent
EventKind = Literal["order", "fill", "mark"]

MODELS: dict[str, type[OrderEvent] | type[FillEvent] | type[MarkEvent]] = {
    "order": OrderEvent,
    "fill": FillEvent,
    "mark": MarkEvent,
}


def entry_time(entry_id: str) -> datetime:
    """The time part of a Redis stream id (``"1700000000000-3"``) as a tz-aware UTC datetime."""
    match = (
        re.fullmatch(r"([0-9]{1,20})-[0-9]{1,20}", entry_id) if isinstance(entry_id, str) else None
    )
    if match:
        try:
            return fields.EPOCH + timedelta(milliseconds=int(match[1]))
        except OverflowError:  # beyond year 9999
            pass
    raise InvalidEventError(
        "entry id: must be a Redis stream id '<milliseconds>-<sequence>' "
        f"(got {fields.shown(entry_id)})"
    )
