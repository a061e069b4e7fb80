"""FROZEN COPY, for tests/unit/test_parse_differential.py only: consumer/events.py as it was at
7355d98, before issue 18 split it (contract models, value rules, the fast path, ``parse_entry``
raising ``UnsupportedDialectError`` for the bot's messages). Unchanged but for this paragraph.
Never edit it to follow the new code: it is the reference the new ``consumer.parse`` is compared
with.

The original docstring follows.

The event contract: raw Redis stream entries in, typed and validated events out.

This module owns ``events.md``. ``parse_entry`` turns one stream entry (flat string fields, or one
``data``/``payload`` field holding a JSON object) into an ``OrderEvent``, ``FillEvent`` or
``MarkEvent`` whose every value already fits the schema (``DECIMAL(18,8)`` amounts, ids of at most
100 characters, symbols matching ``^[A-Z0-9]{2,20}$``, tz-aware UTC times), or raises
``InvalidEventError`` whose ``reason`` is the one human-readable sentence the dead-letter stream
shows. It is pure: no I/O and no clock. An event without ``timestamp`` takes the time of its
stream entry id, so replaying a stream gives exactly what the live run stored.

The models validate themselves, so code that builds events directly (tests, and the bot-dialect
translation of issue 9) gets the same rules. ``parse_entry`` and ``validate`` first try a fast path
that runs the same rules without pydantic's machinery and returns exactly pydantic's event, or
defers to pydantic, which alone words the reasons (see "The fast path" below).

The trading bot's own messages (``bot-dialect.md``) are recognised here and raise
``UnsupportedDialectError``, which carries the decoded record: that is the seam where their
translation will plug in.
"""

import contextlib
import inspect
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import (
    MAX_EMAX,
    MAX_PREC,
    MIN_EMIN,
    ROUND_FLOOR,
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    InvalidOperation,
)
from enum import StrEnum
from types import UnionType
from typing import Annotated, Any, Literal, Self, TypeVar, get_args, get_origin

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from consumer.errors import PaperConsumerError

__all__ = [
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
    "Side",
    "UnsupportedDialectError",
    "entry_time",
    "parse_entry",
    "status_rank",
    "validate",
]

# Limits, from schema.md.
ID_MAX_CHARS = 100  # order_id, client_id, fill_id: VARCHAR(100) (widened for the bot's 54)
TEXT_MAX_CHARS = 2000  # rejection_reason, error_message are TEXT; longer values are truncated
AMOUNT_PLACES, AMOUNT_DIGITS = 8, 10  # DECIMAL(18,8): 8 decimals, |v| < 10^10
SLIPPAGE_PLACES, SLIPPAGE_DIGITS = 6, 4  # DECIMAL(10,6): 6 decimals, |v| < 10^4
EPOCH_MS_FROM = 10**11  # epoch values below this are seconds, from it on milliseconds
YEAR_MIN, YEAR_MAX = 2000, 2100  # anything outside is a unit or clock mistake, not trading


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
    PARTIAL = "PARTIAL"  # allowed by the schema; parse_entry stores it as PARTIALLY_FILLED
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
    """The entry is the trading bot's own message (bot-dialect.md), not a contract event.

    ``dialect`` is ``"order_result"`` or ``"order_request"``; ``record`` is the decoded entry
    (envelope unwrapped, empty values dropped, ``type`` kept) for the translation of issue 9.
    """

    def __init__(self, reason: str, *, dialect: str, record: Mapping[str, Any]) -> None:
        super().__init__(reason)
        self.dialect = dialect
        self.record = dict(record)


# --- Value rules. Each takes a raw value (a string from Redis, a JSON value, or a Python value
# from direct construction), returns the clean value or None for None, and raises _Bad with a
# message that does not name the field: pydantic reports where it failed and _reason() joins both.


class _Bad(ValueError):
    """A value that breaks the contract. A ValueError even when the *type* is wrong (a list where a
    string belongs), because pydantic turns only ValueErrors into validation errors: a TypeError
    would escape parse_entry as a crash instead of a dead letter."""


# Plain decimal notation only: Decimal() alone would also take "1_000", "NaN" and non-ASCII digits.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NON_FINITE = frozenset({"nan", "snan", "inf", "infinity"})
# Exact arithmetic for shifting and rounding: no precision or exponent limit gets in the way.
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, rounding=ROUND_HALF_EVEN)


