"""collector.fewer_collections changes the collector only while a replay or a worker runs,
and only the last of several holders restores it."""

import gc
import threading

import pytest

from consumer.collector import _PAUSE, OVERLAP_BACKSTOP, THRESHOLDS, fewer_collections, paused


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


def test_paused_turns_collection_off_and_back_on_after_the_last_holder():
    assert gc.isenabled()
    with paused():
        assert not gc.isenabled()
        with paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer batch still runs
    assert gc.isenabled()


def test_paused_leaves_collection_off_when_it_was_off():
    gc.disable()
    try:
        with paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_paused_is_left_on_error():
    with pytest.raises(RuntimeError), paused():
        raise RuntimeError
    assert gc.isenabled()


def test_cycles_made_in_paused_batches_are_collected_after_them():
    """The garbage in cycles of a batch waits for the batch's end, not for ever."""

    class Node:
        pass

    def batch() -> None:
        for _ in range(20_000):
            a, b = Node(), Node()
            a.other, b.other = b, a  # type: ignore[attr-defined]

    def alive() -> int:
        return sum(1 for o in gc.get_objects() if type(o) is Node)

    with fewer_collections():
        with paused():
            batch()
            assert alive() == 40_000  # nothing collected during the batch
        # After it, the next allocations (another batch's) start a collection as usual.
        survivors = [[] for _ in range(THRESHOLDS[0] + 1)]
        assert alive() < 40_000
        del survivors


def test_overlapping_holders_without_end_still_collect():
    """Shard workers' batches may overlap for ever: the collector must not stay off for ever."""

    class Node:
        pass

    def cycles(n: int) -> None:
        for _ in range(n):
            a, b = Node(), Node()
            a.other, b.other = b, a  # type: ignore[attr-defined]

    def alive() -> int:
        return sum(1 for o in gc.get_objects() if type(o) is Node)

    with fewer_collections():
        _PAUSE.enter()  # another worker's batch, running throughout
        try:
            made = 0
            for _ in range(10):  # this worker's batches, each overlapping the other one
                with paused():
                    cycles(OVERLAP_BACKSTOP * THRESHOLDS[0] // 10)
                    made += 2 * (OVERLAP_BACKSTOP * THRESHOLDS[0] // 10)
            assert not gc.isenabled()  # still held by the other batch
            assert alive() < made  # ... yet the garbage of the cycles was collected
        finally:
            _PAUSE.leave()
    assert gc.isenabled()
