"""One stream entry in, one decision out: ``parse`` gives the event, or the ``Rejection`` with the
reason the dead-letter stream shows.

An entry is flat string fields, or one ``data``/``payload`` field holding a JSON object (events.md).
``parse`` reads it in three steps, each of which may refuse it with its reason:

1. the entry id (an event without ``timestamp`` takes its time, so replaying a stream gives
   exactly what the live run stored);
2. the envelope, decoded into the entry's record (empty values dropped);
3. the route, by LOOKING at the record: its ``type`` if it has one (``order_result`` is the
   trading bot's execution result), else its stream's kind, and an order with a ``client_id``
   but no ``order_id`` is the bot's order request (bot-dialect.md).

The route picks the translator from a table: the contract's models (``events.py``, through the
fast path of ``fastpath.py``, pydantic wording the reasons) or the bot's dialect (``dialect.py``).
Before all that, ``shapes.decide`` takes the plain contract entries publishers send all day in one
pass (the same event, never a rejection); whatever it leaves goes the three steps above.
Pure: no I/O and no clock.

``parse_entry`` is the contract alone, for code that raises: the event, else
``InvalidEventError``; the bot's messages raise ``UnsupportedDialectError``.
"""

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Literal, TypeAlias

from pydantic import ValidationError

from consumer import dialect, shapes
from consumer.events import (
    MODELS,
    Event,
    EventKind,
    FillEvent,
    InvalidEventError,
    MarkEvent,
    OrderEvent,
    Rejection,
    UnsupportedDialectError,
    entry_time,
)
from consumer.fastpath import FastModel, construct, fast_spec
from consumer.fields import json_object, metadata, shown, validation_reason

__all__ = ["Rejection", "parse", "parse_entry"]

Route = Literal["order", "fill", "mark", "order_result", "order_request"]
_Model: TypeAlias = type[OrderEvent] | type[FillEvent] | type[MarkEvent]
_Translator = Callable[[dict[str, Any], str, dialect.DialectOptions | None], Event | Rejection]

# `type` values a publisher may put on an entry, and the event they mean.
_TYPES: dict[str, EventKind] = {
    "order": "order",
    "order_update": "order",
    "fill": "fill",
    "mark": "mark",
    "price": "mark",
}
# ... and the one the bot puts on its execution results.
_DECLARED: dict[str, Route] = {**_TYPES, dialect.RESULT: dialect.RESULT}
_ENVELOPES = ("data", "payload")


def parse(
    kind: EventKind,
    fields: Mapping[str, Any],
    entry_id: str,
    options: dialect.DialectOptions | None = None,
) -> Event | Rejection:
    """The event in one stream entry, or its ``Rejection``.

    ``kind`` is what the stream carries; a ``type`` field on the entry overrides it. Keys the
    event does not define are kept in ``metadata`` (an explicit ``metadata`` key wins over them);
    a mark event has no metadata and ignores them. Empty or whitespace-only values mean "not
    given". Without ``timestamp`` the event time is ``entry_time(entry_id)``. The bot's messages
    are translated with ``options``.
    """
    event = shapes.decide(kind, fields, entry_id)  # the usual entries, in one pass
    if event is not None:
        return event  # type: ignore[no-any-return]
    return _parse_reference(kind, fields, entry_id, options)


def _parse_reference(
    kind: EventKind,
    fields: Mapping[str, Any],
    entry_id: str,
    options: dialect.DialectOptions | None = None,
) -> Event | Rejection:
    """``parse`` without ``shapes.decide``: how every entry was decided before it, and how the
    entries it leaves are; the reference tests/unit/test_shapes.py compares ``parse`` with."""
    if kind not in MODELS:  # a wiring bug, not bad data: deliberately not a Rejection
        raise ValueError(f"unknown stream kind {kind!r}")
    read = _read(kind, fields, entry_id)
    if isinstance(read, Rejection):
        return read
    route, record, _ = read
    return _TRANSLATORS[route](record, entry_id, options)


def _read(
    kind: EventKind, fields: Mapping[str, Any], entry_id: str
) -> tuple[Route, dict[str, Any], Any] | Rejection:
    """The entry's route, its record (``type`` taken out) and the ``type`` it declared; or the
    rejection of its id, envelope or type, in that order."""
    if not _entry_id_valid(entry_id):
        try:
            entry_time(entry_id)
        except InvalidEventError as exc:
            return Rejection(exc.reason)
    if "data" in fields or "payload" in fields:
        record = _unwrap(fields)
        if isinstance(record, Rejection):
            return record
    else:  # the usual flat entry, in one pass (what _unwrap makes of it)
        record = {
            key: value
            for key, value in fields.items()
            if (value.strip() if type(value) is str else _given(value))
        }
    declared = record.pop("type", None)
    route = _route(kind, declared, record)
    if isinstance(route, Rejection):
        return route
    return route, record, declared


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


