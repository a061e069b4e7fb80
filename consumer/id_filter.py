"""A compact, growing membership filter over string ids: no false negatives, rare false
positives (a Bloom filter that doubles as it fills). Pure.

The bulk replay (``db/bulk.py``) evicts final orders and their fills from memory once they are
COPYed; an entry that names an evicted id must get that row back from the database. The filter
says which ids MAY have been evicted: ``maybe(id)`` is true for every id ever added and for a
small share of the others (about 0.25 % per full slice, 1-2 % in all), which the caller
confirms with a SELECT in the same transaction (a hit that is not stored loads nothing).
Exact on confirm, so the fold's decisions are exactly those of an unbounded in-memory fold.

Layout: slices of bits, each sized for twice the ids of the one before (the first for 65,536),
16 bits and 4 probes per id (Python's own 64-bit ``hash`` of the string, stable within the
process, split in two for double hashing): 2 bytes per id, whatever the history's length.
"""

from __future__ import annotations

from collections.abc import Iterable

_BITS_PER_ID = 16
_FIRST_CAPACITY = 1 << 16
_MASK32 = (1 << 32) - 1


class _Slice:
    """One bit array: ``capacity`` ids, ``_BITS_PER_ID`` bits each, 4 probes at
    ``(h1 + i*h2) % size`` for i in 0..3, written out (this runs for every id a replay reads)."""

    __slots__ = ("bits", "capacity", "count", "size")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.size = capacity * _BITS_PER_ID
        self.bits = bytearray(self.size // 8 + 1)
        self.count = 0

    def add(self, h1: int, h2: int) -> None:
        bits, size = self.bits, self.size
        i = h1 % size
        bits[i >> 3] |= 1 << (i & 7)
        i = (h1 + h2) % size
        bits[i >> 3] |= 1 << (i & 7)
        i = (h1 + 2 * h2) % size
        bits[i >> 3] |= 1 << (i & 7)
        i = (h1 + 3 * h2) % size
        bits[i >> 3] |= 1 << (i & 7)
        self.count += 1

    def maybe(self, h1: int, h2: int) -> bool:
        bits, size = self.bits, self.size
        i = h1 % size
        if not bits[i >> 3] & (1 << (i & 7)):
            return False
        i = (h1 + h2) % size
        if not bits[i >> 3] & (1 << (i & 7)):
            return False
        i = (h1 + 2 * h2) % size
        if not bits[i >> 3] & (1 << (i & 7)):
            return False
        i = (h1 + 3 * h2) % size
        return bool(bits[i >> 3] & (1 << (i & 7)))


class IdFilter:
    """Ids added so far (``add``), asked with ``maybe`` (see the module doc)."""

    def __init__(self, first_capacity: int = _FIRST_CAPACITY) -> None:
        self._slices = [_Slice(first_capacity)]
        self.count = 0

    def add(self, text: str) -> None:
        last = self._slices[-1]
        if last.count >= last.capacity:
            last = _Slice(last.capacity * 2)
            self._slices.append(last)
        h = hash(text)
        last.add(h & _MASK32, ((h >> 32) & _MASK32) | 1)
        self.count += 1

    def update(self, texts: Iterable[str]) -> None:
        for text in texts:
            self.add(text)

    def maybe(self, text: str) -> bool:
        """True for every id added (and rarely for another: confirm it)."""
        if not self.count:
            return False
        h = hash(text)
        h1, h2 = h & _MASK32, ((h >> 32) & _MASK32) | 1
        for piece in self._slices:  # noqa: SIM110 - any() of a generator: a frame per call
            if piece.maybe(h1, h2):
                return True
        return False

    @property
    def nbytes(self) -> int:
        """The filter's memory (its bit arrays)."""
        return sum(len(s.bits) for s in self._slices)
