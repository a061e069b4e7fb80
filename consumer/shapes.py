"""Entry shapes: the contract's common entries decided in one pass, or "let ``parse`` decide".

``decide(kind, fields, entry_id)`` is ``parse.parse(kind, fields, entry_id)`` for the entries
publishers send all day (flat string fields, or one ``data``/``payload`` envelope of string
values, every value in its plain form) and None for everything else, which ``parse`` then
decides as before, wording the reason. It may only ACCEPT, and only with the very event
``parse`` gives: same model, values of the same types (Decimal exponents, tz-aware UTC times),
metadata with its key order, fields set.

The work per entry is cut by doing once per SHAPE (the entry's keys, in order) what ``parse``
does per entry: which keys the model defines, which rule reads each, which are metadata, the
fields set, whether the model's "after" check can act at all. A shape's ``Plan`` is built once,
from the model's fast-path table (``fastpath.fast_spec``, itself read off the model), and then an
entry is: its id checked, its values exact text, each in the plain form its field's *strict*
check (``_strict_check``: C callables, no Python frame per value) takes, converted to what the
field's rule returns for it, and the instance built as ``model_construct`` builds it.

A shape gets no plan (None: always ``parse``) when it holds a key the contract treats specially
(``type``, ``data``, ``payload``, ``metadata``), a key that is not a ``str``, lacks a required
field, or names a field whose rule has no strict check here. A JSON envelope is decoded with
msgspec into ``dict[str, str]`` and taken only when its text has no backslash and exactly four
quotes per member: then every ``"`` delimits a string, so no key came twice (``json_object``
refuses duplicates) and every value was a JSON string (numbers would be Decimals there).

tests/unit/test_shapes.py checks each strict check against its rule over generated values, and
tests/unit/test_parse_differential.py checks ``parse`` (which calls this first) against the frozen
old decision over valid and malformed entries.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from operator import call, itemgetter
from typing import Any

import msgspec
from pydantic import BaseModel

from consumer import fastpath, fields
from consumer.events import MODELS, EventKind, entry_time
from consumer.fastpath import FastModel, fast_spec

__all__ = ["decide"]

# Keys parse treats specially wherever they stand: never in a plan.
_SPECIAL = frozenset({"type", "data", "payload", "metadata"})


# --- strict checks ----------------------------------------------------------------------------
# A field's strict check is a pattern and a C callable: text that fully matches the pattern is
# the plain form of a value, and for it the callable (``Decimal``, ``str.upper``, ...) gives what
# the field's rule returns. No pattern matches NUL, so a plan checks all of an entry's values
# (and its id) with ONE match of their patterns joined by NULs, against the values joined by
# NULs: it matches exactly when each value matches its own pattern.

_Check = tuple[str, Callable[[str], Any] | None]  # None: the rule returns the text as it is


def _amount(places: int, digits: int, sign: fields.Sign) -> _Check:
    """ "0.10", "42": at most ``digits`` integer and ``places`` decimal digits, no spaces, no
    exponent, so the rule neither rounds nor refuses it and returns ``Decimal(text)``. A positive
    amount must have a digit other than 0; a non-negative one may be zero, but unsigned (the
    rule's ``abs`` of an unsigned zero is itself); a signed one ("any") must not be zero (the
    rule turns "-0" into 0)."""
    minus = "-?" if sign == "any" else ""
    nonzero = "(?=[0-9.]*[1-9])" if sign != "non-negative" else ""
    return f"{minus}{nonzero}[0-9]{{1,{digits}}}(?:\\.[0-9]{{1,{places}}})?", Decimal


def _spelling(spellings: Mapping[str, Any]) -> _Check | None:
    """ "BUY", "PARTIAL": an accepted spelling as it stands (they are stripped, upper-case; one
    that is not plain [A-Z_] leaves the field to parse)."""
    if not all(_PLAIN_SPELLING.fullmatch(spelling) for spelling in spellings):
        return None
    return "(?:" + "|".join(sorted(spellings, key=len, reverse=True)) + ")", dict(spellings).get


_PLAIN_SPELLING = re.compile("[A-Z_]+")
# "2099-01-01T00:00:00.123Z": not a number (the rule's epoch path), nothing to strip, years
# 2000-2100 (the rule's range: EARLIEST <= t < LATEST), "Z" (datetime.fromisoformat gives UTC
# itself, so astimezone changes nothing). A date that does not exist raises ValueError there.
_ZULU = r"(?:20[0-9]{2}|2100)-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?Z"
# 1-100 printable ASCII characters, the first and last not a space: ``identifier`` strips
# nothing and returns the text (other printable text is left to the rule).
_ASCII_ID = f"[!-~](?:[ -~]{{0,{fields.ID_MAX_CHARS - 2}}}[!-~])?"
# Printable ASCII, not blank, nothing to strip, within the cap: ``free_text`` returns it as is.
_ASCII_TEXT = f"[!-~](?:[ -~]{{0,{fields.TEXT_MAX_CHARS - 2}}}[!-~])?"
_SYMBOL = "[A-Za-z0-9]{2,20}"  # ``symbol`` upper-cases it
# An extra key's value, which metadata keeps as it is: ASCII without NUL (``fields.clean``
# changes nothing) and not blank (str.isspace ASCII first, then one that is not: else it is
# "not given" and dropped, left to parse). A mark ignores its extra keys: any text without NUL.
_EXTRA_TEXT = r"[\t-\r\x1c-\x20]*[\x01-\x08\x0e-\x1b!-\x7f][\x01-\x7f]*"
_IGNORED_TEXT = r"[^\x00]*"
_EXTRA_KEY = re.compile(r"[\x01-\x7f]*")
_ENTRY_ID = "[0-9]{1,14}-[0-9]{1,20}"  # entry_time gives its time: below 253402300799999 ms


def _strict_check(rule: Callable[[Any], Any]) -> _Check | None:
    """The strict check of ``rule``, or None: a field this module leaves to parse."""
    shape = fields.AMOUNT_SHAPES.get(rule)
    if shape is not None:
        return _amount(*shape)
    spellings = fields.ENUM_SPELLINGS.get(rule)
    if spellings is not None:
        return _spelling(spellings)
    checks: dict[Callable[[Any], Any], _Check] = {
        fields.timestamp: (_ZULU, datetime.fromisoformat),
        fields.identifier: (_ASCII_ID, None),
        fields.symbol: (_SYMBOL, str.upper),
        fields.free_text: (_ASCII_TEXT, None),
    }
    return checks.get(rule)


# --- plans ------------------------------------------------------------------------------------

# The model "after" checks a plan knows, and the fields each reads: it does nothing unless all of
# them are given (OrderEvent._not_overfilled: quantity and filled_quantity), so a shape without
# them skips it.
_CHECK_READS: dict[str, tuple[str, ...]] = {"_not_overfilled": ("quantity", "filled_quantity")}


def _picker(positions: tuple[int, ...]) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """The values at ``positions``, as a tuple (itemgetter of one position gives the value)."""
    if len(positions) == 1:
        (only,) = positions
        return lambda values: (values[only],)
    return itemgetter(*positions) if positions else (lambda values: ())


@dataclass(frozen=True, slots=True)
class Plan:
    """How to decide the entries of one shape (its keys, in order)."""

    model: type[Any]
    types: tuple[type, ...]  # (str, ...): every value and the entry id must be exact text
    valid: Callable[[str], Any]  # truthy for the values and the id joined by NULs: all plain
    as_is: Callable[[tuple[Any, ...]], tuple[Any, ...]]  # the values the rules keep as they are
    as_is_names: tuple[str, ...]  # ... and their fields
    converted: Callable[[tuple[Any, ...]], tuple[Any, ...]]  # the values the rules convert
    convert: tuple[Callable[[str], Any], ...]  # ... what converts each
    converted_names: tuple[str, ...]  # ... and their fields
    extra_keys: tuple[str, ...]  # the extra keys that go to metadata, in order
    extras: Callable[[tuple[Any, ...]], tuple[Any, ...]] | None  # their values (None: no metadata)
    template: dict[str, Any]  # the instance's __dict__ before the values: defaults, in order
    fields_set: frozenset[str]
    time_from_id: bool  # no timestamp: the entry id's time
    after: tuple[Callable[[Any], Any], ...]  # the model checks that can act on this shape


def _plan(spec: FastModel, keys: tuple[Any, ...]) -> Plan | None:
    """The plan of entries with these ``keys`` for ``spec``'s model, or None: parse decides."""
    has_metadata = "metadata" in spec.rules
    valid: list[str] = []
    as_is: list[int] = []
    converted: list[int] = []
    convert: list[Callable[[str], Any]] = []
    names: list[str] = []
    extra: list[int] = []
    for position, key in enumerate(keys):
        if type(key) is not str or key in _SPECIAL:
            return None
        rule = spec.rules.get(key)
        if rule is None:  # an extra key: metadata keeps it (a mark ignores it)
            if has_metadata and not _EXTRA_KEY.fullmatch(key):
                return None  # not kept as it is (fields.clean): parse decides
            valid.append(_EXTRA_TEXT if has_metadata else _IGNORED_TEXT)
            extra.append(position)
            continue
        check = _strict_check(rule)
        if check is None:
            return None
        valid.append(check[0])
        names.append(key)
        if check[1] is None:
            as_is.append(position)
        else:
            converted.append(position)
            convert.append(check[1])
    given = set(names) | {"timestamp"} | ({"metadata"} if has_metadata else set())
    after = _after_checks(spec, set(names))
    if after is None or not spec.required <= given or not given <= set(spec.rules):
        return None
    return Plan(
        model=spec.model,
        types=(str,) * (len(keys) + 1),
        valid=re.compile(
            "\\x00".join(f"(?:{pattern})" for pattern in [*valid, _ENTRY_ID])
        ).fullmatch,
        as_is=_picker(tuple(as_is)),
        as_is_names=tuple(keys[i] for i in as_is),
        converted=_picker(tuple(converted)),
        convert=tuple(convert),
        converted_names=tuple(keys[i] for i in converted),
        extra_keys=tuple(keys[i] for i in extra),
        extras=_picker(tuple(extra)) if has_metadata else None,
        template=dict(spec.defaults),
        fields_set=frozenset(given),
        time_from_id="timestamp" not in names,
        after=after,
    )