def _shown(value: Any) -> str:
    """The offending value for a reason: quoted, and short enough for a log line."""
    if isinstance(value, Decimal) and value.is_finite() and abs(value.adjusted()) <= 20:
        text = f"{value:f}"  # 0.000000005, not 5E-9
    else:
        text = value if isinstance(value, str) else str(value)
    return repr(text if len(text) <= 40 else text[:40] + "…")


def _number(value: Any) -> Decimal:
    """A finite Decimal from a JSON number, an int or a numeric string; never through float."""
    if isinstance(value, bool):
        raise _Bad(f"must be a number, not a boolean (got {_shown(value)})")
    if isinstance(value, float):  # only from code: JSON numbers are parsed as Decimal
        raise _Bad(f"must be a Decimal, int or numeric string, not a float (got {_shown(value)})")
    if isinstance(value, str) and value.strip().lstrip("+-").lower() in _NON_FINITE:
        raise _Bad(f"must be a finite number (got {_shown(value)})")
    number: Decimal | None = None
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:  # an exponent beyond what Decimal can hold
            number = None
    if number is None:
        raise _Bad(f"must be a decimal number (got {_shown(value)})")
    if not number.is_finite():
        raise _Bad(f"must be a finite number (got {_shown(value)})")
    return number


_Sign = Literal["positive", "non-negative", "any"]


def _amount_rule(places: int, digits: int, sign: _Sign) -> Callable[[Any], Decimal | None]:
    """A rule for a DECIMAL(digits + places, places) column and the given sign."""
    step = Decimal(1).scaleb(-places)
    column = f"DECIMAL({digits + places},{places})"

    def amount(value: Any) -> Decimal | None:
        if value is None:
            return None
        number = _number(value)
        if number.adjusted() >= digits:  # checked first: rounding 1E+999999 would be costly
            raise _Bad(f"too large for {column}, must be below 10^{digits} (got {_shown(value)})")
        exponent = number.as_tuple().exponent
        if isinstance(exponent, int) and (exponent < -places or exponent > 0):
            # More decimals than the column keeps: round as PostgreSQL does (half-even), so what
            # we validate is what gets stored. A positive exponent (1E+3) is written out (1000).
            number = number.quantize(step if exponent < 0 else Decimal(1), context=_EXACT)
        if number.adjusted() >= digits:  # 9999999999.999999999 rounds up to 10^10
            raise _Bad(f"too large for {column}, must be below 10^{digits} (got {_shown(value)})")
        if sign == "positive" and number <= 0:
            rounded = f", and rounds to 0 at {places} decimal places" if number.is_zero() else ""
            raise _Bad(f"must be greater than 0{rounded} (got {_shown(value)})")
        if sign == "non-negative" and number < 0:
            raise _Bad(f"must not be negative (got {_shown(value)})")
        return abs(number) if number.is_zero() else number  # no "-0" in the database

    return amount


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EARLIEST, _LATEST = datetime(YEAR_MIN, 1, 1, tzinfo=UTC), datetime(YEAR_MAX + 1, 1, 1, tzinfo=UTC)
_TIMESTAMP_FORMS = "an ISO-8601 date-time or epoch seconds/milliseconds"


def _timestamp(value: Any) -> datetime:
    """A tz-aware UTC datetime from ISO-8601 (no offset = UTC) or epoch seconds/milliseconds.

    Epoch values below 10^11 are seconds, others milliseconds; digits below the microsecond are
    dropped (as ``datetime.fromisoformat`` does for ISO text), so both forms agree. Text and
    numbers must fall in the years 2000-2100: outside, a publisher got the unit or its clock wrong.
    A datetime object comes from code (an entry id's time: test streams use ids like "1-0") and is
    only made UTC (naive = UTC).
    """
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    moment: datetime | None
    if isinstance(value, str) and not _NUMBER.fullmatch(value.strip()):
        try:
            moment, read_as = datetime.fromisoformat(value.strip()), "ISO-8601"
        except ValueError:
            raise _Bad(f"must be {_TIMESTAMP_FORMS} (got {_shown(value)})") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        try:
            moment = moment.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00+01:00 has no UTC datetime
            moment = None
    else:
        try:
            number = _number(value)
        except ValueError:
            raise _Bad(f"must be {_TIMESTAMP_FORMS} (got {_shown(value)})") from None
        # copy_abs, not abs(): abs() rounds in the default context, and 1E+999999999 overflows it.
        millis = number.copy_abs() >= EPOCH_MS_FROM
        read_as = "epoch milliseconds" if millis else "epoch seconds"
        micros = _EXACT.scaleb(number, Decimal(3 if millis else 6))
        moment = None
        # Bounded before int(): int() of 1E+999999999 would build a billion-digit integer.
        if micros.copy_abs() < 10**18:
            with contextlib.suppress(OverflowError):  # before year 1 or after 9999
                moment = _EPOCH + timedelta(microseconds=int(micros.to_integral_value(ROUND_FLOOR)))
    if moment is None or not _EARLIEST <= moment < _LATEST:
        year = f"year {moment.year} is" if moment else "is far"
        raise _Bad(f"{year} outside {YEAR_MIN}-{YEAR_MAX} (got {_shown(value)}, read as {read_as})")
    return moment


