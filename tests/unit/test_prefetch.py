"""``prefetch.prefetched``: the plain iterator's items and errors, in order, read by a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from consumer.prefetch import prefetched


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name == "replay-read"}


@pytest.mark.parametrize("block", [1, 3, 7, 1000])
@pytest.mark.parametrize("n", [0, 1, 6, 7, 8, 50])
def test_same_items_in_the_same_order(n: int, block: int) -> None:
    assert list(prefetched(iter(range(n)), block=block, depth=2)) == list(range(n))
    assert not _threads()


def _failing(n: int) -> Iterator[int]:
    yield from range(n)
    raise ValueError(f"line {n + 1}: broken")


@pytest.mark.parametrize("block", [1, 4, 100])
def test_an_error_comes_after_every_item_before_it(block: int) -> None:
    got: list[int] = []
    with pytest.raises(ValueError, match="line 10: broken"):
        for item in prefetched(_failing(9), block=block, depth=1):
            got.append(item)
    assert got == list(range(9))
    assert not _threads()


def test_the_source_runs_in_the_reader_thread_and_is_closed_there_on_an_early_stop() -> None:
    ran_in: set[str] = set()
    closed_in: list[str] = []

    def source() -> Iterator[int]:
        try:
            for i in range(1_000_000):
                ran_in.add(threading.current_thread().name)
                yield i
        finally:
            closed_in.append(threading.current_thread().name)

    reader = prefetched(source(), block=10, depth=2)
    assert [next(reader) for _ in range(25)] == list(range(25))
    reader.close()
    assert ran_in == {"replay-read"}
    assert closed_in == ["replay-read"]  # the source's finally ran, in its own thread
    assert not _threads()


def test_reading_ahead_is_bounded() -> None:
    produced = 0

    def source() -> Iterator[int]:
        nonlocal produced
        for i in range(100_000):
            produced += 1
            yield i

    reader = prefetched(source(), block=10, depth=3)
    assert next(reader) == 0
    time.sleep(0.3)  # let the reader fill what it may
    # depth blocks queued, one being handed over, one being filled (blocked on the full queue)
    assert produced <= (3 + 2) * 10 + 1
    reader.close()


def test_an_interrupt_in_the_consumer_stops_the_reader() -> None:
    reader = prefetched(iter(range(1_000_000)), block=100, depth=2)
    with pytest.raises(KeyboardInterrupt):
        for item in reader:
            if item == 150:
                raise KeyboardInterrupt
    reader.close()
    assert not _threads()


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        next(prefetched(iter([1]), block=0))