def _after_checks(spec: FastModel, known: set[str]) -> tuple[Callable[[Any], Any], ...] | None:
    """The model's "after" checks that can act on an entry giving the fields ``known``; None
    when the model has one the plans do not know, or a default factory they do not stand in
    for (metadata's is: a plan always gives metadata)."""
    if any(name != "metadata" for name, _ in spec.factories):
        return None
    after = []
    for check in spec.checks:
        reads = _CHECK_READS.get(getattr(check, "__name__", ""))
        if reads is None:
            return None
        if set(reads) <= known:
            after.append(check)
    return tuple(after)


_PLANS_KEPT = 1024  # per kind; shapes are few, and a stream of random keys is not remembered


_new = object.__new__
# The instance's slots, set as model_construct sets them, through their descriptors. Another
# pydantic that lays instances out differently gets no plans (fastpath.fast_spec gives None too).
_SLOT: dict[str, Any] = {
    name: getattr(BaseModel.__dict__.get(name), "__set__", None) for name in fastpath.INSTANCE_SLOTS
}
_set_dict = _SLOT["__dict__"]
_set_fields_set = _SLOT["__pydantic_fields_set__"]
_set_extra = _SLOT["__pydantic_extra__"]
_set_private = _SLOT["__pydantic_private__"]

# Per kind: its model's fast-path table, and the plans by shape (each built on first sight).
_SPECS: dict[str, FastModel] = {}
if tuple(BaseModel.__slots__) == fastpath.INSTANCE_SLOTS and None not in _SLOT.values():
    for _kind, _model in MODELS.items():
        _spec = fast_spec(_model)
        if _spec is not None:
            _SPECS[_kind] = _spec
