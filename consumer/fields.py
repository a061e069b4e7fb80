"""The field rules of the event contract (events.md): one function per kind of value.

Each rule takes a raw value (a string from Redis, a JSON value, or a Python value from direct
construction), returns the clean value or None for None, and raises ``BadValue`` with a message
that does not name the field: pydantic reports where it failed and ``validation_reason`` joins
both into the one sentence the dead-letter stream shows. Every value a rule returns already fits
the schema (``DECIMAL(18,8)`` amounts, ids of at most 100 characters, symbols matching
``^[A-Z0-9]{2,20}$``, tz-aware UTC times, JSON that PostgreSQL's JSONB takes). Pure: no I/O, no
clock.

The models in ``events.py`` attach these rules to their fields; ``fastpath.py`` runs the same
rules without pydantic, and reads ``AMOUNT_SHAPES`` and ``ENUM_SPELLINGS`` for its shortcuts.
"""

import contextlib
import json
import math
import re
from collections.abc import Callable, Mapping
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
from typing import Any, Literal, TypeVar

from pydantic import ValidationError

# Limits, from schema.md.
ID_MAX_CHARS = 100  # order_id, client_id, fill_id: VARCHAR(100) (widened for the bot's 54)
TEXT_MAX_CHARS = 2000  # rejection_reason, error_message are TEXT; longer values are truncated
AMOUNT_PLACES, AMOUNT_DIGITS = 8, 10  # DECIMAL(18,8): 8 decimals, |v| < 10^10
SLIPPAGE_PLACES, SLIPPAGE_DIGITS = 6, 4  # DECIMAL(10,6): 6 decimals, |v| < 10^4
EPOCH_MS_FROM = 10**11  # epoch values below this are seconds, from it on milliseconds
YEAR_MIN, YEAR_MAX = 2000, 2100  # anything outside is a unit or clock mistake, not trading


class BadValue(ValueError):
    """A value that breaks the contract. A ValueError even when the *type* is wrong (a list where a
    string belongs), because pydantic turns only ValueErrors into validation errors: a TypeError
    would escape parsing as a crash instead of a dead letter."""


# Plain decimal notation only: Decimal() alone would also take "1_000", "NaN" and non-ASCII digits.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NON_FINITE = frozenset({"nan", "snan", "inf", "infinity"})
# Exact arithmetic for shifting and rounding: no precision or exponent limit gets in the way.
EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, rounding=ROUND_HALF_EVEN)


def shown(value: Any) -> str:
    """The offending value for a reason: quoted, and short enough for a log line."""
    if isinstance(value, Decimal) and value.is_finite() and abs(value.adjusted()) <= 20:
        text = f"{value:f}"  # 0.000000005, not 5E-9
    else:
        text = value if isinstance(value, str) else str(value)
    return repr(text if len(text) <= 40 else text[:40] + "…")


def to_decimal(value: Any) -> Decimal:
    """A finite Decimal from a JSON number, an int or a numeric string; never through float."""
    if isinstance(value, bool):
        raise BadValue(f"must be a number, not a boolean (got {shown(value)})")
    if isinstance(value, float):  # only from code: JSON numbers are parsed as Decimal
        raise BadValue(
            f"must be a Decimal, int or numeric string, not a float (got {shown(value)})"
        )
    if isinstance(value, str) and value.strip().lstrip("+-").lower() in _NON_FINITE:
        raise BadValue(f"must be a finite number (got {shown(value)})")
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
        raise BadValue(f"must be a decimal number (got {shown(value)})")
    if not number.is_finite():
        raise BadValue(f"must be a finite number (got {shown(value)})")
    return number


Sign = Literal["positive", "non-negative", "any"]