_StrEnumT = TypeVar("_StrEnumT", bound=StrEnum)
_ModelT = TypeVar("_ModelT", bound=BaseModel)


def _enum_rule(
    enum: type[_StrEnumT], aliases: Mapping[str, _StrEnumT] | None = None
) -> Callable[[Any], _StrEnumT | None]:
    """A case-insensitive rule for ``enum``, with extra spellings (``aliases``) mapped onto it."""
    accepted: dict[str, _StrEnumT] = {member.value: member for member in enum} | dict(aliases or {})
    listing = ", ".join(accepted)

    def member(value: Any) -> _StrEnumT | None:
        if value is None:
            return None
        found = accepted.get(value.strip().upper()) if isinstance(value, str) else None
        if found is None:
            raise _Bad(f"must be one of {listing} (got {_shown(value)})")
        return found

    _ENUM_SPELLINGS[member] = accepted  # the fast path's exact-spelling shortcut
    return member


# Each enum rule's accepted spellings (stripped, upper-case): text that IS one of them is what
# the rule returns for it, without strip() and upper().
_ENUM_SPELLINGS: dict[Callable[[Any], Any], Mapping[str, StrEnum]] = {}


def _identifier(value: Any) -> str | None:
    """An id: 1-100 printable characters, surrounding whitespace stripped. Quotes, semicolons or
    SQL text are just characters: the store only ever passes ids as query parameters."""
    if value is None:
        return None
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        # A JSON integer id (12345) is accepted as its digits; 1.5 or 1E+3 is not an id.
        if isinstance(value, Decimal) and value.as_tuple().exponent != 0:
            raise _Bad(f"must be a string or an integer (got {_shown(value)})")
        value = str(value)
    if not isinstance(value, str):
        raise _Bad(f"must be a string (got {_shown(value)})")
    text = value.strip()
    if not text:
        raise _Bad("must not be empty")
    if len(text) > ID_MAX_CHARS:
        raise _Bad(f"must be at most {ID_MAX_CHARS} characters (got {len(text)})")
    if not text.isprintable():
        raise _Bad(f"must contain only printable characters (got {_shown(text)})")
    return text


_SYMBOL = re.compile(r"[A-Za-z0-9]{2,20}")


def _symbol(value: Any) -> str | None:
    if value is None:
        return None
    # ASCII is checked before upper-casing: "ß".upper() is "SS", and that is not a symbol.
    if not isinstance(value, str) or not _SYMBOL.fullmatch(value.strip()):
        raise _Bad(f"must match ^[A-Z0-9]{{2,20}}$ after upper-casing (got {_shown(value)})")
    return value.strip().upper()


def _clean(text: str) -> str:
    """Text PostgreSQL accepts: no NUL (TEXT and JSONB refuse it), no lone surrogates."""
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")


