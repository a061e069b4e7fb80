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
_PROBES = 4
_FIRST_CAPACITY = 1 << 16
_MASK32 = (1 << 32) - 1


class _Slice:
    __slots__ = ("bits", "capacity", "count", "size")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.size = capacity * _BITS_PER_ID
        self.bits = bytearray(self.size // 8 + 1)
        self.count = 0

    def add(self, h1: int, h2: int) -> None:
        bits, size = self.bits, self.size
        for i in range(_PROBES):
            index = (h1 + i * h2) % size
            bits[index >> 3] |= 1 << (index & 7)
        self.count += 1

    def maybe(self, h1: int, h2: int) -> bool:
        bits, size = self.bits, self.size
        for i in range(_PROBES):
            index = (h1 + i * h2) % size
            if not bits[index >> 3] & (1 << (index & 7)):
                return False
        return True


def _hashes(text: str) -> tuple[int, int]:
    h = hash(text)
    return h & _MASK32, ((h >> 32) & _MASK32) | 1


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
        last.add(*_hashes(text))
        self.count += 1

    def update(self, texts: Iterable[str]) -> None:
        for text in texts:
            self.add(text)

    def maybe(self, text: str) -> bool:
        """True for every id added (and rarely for another: confirm it)."""
        if not self.count:
            return False
        h1, h2 = _hashes(text)
        return any(s.maybe(h1, h2) for s in self._slices)

    @property
    def nbytes(self) -> int:
        """The filter's memory (its bit arrays)."""
        return sum(len(s.bits) for s in self._slices)
