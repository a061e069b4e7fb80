"""replay.fewer_collections changes the collector only while a replay runs."""

import gc

import pytest

from consumer.replay import REPLAY_GC_THRESHOLDS, fewer_collections


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
    assert seen[0][0] == REPLAY_GC_THRESHOLDS
    assert seen[0][1] > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_a_caller_s_frozen_objects_stay_frozen():
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with fewer_collections():
            pass
        assert gc.get_freeze_count() == frozen
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