def _text(value: Any) -> str | None:
    """Free text (rejection_reason, error_message): cleaned and capped, never rejected for size."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Bad(f"must be a string (got {_shown(value)})")
    text = _clean(value.strip())
    if not text:
        return None
    return text if len(text) <= TEXT_MAX_CHARS else text[: TEXT_MAX_CHARS - 1] + "…"


def _no_constant(name: str) -> Any:
    raise _Bad(f"{name} is not allowed")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # With a key given twice, which one counts would be up to the parser: refuse to guess.
    obj: dict[str, Any] = {}
    for key, item in pairs:
        if key in obj:
            raise _Bad(f"duplicate key {key!r}")
        obj[key] = item
    return obj


def _json_object(value: Any) -> dict[str, Any]:
    """A JSON object from its text: numbers as Decimal, no NaN/Infinity, no duplicate keys."""
    if not isinstance(value, str):
        raise _Bad(f"must be a JSON object given as text (got {_shown(value)})")
    try:
        parsed = json.loads(
            value,
            parse_float=Decimal,
            parse_int=Decimal,
            parse_constant=_no_constant,
            object_pairs_hook=_unique_keys,
        )
    except RecursionError:
        raise _Bad("is not valid JSON (nested too deeply)") from None
    except ValueError as exc:
        raise _Bad(f"is not valid JSON ({exc})") from None
    if not isinstance(parsed, dict):
        kind = {list: "a list", str: "a string", bool: "a boolean", Decimal: "a number"}
        raise _Bad(f"must be a JSON object, not {kind.get(type(parsed), 'null')}")
    return parsed


def _json_value(value: Any) -> Any:
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, dict):
        return {_clean(str(key)): _json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(item) for item in value]
    if isinstance(value, Decimal | float):
        # JSON has no NaN or Infinity (math.isfinite would also call Decimal("1E+999") infinite).
        if not (value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)):
            raise _Bad(f"must not contain NaN or Infinity (got {_shown(value)})")
        return value
    if value is None or isinstance(value, bool | int):
        return value
    raise _Bad(f"must contain only JSON values (got a {type(value).__name__})")


def _metadata(value: Any) -> dict[str, Any]:
    """A JSON object, or the text of one; numbers inside are Decimal (exact, not float)."""
    if value is None:
        return {}
    obj = _json_object(value) if isinstance(value, str) else value
    if not isinstance(obj, dict):
        raise _Bad(f"must be a JSON object (got {_shown(obj)})")
    try:
        cleaned: dict[str, Any] = _json_value(obj)
    except RecursionError:
        raise _Bad("is nested too deeply") from None
    return cleaned


# --- Field types. Required ones reject None; optional ones keep None as "not given".
_positive = _amount_rule(AMOUNT_PLACES, AMOUNT_DIGITS, "positive")
_non_negative = _amount_rule(AMOUNT_PLACES, AMOUNT_DIGITS, "non-negative")
_slippage = _amount_rule(SLIPPAGE_PLACES, SLIPPAGE_DIGITS, "any")
Id = Annotated[str, BeforeValidator(_identifier)]
OptionalId = Annotated[str | None, BeforeValidator(_identifier)]
Symbol = Annotated[str, BeforeValidator(_symbol)]
OptionalSymbol = Annotated[str | None, BeforeValidator(_symbol)]
Positive = Annotated[Decimal, BeforeValidator(_positive)]
OptionalPositive = Annotated[Decimal | None, BeforeValidator(_positive)]
NonNegative = Annotated[Decimal, BeforeValidator(_non_negative)]
OptionalNonNegative = Annotated[Decimal | None, BeforeValidator(_non_negative)]
Slippage = Annotated[Decimal | None, BeforeValidator(_slippage)]
OptionalSide = Annotated[
    Side | None, BeforeValidator(_enum_rule(Side, {"LONG": Side.BUY, "SHORT": Side.SELL}))
]
OptionalOrderType = Annotated[OrderType | None, BeforeValidator(_enum_rule(OrderType))]
_STATUS_ALIASES = {
    "PARTIAL": OrderStatus.PARTIALLY_FILLED,
    "ERROR": OrderStatus.FAILED,
    "CANCELED": OrderStatus.CANCELLED,  # the US spelling exchanges use
}
OptionalStatus = Annotated[
    OrderStatus | None, BeforeValidator(_enum_rule(OrderStatus, _STATUS_ALIASES))
]
OptionalFeeType = Annotated[FeeType | None, BeforeValidator(_enum_rule(FeeType))]
Text = Annotated[str | None, BeforeValidator(_text)]
Timestamp = Annotated[datetime, BeforeValidator(_timestamp)]
Metadata = Annotated[dict[str, Any], BeforeValidator(_metadata)]

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
            raise _Bad(
                f"filled_quantity: must not exceed quantity "
                f"(got {_shown(self.filled_quantity)} > {_shown(self.quantity)})"
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

_MODELS: dict[str, type[OrderEvent] | type[FillEvent] | type[MarkEvent]] = {
    "order": OrderEvent,
    "fill": FillEvent,
    "mark": MarkEvent,
}
# `type` values a publisher may put on an entry, and the event they mean.
_TYPES: dict[str, EventKind] = {
    "order": "order",
    "order_update": "order",
    "fill": "fill",
    "mark": "mark",
    "price": "mark",
}
_ENVELOPES = ("data", "payload")


def entry_time(entry_id: str) -> datetime:
    """The time part of a Redis stream id (``"1700000000000-3"``) as a tz-aware UTC datetime."""
    match = (
        re.fullmatch(r"([0-9]{1,20})-[0-9]{1,20}", entry_id) if isinstance(entry_id, str) else None
    )
    if match:
        try:
            return _EPOCH + timedelta(milliseconds=int(match[1]))
        except OverflowError:  # beyond year 9999
            pass
    raise InvalidEventError(
        f"entry id: must be a Redis stream id '<milliseconds>-<sequence>' (got {_shown(entry_id)})"
    )


def parse_entry(kind: EventKind, fields: Mapping[str, str], entry_id: str) -> Event:
    """Validate one stream entry into an event, or raise ``InvalidEventError``.

    ``kind`` is what the stream carries; a ``type`` field on the entry overrides it. Keys the
    event does not define are kept in ``metadata`` (an explicit ``metadata`` key wins over them);
    a mark event has no metadata and ignores them. Empty or whitespace-only values mean "not
    given". Without ``timestamp`` the event time is ``entry_time(entry_id)``.
    """
    if kind not in _MODELS:  # a wiring bug, not bad data: deliberately not an InvalidEventError
        raise ValueError(f"unknown stream kind {kind!r}")
    event = _parse_fast(kind, fields, entry_id)
    return event if event is not None else _parse_validated(kind, fields, entry_id)


def _parse_validated(kind: EventKind, fields: Mapping[str, Any], entry_id: str) -> Event:
    """``parse_entry`` through pydantic: the reference, and the only source of reasons."""
    received_at = entry_time(entry_id)
    record = _unwrap(fields)
    model = _MODELS[_route(kind, record)]
    known = model.model_fields.keys()
    values = {key: value for key, value in record.items() if key in known}
    values.setdefault("timestamp", received_at)
    if "metadata" in known:
        values["metadata"] = _with_extras(record.get("metadata"), record, known)
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise InvalidEventError(_reason(exc)) from None


def _given(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _unwrap(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The entry's keys and values: the flat fields, or the JSON object in ``data``/``payload``.

    Flat fields beside an envelope (other than ``type``) are not expected by the contract. They
    are kept where the envelope is silent, and the envelope wins where both give a key: nothing a
    publisher sent is lost, and nothing inside the envelope is overridden from outside.
    """
    envelopes = [key for key in _ENVELOPES if _given(fields.get(key))]
    if len(envelopes) > 1:
        raise InvalidEventError("data, payload: give one JSON envelope, not both")
    record = {key: value for key, value in fields.items() if key not in envelopes}
    for key in envelopes:
        try:
            record.update(_json_object(fields[key]))
        except ValueError as exc:
            raise InvalidEventError(f"{key}: {exc}") from None
    return {key: value for key, value in record.items() if _given(value)}