_PLANS: dict[str, dict[tuple[Any, ...], Plan | None]] = {kind: {} for kind in _SPECS}
_UNSEEN: Any = object()


def _new_plan(kind: str, keys: tuple[Any, ...]) -> Plan | None:
    plan = _plan(_SPECS[kind], keys)
    if len(_PLANS[kind]) < _PLANS_KEPT:
        _PLANS[kind][keys] = plan
    return plan


def _planned(kind: str, entry: Mapping[str, Any]) -> tuple[Plan, Mapping[str, Any]] | None:
    """The plan for ``entry`` (the members of its envelope, if it is one) and what it reads."""
    plans = _PLANS.get(kind)
    if plans is None or type(entry) is not dict:  # another mapping (or none): parse decides
        return None
    if len(entry) == 1 and ("data" in entry or "payload" in entry):
        members = _envelope(entry.get("data", entry.get("payload")))
        if members is None:
            return None
        entry = members
    keys = tuple(entry)
    plan = plans.get(keys, _UNSEEN)
    if plan is _UNSEEN:
        plan = _new_plan(kind, keys)
    return None if plan is None else (plan, entry)


def decide(kind: EventKind, entry: Mapping[str, Any], entry_id: str) -> Any:
    """``parse(kind, entry, entry_id)`` when this module can decide it (the event), else None."""
    planned = _planned(kind, entry)
    if planned is None:
        return None
    plan, entry = planned
    # The values and the id: exact text, each in the plain form of its field (one match).
    values = (*entry.values(), entry_id)
    if tuple(map(type, values)) != plan.types or not plan.valid("\x00".join(values)):
        return None
    # zip() without strict=: its keyword costs; a plan's names and positions pair up by making.
    given = plan.template.copy()  # the fields in definition order, defaults where not given
    given.update(zip(plan.as_is_names, plan.as_is(values)))  # noqa: B905
    try:
        given.update(zip(plan.converted_names, map(call, plan.convert, plan.converted(values))))  # noqa: B905
    except ValueError:  # datetime.fromisoformat: a date that does not exist
        return None
    if plan.extras is not None:  # the model has metadata: the extra keys, if any
        extras = plan.extras(values) if plan.extra_keys else ()
        given["metadata"] = dict(zip(plan.extra_keys, extras)) if extras else {}  # noqa: B905
    if plan.time_from_id:
        given["timestamp"] = fields.timestamp(entry_time(entry_id))
    event = _new(plan.model)  # as FastModel.build (model_construct) lays it out
    _set_dict(event, given)
    _set_fields_set(event, set(plan.fields_set))
    _set_extra(event, None)  # extra="forbid"
    _set_private(event, None)  # no private attributes
    if plan.after:
        try:
            for check in plan.after:
                check(event)
        except Exception:  # parse's pydantic path raises it again, with its reason
            return None
    return event


_ENVELOPE = msgspec.json.Decoder(dict[str, str])


def _envelope(text: Any) -> dict[str, str] | None:
    """The members of a JSON envelope when ``json_object`` gives exactly them (see the module's
    docstring), else None."""
    if type(text) is not str or "\\" in text:
        return None
    try:
        members = _ENVELOPE.decode(text)
    except (msgspec.DecodeError, UnicodeEncodeError):  # ValidationError is a DecodeError
        return None
    # No backslash: every quote delimits a string. Four per member: no key came twice.
    return members if text.count('"') == 4 * len(members) else None