def amount_rule(places: int, digits: int, sign: Sign) -> Callable[[Any], Decimal | None]:
    """A rule for a DECIMAL(digits + places, places) column and the given sign."""
    step = Decimal(1).scaleb(-places)
    column = f"DECIMAL({digits + places},{places})"

    def amount(value: Any) -> Decimal | None:
        if value is None:
            return None
        number = to_decimal(value)
        if number.adjusted() >= digits:  # checked first: rounding 1E+999999 would be costly
            raise BadValue(
                f"too large for {column}, must be below 10^{digits} (got {shown(value)})"
            )
        exponent = number.as_tuple().exponent
        if isinstance(exponent, int) and (exponent < -places or exponent > 0):
            # More decimals than the column keeps: round as PostgreSQL does (half-even), so what
            # we validate is what gets stored. A positive exponent (1E+3) is written out (1000).
            number = number.quantize(step if exponent < 0 else Decimal(1), context=EXACT)
        if number.adjusted() >= digits:  # 9999999999.999999999 rounds up to 10^10
            raise BadValue(
                f"too large for {column}, must be below 10^{digits} (got {shown(value)})"
            )
        if sign == "positive" and number <= 0:
            rounded = f", and rounds to 0 at {places} decimal places" if number.is_zero() else ""
            raise BadValue(f"must be greater than 0{rounded} (got {shown(value)})")
        if sign == "non-negative" and number < 0:
            raise BadValue(f"must not be negative (got {shown(value)})")
        return abs(number) if number.is_zero() else number  # no "-0" in the database

    AMOUNT_SHAPES[amount] = (places, digits, sign)  # the fast path's plain-number shortcut
    return amount


# Each amount rule's column shape (decimal places, integer digits, sign): text of at most that
# many digits and places, without sign, spaces or exponent, is what the rule returns as Decimal.
AMOUNT_SHAPES: dict[Callable[[Any], Any], tuple[int, int, Sign]] = {}


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EARLIEST, LATEST = datetime(YEAR_MIN, 1, 1, tzinfo=UTC), datetime(YEAR_MAX + 1, 1, 1, tzinfo=UTC)
_TIMESTAMP_FORMS = "an ISO-8601 date-time or epoch seconds/milliseconds"


def timestamp(value: Any) -> datetime:
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
            raise BadValue(f"must be {_TIMESTAMP_FORMS} (got {shown(value)})") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        try:
            moment = moment.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00+01:00 has no UTC datetime
            moment = None
    else:
        try:
            number = to_decimal(value)
        except ValueError:
            raise BadValue(f"must be {_TIMESTAMP_FORMS} (got {shown(value)})") from None
        # copy_abs, not abs(): abs() rounds in the default context, and 1E+999999999 overflows it.
        millis = number.copy_abs() >= EPOCH_MS_FROM
        read_as = "epoch milliseconds" if millis else "epoch seconds"
        micros = EXACT.scaleb(number, Decimal(3 if millis else 6))
        moment = None
        # Bounded before int(): int() of 1E+999999999 would build a billion-digit integer.
        if micros.copy_abs() < 10**18:
            with contextlib.suppress(OverflowError):  # before year 1 or after 9999
                moment = EPOCH + timedelta(microseconds=int(micros.to_integral_value(ROUND_FLOOR)))
    if moment is None or not EARLIEST <= moment < LATEST:
        year = f"year {moment.year} is" if moment else "is far"
        raise BadValue(
            f"{year} outside {YEAR_MIN}-{YEAR_MAX} (got {shown(value)}, read as {read_as})"
        )
    return moment


_StrEnumT = TypeVar("_StrEnumT", bound=StrEnum)