def _route(kind: EventKind, record: dict[str, Any]) -> EventKind:
    """Which event the entry is: its ``type`` if it has one, else its stream's ``kind``.

    Pops ``type`` (it is not kept). The bot's own messages raise UnsupportedDialectError.
    """
    declared = record.pop("type", None)
    route = kind
    if declared is not None:
        name = declared.strip().lower() if isinstance(declared, str) else None
        if name == "order_result":
            raise UnsupportedDialectError(
                "type: 'order_result' is the trading bot's execution result (bot-dialect.md), "
                "which is not translated yet",
                dialect="order_result",
                record={"type": declared, **record},
            )
        if name not in _TYPES:
            raise InvalidEventError(
                f"type: must be one of {', '.join(_TYPES)} (got {_shown(declared)})"
            )
        route = _TYPES[name]
    if route == "order" and "order_id" not in record and "client_id" in record:
        # The bot's order requests have a client_id but no order_id (bot-dialect.md).
        raise UnsupportedDialectError(
            "order_id: missing; with a client_id this is the trading bot's order request "
            "(bot-dialect.md), which is not translated yet",
            dialect="order_request",
            record=record if declared is None else {"type": declared, **record},
        )
    return route


def _with_extras(explicit: Any, record: Mapping[str, Any], known: Any) -> Any:
    """Unknown keys plus the explicit ``metadata`` object, which wins where both give a key."""
    extras = {key: value for key, value in record.items() if key not in known}
    try:
        return extras | _metadata(explicit)
    except ValueError:
        return explicit  # invalid: let the model report it against the field


