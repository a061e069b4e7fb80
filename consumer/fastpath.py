"""The fast path: a model's own validation without pydantic's machinery, or "let pydantic decide".

``validate(model, values)`` is ``model.model_validate(values)``; ``construct(fast_spec(model),
values)`` is the same event when it would succeed, or None. It runs the SAME rules (the models'
own BeforeValidators, read off the model) and builds the instance as ``model_construct`` builds
it, with shortcuts for the common, plain form of a value (a plain amount such as "0.10" is
``Decimal(text)`` as-is, which is what its rule returns for it; likewise exact enum spellings,
ISO times in ``Z`` and flat ASCII metadata). Whenever anything is unusual (a rule that refuses, a
missing field, a field, constraint or validator the table does not know) it returns None and
pydantic decides, with its reason: there is one set of error messages.

tests/unit/test_events_fast.py checks over generated entries and model inputs that whatever it
returns equals pydantic's event (types, Decimal exponents, times, metadata, fields set) and that
it defers whenever pydantic raises. It knows the rules only through ``fields.py``; the models it
is used for live in ``events.py`` and ``dialect.py``.
"""

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from types import UnionType
from typing import Any, TypeVar, get_args, get_origin

from pydantic import BaseModel, BeforeValidator

from consumer import fields

__all__ = ["construct", "fast_spec", "validate"]

_ModelT = TypeVar("_ModelT", bound=BaseModel)
_Shortcut = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class FastModel:
    """What the fast path needs to know about a model, read off the model itself."""

    model: type[BaseModel]
    rules: dict[str, Callable[[Any], Any]]  # field -> its BeforeValidator's function
    steps: dict[str, tuple[Callable[[Any], Any], _Shortcut | None]]  # field -> rule, shortcut
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


def _fast_model(model: type[BaseModel]) -> FastModel | None:
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
    steps = {name: (rule, _shortcut(rule)) for name, rule in rules.items()}
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
    return FastModel(
        model,
        rules,
        steps,
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


# --- Shortcuts: for the common, plain form of a value, what its rule returns, computed with less
# work; anything else (_NO_SHORTCUT) goes through the rule itself. Each is covered by the
# differential test, which feeds both plain and odd forms. A rule's shortcut is found once, when
# its model's table is built (``_shortcut``), from what ``fields.py`` records about the rule.
_NO_SHORTCUT: Any = object()
_SHORTCUT_TYPES = frozenset({str, dict})


def _plain_amount(places: int, digits: int, signed: bool) -> re.Pattern[str]:
    """Text its amount rule returns as Decimal(text): at most ``digits`` integer and ``places``
    decimal digits (so no rounding and no range error), no spaces, no exponent."""
    sign = "-?" if signed else ""
    return re.compile(f"{sign}[0-9]{{1,{digits}}}(?:\\.[0-9]{{1,{places}}})?")


def _plain_number(places: int, digits: int, signed: bool) -> _Shortcut:
    """ "0.10", "42": Decimal(text), as the amount rule gives for text within the column's
    digits and places; 0 and -0 are left to the rule (sign rules, no "-0")."""
    plain = _plain_amount(places, digits, signed).fullmatch

    def shortcut(value: Any) -> Any:
        if type(value) is str and plain(value):
            number = Decimal(value)
            if not number.is_zero():
                return number
        return _NO_SHORTCUT

    return shortcut


def _exact_spelling(spellings: Mapping[str, StrEnum]) -> _Shortcut:
    """ "BUY", "PARTIAL": an accepted spelling as it stands (no spaces, upper-case)."""

    def shortcut(value: Any) -> Any:
        found = spellings.get(value) if type(value) is str else None
        return _NO_SHORTCUT if found is None else found

    return shortcut


def _zulu_time(value: Any) -> Any:
    """ "2099-01-01T00:00:00.123Z": the rule's ISO path (no surrounding spaces, not a number, so
    no strip and no number match), already UTC, within the years the rule accepts."""
    if type(value) is str and value[-1:] == "Z" and value[:1].isdigit():
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return _NO_SHORTCUT
        if moment.tzinfo is UTC and fields.EARLIEST <= moment < fields.LATEST:
            return moment
    return _NO_SHORTCUT


def _plain_metadata(value: Any) -> Any:
    """A flat object of ASCII text without NUL (extra flat fields): ``fields.clean`` changes
    none of it, so the rule's result is an equal copy."""
    if type(value) is dict and all(
        type(k) is str and type(v) is str and k.isascii() and v.isascii()
        and "\x00" not in k and "\x00" not in v
        for k, v in value.items()
    ):  # fmt: skip
        return dict(value)
    return _NO_SHORTCUT


def _shortcut(rule: Callable[[Any], Any]) -> _Shortcut | None:
    """The shortcut for ``rule``'s plain values, or None: the rule decides every value."""
    shape = fields.AMOUNT_SHAPES.get(rule)
    if shape is not None:
        places, digits, sign = shape
        return _plain_number(places, digits, signed=sign == "any")
    spellings = fields.ENUM_SPELLINGS.get(rule)
    if spellings is not None:
        return _exact_spelling(spellings)
    if rule is fields.timestamp:
        return _zulu_time
    if rule is fields.metadata:
        return _plain_metadata
    return None


def construct(spec: FastModel, values: Mapping[str, Any]) -> Any:
    """``spec.model.model_validate(values)`` when it would succeed, else None (see above)."""
    if not spec.required <= values.keys():
        return None
    clean: dict[str, Any] = {}
    steps = spec.steps
    for key, value in values.items():  # the value pydantic would store for key, or None
        step = steps.get(key)
        if step is None:  # extra="forbid"
            return None
        rule, shortcut = step
        if shortcut is not None and type(value) in _SHORTCUT_TYPES:
            result = shortcut(value)
            if result is not _NO_SHORTCUT:
                clean[key] = result
                continue
        try:
            result = rule(value)
        except Exception:  # the pydantic path raises it again, with its reason
            return None
        if not (key in spec.nullable if result is None else type(result) in spec.types[key]):
            return None
        clean[key] = result
    event = spec.build(clean, set(values))
    try:
        for check in spec.checks:
            check(event)
    except Exception:  # as above
        return None
    return event


_FAST_MODELS: dict[type[BaseModel], FastModel | None] = {}


# The instance layout FastModel.build fills in (pydantic 2's BaseModel); another pydantic that
# lays instances out differently gets no fast path rather than half-built events.
INSTANCE_SLOTS = (
    "__dict__",
    "__pydantic_fields_set__",
    "__pydantic_extra__",
    "__pydantic_private__",
)


def fast_spec(model: type[BaseModel]) -> FastModel | None:
    """The fast-path table of ``model`` (built on first use), or None: pydantic alone for it."""
    if model not in _FAST_MODELS:
        spec = None
        if tuple(BaseModel.__slots__) == INSTANCE_SLOTS:
            try:
                spec = _fast_model(model)
            except Exception:  # pydantic internals moved: validate the slow way, never crash
                spec = None
        _FAST_MODELS[model] = spec
    return _FAST_MODELS[model]


def validate(model: type[_ModelT], values: Mapping[str, Any]) -> _ModelT:
    """``model.model_validate(values)``, through the fast path when it can decide.

    Raises pydantic's ``ValidationError`` like ``model_validate``."""
    spec = fast_spec(model)
    event = construct(spec, values) if spec is not None else None
    return event if event is not None else model.model_validate(values)
