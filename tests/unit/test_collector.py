"""collector.fewer_collections changes the collector only while a replay or a worker runs,
and only the last of several holders restores it."""

import gc
import threading

import pytest

from consumer.collector import THRESHOLDS, fewer_collections


def test_thresholds_and_freeze_are_restored_even_on_error():
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    seen: list[tuple[tuple[int, int, int], int]] = []

    def replaying() -> None:
        with fewer_collections():
            seen.append((gc.get_threshold(), gc.get_freeze_count()))
            raise RuntimeError

    with pytest.raises(RuntimeError):
        replaying()
    assert seen[0][0] == THRESHOLDS
    assert seen[0][1] > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_a_caller_s_frozen_objects_stay_frozen():
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with fewer_collections():
            pass
        # Not unfrozen, nothing more frozen (an object frozen here may have been freed since).
        assert 0 < gc.get_freeze_count() <= frozen
    finally:
        gc.unfreeze()


def test_cycles_are_still_collected():
    class Node:
        pass

    with fewer_collections():
        for _ in range(50_000):  # a cycle per iteration: garbage only the collector can free
            a, b = Node(), Node()
            a.other, b.other = b, a  # type: ignore[attr-defined]
        # 100,000 objects allocated: the young generation was collected several times.
        assert sum(1 for o in gc.get_objects() if type(o) is Node) < 100_000


def test_nested_holders_keep_the_policy_until_the_last_leaves():
    before = gc.get_threshold()
    with fewer_collections():
        with fewer_collections():
            assert gc.get_threshold() == THRESHOLDS
        assert gc.get_threshold() == THRESHOLDS  # the outer holder still runs
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_holders_in_threads_that_leave_out_of_order():
    """Two workers of one process (shards): the first to stop must not end the other's policy."""
    before = gc.get_threshold()
    entered, first_left, second_may_leave = threading.Event(), threading.Event(), threading.Event()
    seen: list[tuple[int, int, int]] = []

    def second() -> None:
        with fewer_collections():
            entered.set()
            first_left.wait(5)
            seen.append(gc.get_threshold())
            second_may_leave.wait(5)

    thread = threading.Thread(target=second)
    with fewer_collections():
        thread.start()
        assert entered.wait(5)
    first_left.set()  # the first holder (this thread) left while the second still holds
    second_may_leave.set()
    thread.join(5)
    assert seen == [THRESHOLDS]
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