def _reason(exc: ValidationError) -> str:
    """One readable sentence from pydantic's errors: "field: problem; field: problem"."""
    parts = []
    for error in exc.errors(include_url=False):
        field = ".".join(str(part) for part in error["loc"])
        if error["type"] == "missing" or error["input"] is None:
            problem = "is required"
        elif error["type"] == "value_error":
            problem = str(error["ctx"]["error"])  # our own message, without pydantic's prefix
        else:
            problem = error["msg"]
        parts.append(f"{field}: {problem}" if field else problem)
    return "; ".join(parts)


# --- The fast path. parse_entry tries it first; it must never change a result. It runs the SAME
# rules (the models' own BeforeValidators, read off the models below) without pydantic's machinery,
# with one shortcut: a plain amount ("0.10", "42", "-0.5" for slippage) is Decimal(text) as-is,
# which is what its rule returns for it. Whenever anything is unusual (an envelope that does not
# decode, a bot message, a rule that refuses, a missing field, a field or validator the table
# below does not know) it returns None and the pydantic path decides, with its reason: there is
# one set of error messages. tests/unit/test_events_fast.py checks over generated entries that
# whatever it returns equals the pydantic path's event (types, Decimal exponents, times, metadata,
# fields set) and that it defers whenever the pydantic path raises.


@dataclass(frozen=True, slots=True)
class _FastModel:
    """What the fast path needs to know about a model, read off the model itself."""

    model: type[BaseModel]
    rules: dict[str, Callable[[Any], Any]]  # field -> its BeforeValidator's function
    types: dict[str, tuple[type, ...]]  # field -> exact types pydantic passes through unchanged
    nullable: frozenset[str]  # fields whose type admits None
    required: frozenset[str]
    checks: tuple[Callable[[Any], Any], ...]  # the model's "after" validators
    defaults: dict[str, Any]  # every field in definition order: its default (or a placeholder)
    factories: tuple[tuple[str, Callable[[], Any]], ...]  # fields with a default_factory

    def build(self, clean: dict[str, Any], fields_set: set[str]) -> Any:
        """The instance ``model_construct(_fields_set=fields_set, **clean)`` makes, built the way
        it builds it (pydantic.main.BaseModel.model_construct) without its per-field alias
        lookups, which cost as much as the rules. The differential test compares ``__dict__``,
        ``__pydantic_fields_set__``, ``__pydantic_extra__`` and ``__pydantic_private__``."""
        values = self.defaults.copy()  # keeps the field order; required ones are all in clean
        for name, factory in self.factories:
            if name not in clean:
                values[name] = factory()
        values.update(clean)
        event = self.model.__new__(self.model)
        object.__setattr__(event, "__dict__", values)
        object.__setattr__(event, "__pydantic_fields_set__", fields_set)
        object.__setattr__(event, "__pydantic_extra__", None)  # extra="forbid"
        object.__setattr__(event, "__pydantic_private__", None)  # no private attributes
        return event


# The "after" model validators the fast path knows how to run: they only read the event.
_KNOWN_CHECKS = frozenset({"_not_overfilled"})


def _fast_model(model: type[BaseModel]) -> _FastModel | None:
    """The fast-path table of ``model``, or None when it has anything the table cannot mirror
    (constraints, field validators, other model validators, another config): no fast path then."""
    decorators = model.__pydantic_decorators__
    if (
        model.model_config.get("extra") != "forbid"
        or decorators.field_validators
        or decorators.validators
        or decorators.root_validators
        or not set(decorators.model_validators) <= _KNOWN_CHECKS
        or any(d.info.mode != "after" for d in decorators.model_validators.values())
        or model.__pydantic_post_init__ is not None
        or model.__private_attributes__
        or model.__pydantic_root_model__
    ):
        return None
    rules: dict[str, Callable[[Any], Any]] = {}
    types: dict[str, tuple[type, ...]] = {}
    nullable = set()
    for name, info in model.model_fields.items():
        if len(info.metadata) != 1 or not isinstance(info.metadata[0], BeforeValidator):
            return None
        rules[name] = info.metadata[0].func  # type: ignore[assignment]  # a plain function here
        args = get_args(info.annotation) if get_origin(info.annotation) is UnionType else ()
        members = args or (info.annotation,)
        if type(None) in members:
            nullable.add(name)
        exact = tuple(get_origin(t) or t for t in members if t is not type(None))
        if not all(t in _PASSED_THROUGH or issubclass(t, StrEnum) for t in exact):
            return None
        types[name] = exact
    checks = tuple(getattr(model, name) for name in sorted(decorators.model_validators))
    required = frozenset(name for name, info in model.model_fields.items() if info.is_required())
    defaults = {
        name: None if info.is_required() or info.default_factory else info.default
        for name, info in model.model_fields.items()
    }
    factories = tuple(
        (name, info.default_factory)
        for name, info in model.model_fields.items()
        if info.default_factory is not None
    )
    if any(not _takes_no_arguments(factory) for _, factory in factories):
        return None
    return _FastModel(
        model,
        rules,
        types,
        frozenset(nullable),
        required,
        checks,
        defaults,
        factories,  # type: ignore[arg-type]
    )