def _given(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _unwrap(fields: Mapping[str, Any]) -> dict[str, Any] | Rejection:
    """The entry's keys and values: the flat fields, or the JSON object in ``data``/``payload``.

    Flat fields beside an envelope (other than ``type``) are not expected by the contract. They
    are kept where the envelope is silent, and the envelope wins where both give a key: nothing a
    publisher sent is lost, and nothing inside the envelope is overridden from outside.
    """
    envelopes = [key for key in _ENVELOPES if _given(fields.get(key))]
    if len(envelopes) > 1:
        return Rejection("data, payload: give one JSON envelope, not both")
    record = {key: value for key, value in fields.items() if key not in envelopes}
    for key in envelopes:
        try:
            record.update(json_object(fields[key]))
        except ValueError as exc:
            return Rejection(f"{key}: {exc}")
    return {key: value for key, value in record.items() if _given(value)}


def _route(kind: EventKind, declared: Any, record: Mapping[str, Any]) -> Route | Rejection:
    """Which translator the entry goes to: its ``type`` if it declared one, else its stream's
    ``kind``; an order with a ``client_id`` and no ``order_id`` is the bot's order request."""
    route: Route = kind
    if declared is not None:
        name = declared.strip().lower() if isinstance(declared, str) else None
        found = _DECLARED.get(name) if name is not None else None
        if found is None:
            return Rejection(f"type: must be one of {', '.join(_TYPES)} (got {shown(declared)})")
        route = found
    if route == "order" and "order_id" not in record and "client_id" in record:
        return dialect.REQUEST
    return route


# --- the contract ------------------------------------------------------------------------------


def _values(known: Any, record: Mapping[str, Any], entry_id: str) -> dict[str, Any]:
    """The model's input: the record's keys it defines, the entry's time when it gives none,
    and (if the model has metadata) the other keys with the explicit ``metadata`` object, which
    wins where both give a key (an invalid one is left for the model to report)."""
    values = {key: value for key, value in record.items() if key in known}
    if "timestamp" not in values:
        values["timestamp"] = entry_time(entry_id)
    if "metadata" in known:
        extras = {key: value for key, value in record.items() if key not in known}
        explicit = record.get("metadata")
        if explicit is None:
            values["metadata"] = extras
        else:
            try:
                values["metadata"] = extras | metadata(explicit)
            except ValueError:
                values["metadata"] = explicit
    return values


def _validated(model: _Model, values: Mapping[str, Any]) -> Event | Rejection:
    """``model.model_validate(values)``, pydantic wording the rejection."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        return Rejection(validation_reason(exc))


def _contract_event(
    model: _Model,
    spec: FastModel | None,
    record: Mapping[str, Any],
    entry_id: str,
    options: dialect.DialectOptions | None = None,
) -> Event | Rejection:
    """The contract event ``model`` makes of ``record``: the fast path (``spec``, the model's
    table) when it decides, which gives exactly pydantic's event, else pydantic. ``options`` are
    the dialect's, not needed here."""
    if spec is None:
        return _validated(model, _values(model.model_fields, record, entry_id))
    values = _values(spec.rules, record, entry_id)
    event: Event | None = construct(spec, values)
    return event if event is not None else _validated(model, values)


def _contract(model: _Model) -> _Translator:
    return partial(_contract_event, model, fast_spec(model))


_TRANSLATORS: dict[Route, _Translator] = {
    "order": _contract(OrderEvent),
    "fill": _contract(FillEvent),
    "mark": _contract(MarkEvent),
    dialect.RESULT: dialect.translate_result,
    dialect.REQUEST: dialect.translate_request,
}


# --- the contract alone, raising -----------------------------------------------------------------

_BOT_MESSAGES = {
    dialect.RESULT: "type: 'order_result' is the trading bot's execution result (bot-dialect.md), "
    "which is not translated yet",
    dialect.REQUEST: "order_id: missing; with a client_id this is the trading bot's order request "
    "(bot-dialect.md), which is not translated yet",
}


def parse_entry(kind: EventKind, fields: Mapping[str, str], entry_id: str) -> Event:
    """``parse`` for the contract alone: the event, else ``InvalidEventError`` with the reason.
    The bot's messages raise ``UnsupportedDialectError`` (their record and dialect attached)."""
    if kind not in MODELS:  # a wiring bug, not bad data: deliberately not an InvalidEventError
        raise ValueError(f"unknown stream kind {kind!r}")
    model, record = _contract_read(kind, fields, entry_id)
    return _raised(_contract_event(model, fast_spec(model), record, entry_id))


def _contract_read(
    kind: EventKind, fields: Mapping[str, Any], entry_id: str
) -> tuple[_Model, dict[str, Any]]:
    read = _read(kind, fields, entry_id)
    if isinstance(read, Rejection):
        raise InvalidEventError(read.reason)
    route, record, declared = read
    if route in _BOT_MESSAGES:
        raise UnsupportedDialectError(
            _BOT_MESSAGES[route],
            dialect=route,
            record=record if declared is None else {"type": declared, **record},
        )
    return MODELS[route], record


def _raised(result: Event | Rejection) -> Event:
    if isinstance(result, Rejection):
        raise InvalidEventError(result.reason)
    return result


def _parse_validated(kind: EventKind, fields: Mapping[str, Any], entry_id: str) -> Event:
    """``parse_entry`` through pydantic alone: the reference the fast path is tested against."""
    model, record = _contract_read(kind, fields, entry_id)
    return _raised(_validated(model, _values(model.model_fields, record, entry_id)))


def _parse_fast(kind: EventKind, fields: Mapping[str, Any], entry_id: str) -> Event | None:
    """``parse_entry`` through the fast path alone: the event, or None where it does not decide
    (the bot's messages raise ``UnsupportedDialectError`` as in ``parse_entry``)."""
    try:
        model, record = _contract_read(kind, fields, entry_id)
    except UnsupportedDialectError:
        raise
    except InvalidEventError:
        return None
    spec = fast_spec(model)
    if spec is None:
        return None
    event: Event | None = construct(spec, _values(spec.rules, record, entry_id))
    return event
