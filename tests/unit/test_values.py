"""``values.immutable``: frozen to the type checker, a fast slotted dataclass at run time that
compares and hashes by its fields as the frozen one did."""

from __future__ import annotations

import dataclasses
from dataclasses import field

from mypy import api as mypy_api

from consumer.orders import OrderState
from consumer.values import immutable


@immutable
class Point:
    x: int
    y: int = 0
    tags: tuple[str, ...] = field(default=())


def test_equal_records_hash_alike_as_frozen_dataclasses_do():
    assert Point(1, 2) == Point(1, 2)
    assert hash(Point(1, 2)) == hash(Point(1, 2))
    assert {Point(1, 2): "a"}[Point(1, 2)] == "a"
    assert Point(1) != Point(2)
    assert repr(Point(1, 2)) == "Point(x=1, y=2, tags=())"


def test_slotted_and_replace_works():
    point = Point(1, 2)
    assert not hasattr(point, "__dict__")
    assert dataclasses.replace(point, y=5) == Point(1, 5)
    assert point == Point(1, 2)  # replace built a new one


def test_the_type_checker_refuses_an_assignment():
    """What the run time no longer refuses, mypy --strict (CI's lint) does."""
    program = (
        "from consumer.values import immutable\n"
        "@immutable\n"
        "class P:\n"
        "    x: int\n"
        "p = P(1)\n"
        "p.x = 2\n"
    )
    out, _, status = mypy_api.run(["--strict", "--no-incremental", "-c", program])
    assert status == 1
    assert 'Property "x" defined in "P" is read-only' in out


def test_the_fold_states_are_immutable_records():
    assert dataclasses.is_dataclass(OrderState)
    assert OrderState.__hash__ is not None
    assert "__slots__" in vars(OrderState)