def _takes_no_arguments(factory: Callable[..., Any]) -> bool:
    """pydantic also accepts a default_factory taking the validated data: not mirrored here."""
    try:
        return not inspect.signature(factory).parameters
    except (TypeError, ValueError):  # builtins such as dict have no signature on some versions
        return factory in (dict, list)


# Types whose exact instances pydantic's core validation returns unchanged (dict: an equal copy).
_PASSED_THROUGH: frozenset[type] = frozenset({str, Decimal, datetime, dict})


def _plain_amount(places: int, digits: int, signed: bool) -> re.Pattern[str]:
    """Text its amount rule returns as Decimal(text): at most ``digits`` integer and ``places``
    decimal digits (so no rounding and no range error), no spaces, no exponent."""
    sign = "-?" if signed else ""
    return re.compile(f"{sign}[0-9]{{1,{digits}}}(?:\\.[0-9]{{1,{places}}})?")


_PLAIN_AMOUNTS: dict[Callable[[Any], Any], re.Pattern[str]] = {
    _positive: _plain_amount(AMOUNT_PLACES, AMOUNT_DIGITS, signed=False),
    _non_negative: _plain_amount(AMOUNT_PLACES, AMOUNT_DIGITS, signed=False),
    _slippage: _plain_amount(SLIPPAGE_PLACES, SLIPPAGE_DIGITS, signed=True),
}


_DEFER: Any = object()  # "let the pydantic path decide"


def _fast_value(spec: _FastModel, key: str, value: Any) -> Any:
    """The value pydantic would store for ``key``, or ``_DEFER``."""
    rule = spec.rules.get(key)
    if rule is None:  # extra="forbid"
        return _DEFER
    shortcut = _SHORTCUTS.get(rule)
    if shortcut is not None and type(value) in _SHORTCUT_TYPES:
        result = shortcut(rule, value)
        if result is not _NO_SHORTCUT:
            return result
    try:
        result = rule(value)
    except Exception:  # the pydantic path raises it again, with its reason
        return _DEFER
    if result is None:
        return None if key in spec.nullable else _DEFER
    return result if type(result) in spec.types[key] else _DEFER


# --- Shortcuts: for the common, plain form of a value, what its rule returns, computed with less
# work; anything else (_NO_SHORTCUT) goes through the rule itself. Each is covered by the
# differential test, which feeds both plain and odd forms.
_NO_SHORTCUT: Any = object()
_SHORTCUT_TYPES = frozenset({str, dict})


def _plain_number(rule: Callable[[Any], Any], value: Any) -> Any:
    """ "0.10", "42": Decimal(text), as the amount rule gives for text within the column's
    digits and places; 0 and -0 are left to the rule (sign rules, no "-0")."""
    if type(value) is str and _PLAIN_AMOUNTS[rule].fullmatch(value):
        number = Decimal(value)
        if not number.is_zero():
            return number
    return _NO_SHORTCUT


def _exact_spelling(rule: Callable[[Any], Any], value: Any) -> Any:
    """ "BUY", "PARTIAL": an accepted spelling as it stands (no spaces, upper-case)."""
    found = _ENUM_SPELLINGS[rule].get(value) if type(value) is str else None
    return _NO_SHORTCUT if found is None else found


def _zulu_time(rule: Callable[[Any], Any], value: Any) -> Any:
    """ "2099-01-01T00:00:00.123Z": the rule's ISO path (no surrounding spaces, not a number, so
    no strip and no number match), already UTC, within the years the rule accepts."""
    if type(value) is str and value[-1:] == "Z" and value[:1].isdigit():
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return _NO_SHORTCUT
        if moment.tzinfo is UTC and _EARLIEST <= moment < _LATEST:
            return moment
    return _NO_SHORTCUT


