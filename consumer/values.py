"""``@immutable``: the immutable record types of the hot path (entries, events' fold states, rows).

To the type checker an ``@immutable`` class is ``@dataclass(frozen=True, slots=True)``: assigning a
field is an error (``mypy --strict`` runs in CI), so the fold's states stay values. At run time
it is ``@dataclass(slots=True, unsafe_hash=True)``: equal, hashed and repr'd by its fields as the
frozen one is, but built by plain slot stores. A frozen dataclass's ``__init__`` sets each field
through ``object.__setattr__``, about 80 ns a field: an ``OrderState`` (19 fields) cost 2.1 us
to build frozen and 0.56 us like this, and the fold builds one or more of these per entry
(docs/benchmarks.md, session 12). What is lost is only the run-time refusal of an assignment
that the type checker already refuses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar, dataclass_transform

T = TypeVar("T")

__all__ = ["immutable"]


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def immutable(cls: type[T]) -> type[T]:
    """The class as a slotted dataclass, frozen to the type checker (see the module doc)."""
    return dataclass(slots=True, unsafe_hash=True)(cls)