def enum_rule(
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
            raise BadValue(f"must be one of {listing} (got {shown(value)})")
        return found

    ENUM_SPELLINGS[member] = accepted  # the fast path's exact-spelling shortcut
    return member


# Each enum rule's accepted spellings (stripped, upper-case): text that IS one of them is what
# the rule returns for it, without strip() and upper().
ENUM_SPELLINGS: dict[Callable[[Any], Any], Mapping[str, StrEnum]] = {}


def identifier(value: Any) -> str | None:
    """An id: 1-100 printable characters, surrounding whitespace stripped. Quotes, semicolons or
    SQL text are just characters: the store only ever passes ids as query parameters."""
    if value is None:
        return None
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        # A JSON integer id (12345) is accepted as its digits; 1.5 or 1E+3 is not an id.
        if isinstance(value, Decimal) and value.as_tuple().exponent != 0:
            raise BadValue(f"must be a string or an integer (got {shown(value)})")
        value = str(value)
    if not isinstance(value, str):
        raise BadValue(f"must be a string (got {shown(value)})")
    text = value.strip()
    if not text:
        raise BadValue("must not be empty")
    if len(text) > ID_MAX_CHARS:
        raise BadValue(f"must be at most {ID_MAX_CHARS} characters (got {len(text)})")
    if not text.isprintable():
        raise BadValue(f"must contain only printable characters (got {shown(text)})")
    return text


_SYMBOL = re.compile(r"[A-Za-z0-9]{2,20}")


def symbol(value: Any) -> str | None:
    """A trading pair: 2-20 ASCII letters and digits, stored upper-case."""
    if value is None:
        return None
    # ASCII is checked before upper-casing: "ß".upper() is "SS", and that is not a symbol.
    if not isinstance(value, str) or not _SYMBOL.fullmatch(value.strip()):
        raise BadValue(f"must match ^[A-Z0-9]{{2,20}}$ after upper-casing (got {shown(value)})")
    return value.strip().upper()


def clean(text: str) -> str:
    """Text PostgreSQL accepts: no NUL (TEXT and JSONB refuse it), no lone surrogates."""
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")


def free_text(value: Any) -> str | None:
    """Free text (rejection_reason, error_message): cleaned and capped, never rejected for size."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadValue(f"must be a string (got {shown(value)})")
    text = clean(value.strip())
    if not text:
        return None
    return text if len(text) <= TEXT_MAX_CHARS else text[: TEXT_MAX_CHARS - 1] + "…"


def _no_constant(name: str) -> Any:
    raise BadValue(f"{name} is not allowed")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # With a key given twice, which one counts would be up to the parser: refuse to guess.
    obj: dict[str, Any] = {}
    for key, item in pairs:
        if key in obj:
            raise BadValue(f"duplicate key {key!r}")
        obj[key] = item
    return obj


def json_object(value: Any) -> dict[str, Any]:
    """A JSON object from its text: numbers as Decimal, no NaN/Infinity, no duplicate keys."""
    if not isinstance(value, str):
        raise BadValue(f"must be a JSON object given as text (got {shown(value)})")
    try:
        parsed = json.loads(
            value,
            parse_float=Decimal,
            parse_int=Decimal,
            parse_constant=_no_constant,
            object_pairs_hook=_unique_keys,
        )
    except RecursionError:
        raise BadValue("is not valid JSON (nested too deeply)") from None
    except ValueError as exc:
        raise BadValue(f"is not valid JSON ({exc})") from None
    if not isinstance(parsed, dict):
        kind = {list: "a list", str: "a string", bool: "a boolean", Decimal: "a number"}
        raise BadValue(f"must be a JSON object, not {kind.get(type(parsed), 'null')}")
    return parsed


def _json_value(value: Any) -> Any:
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return {clean(str(key)): _json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(item) for item in value]
    if isinstance(value, Decimal | float):
        # JSON has no NaN or Infinity (math.isfinite would also call Decimal("1E+999") infinite).
        if not (value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)):
            raise BadValue(f"must not contain NaN or Infinity (got {shown(value)})")
        return value
    if value is None or isinstance(value, bool | int):
        return value
    raise BadValue(f"must contain only JSON values (got a {type(value).__name__})")


def metadata(value: Any) -> dict[str, Any]:
    """A JSON object, or the text of one; numbers inside are Decimal (exact, not float)."""
    if value is None:
        return {}
    obj = json_object(value) if isinstance(value, str) else value
    if not isinstance(obj, dict):
        raise BadValue(f"must be a JSON object (got {shown(obj)})")
    try:
        cleaned: dict[str, Any] = _json_value(obj)
    except RecursionError:
        raise BadValue("is nested too deeply") from None
    return cleaned


def validation_reason(exc: ValidationError) -> str:
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