def _plain_metadata(rule: Callable[[Any], Any], value: Any) -> Any:
    """A flat object of ASCII text without NUL (extra flat fields): ``_clean`` changes none of
    it, so the rule's result is an equal copy."""
    if type(value) is dict and all(
        type(k) is str and type(v) is str and k.isascii() and v.isascii()
        and "\x00" not in k and "\x00" not in v
        for k, v in value.items()
    ):  # fmt: skip
        return dict(value)
    return _NO_SHORTCUT


_SHORTCUTS: dict[Callable[[Any], Any], Callable[[Callable[[Any], Any], Any], Any]] = {
    **dict.fromkeys(_PLAIN_AMOUNTS, _plain_number),
    **dict.fromkeys(_ENUM_SPELLINGS, _exact_spelling),
    _timestamp: _zulu_time,
    _metadata: _plain_metadata,
}


def _construct(spec: _FastModel, values: Mapping[str, Any]) -> Any:
    """``spec.model.model_validate(values)`` when it would succeed, else None (see above)."""
    if not spec.required <= values.keys():
        return None
    clean: dict[str, Any] = {}
    for key, value in values.items():
        result = _fast_value(spec, key, value)
        if result is _DEFER:
            return None
        clean[key] = result
    event = spec.build(clean, set(values))
    try:
        for check in spec.checks:
            check(event)
    except Exception:  # as above
        return None
    return event


_FAST_MODELS: dict[type[BaseModel], _FastModel | None] = {}


# The instance layout _FastModel.build fills in (pydantic 2's BaseModel); another pydantic that
# lays instances out differently gets no fast path rather than half-built events.
_INSTANCE_SLOTS = (
    "__dict__",
    "__pydantic_fields_set__",
    "__pydantic_extra__",
    "__pydantic_private__",
)


def _fast_spec(model: type[BaseModel]) -> _FastModel | None:
    if model not in _FAST_MODELS:
        spec = None
        if tuple(BaseModel.__slots__) == _INSTANCE_SLOTS:
            try:
                spec = _fast_model(model)
            except Exception:  # pydantic internals moved: validate the slow way, never crash
                spec = None
        _FAST_MODELS[model] = spec
    return _FAST_MODELS[model]


def validate(model: type[_ModelT], values: Mapping[str, Any]) -> _ModelT:
    """``model.model_validate(values)``, through the fast path when it can decide.

    Raises pydantic's ``ValidationError`` like ``model_validate``."""
    spec = _fast_spec(model)
    event = _construct(spec, values) if spec is not None else None
    return event if event is not None else model.model_validate(values)


_LAST_ENTRY_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last time entry_time gives


def _entry_id_valid(entry_id: Any) -> bool:
    """``entry_time(entry_id)`` would not raise; checked without building the datetime, which
    is needed only when the entry has no ``timestamp``."""
    if type(entry_id) is not str:
        return False
    ms, dash, seq = entry_id.partition("-")
    return (
        dash == "-"
        and 0 < len(ms) <= 20  # entry_time's pattern: [0-9]{1,20}-[0-9]{1,20}
        and 0 < len(seq) <= 20
        and ms.isascii()
        and ms.isdigit()
        and seq.isascii()
        and seq.isdigit()
        and int(ms) <= _LAST_ENTRY_MS
    )


def _parse_fast(kind: EventKind, fields: Mapping[str, Any], entry_id: str) -> Event | None:
    """``_parse_validated``'s event for a well-formed entry, or None to let it decide.

    One exception: the bot's messages raise ``UnsupportedDialectError`` here, from the same
    ``_route`` call on the same record as ``_parse_validated`` (so with the same reason, dialect
    and record); it is the routing signal to ``dialect.translate``, and decoding the entry twice
    would cost bot messages ~3 µs each for nothing."""
    if not _entry_id_valid(entry_id):
        return None
    try:
        if "data" in fields or "payload" in fields:
            record = _unwrap(fields)
        else:
            record = {}
            for key, value in fields.items():
                if type(value) is not str:
                    return None
                if value.strip():  # _given for text
                    record[key] = value
        model = _MODELS[_route(kind, record)]
    except UnsupportedDialectError:
        raise
    except InvalidEventError:  # the slow path raises it again, with its reason
        return None
    spec = _fast_spec(model)
    if spec is None:
        return None
    values = {key: value for key, value in record.items() if key in spec.rules}
    if "timestamp" not in values:
        values["timestamp"] = entry_time(entry_id)
    if "metadata" in spec.rules:
        values["metadata"] = _with_extras(record.get("metadata"), record, spec.rules.keys())
    event: Event | None = _construct(spec, values)
    return event
