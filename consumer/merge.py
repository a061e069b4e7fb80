"""The stream-order merge: several streams read as one, in stream order, cut into batches.

XREADGROUP's COUNT truncates each stream separately, so one read can hold entries of stream A
up to id 900 but of stream B only up to 500. ``OrderedReader`` hands the worker its next batch
complete in stream order (``merge_point``) and owns everything that takes:

- which streams to read: those behind (holding the merge point, or with nothing in hand), so
  one busy stream cannot run ahead and starve the batch;
- the entries held back: read (so pending in Redis: a crash loses nothing) but past the merge
  point or the batch limit, handed out first in the next batch;
- the merge point's streams, kept from one batch to the next: rebuilt from the entries in hand,
  the point moved ahead and the next read took more of the stream already ahead (held-back
  entries piled up to 17,000 on a 100,000-entry backlog, each re-sorted every batch);
- draining this consumer's own pending entries (after a start, a failed read or a claim): they
  are re-read from ``0``, in order, merged with the new entries that follow them.

It does I/O only through the stream and the worker's retry policy (``RedisCalls``); the worker
decides when to drain (its claims and order gate) and does everything after the read.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Protocol, TypeVar

from consumer.errors import RedisUnavailableError
from consumer.records import EntryKey, RawEntry

T = TypeVar("T")

# The id before every entry: a stream held there (``_read``) has had nothing read yet.
NOTHING_READ = "0-0"

Order = Callable[[RawEntry], tuple[int, int, int]]


def entry_order(streams: Sequence[str]) -> Order:
    """Sort key: stream id; on a tie, the configured stream order (orders < fills < marks)."""
    rank = {name: i for i, name in enumerate(streams)}

    def key(entry: RawEntry) -> tuple[int, int, int]:
        ms, seq = entry.key.sort_key
        return ms, seq, rank.get(entry.key.stream, len(rank))

    return key


def merge_point(more: dict[str, EntryKey], order: Order) -> tuple[int, int, int] | None:
    """How far a multi-stream read is complete in stream order.

    XREADGROUP's COUNT truncates each stream separately, so a read can hold entries of stream A
    up to id 900 but of stream B only up to 500 (B has more). Processing A's 501–900 now would
    put them before B's 501–900, which a differently cut read would not. Only entries up to the
    smallest last id of the streams that may hold more are complete; ``None``: all are.
    """
    if not more:
        return None
    return min(order(RawEntry(key, {})) for key in more.values())


class StreamReads(Protocol):
    """What the reader needs of a stream: ``stream.RedisStream`` (or a subclass)."""

    @property
    def streams(self) -> Sequence[str]: ...

    @property
    def consumer(self) -> str: ...

    def read(
        self,
        *,
        count: int,
        block_ms: int | None,
        pending: bool,
        after: Mapping[str, str] | None = None,
        streams: Sequence[str] | None = None,
        new: Collection[str] = (),
    ) -> list[RawEntry]: ...

    def pending_owners(self) -> dict[str, int]: ...


class RedisCalls(Protocol):
    """How the reader calls Redis: the worker's backoff (outages logged once, the shutdown
    grace period kept). Retried until it succeeds; with ``once``, tried once (on failure a
    short pause, then ``RedisUnavailableError``)."""

    def __call__(self, call: Callable[[], T], *, once: bool = False) -> T: ...


def _direct(call: Callable[[], T], *, once: bool = False) -> T:
    return call()


class OrderedReader:
    """The worker's batches, read from ``stream`` in stream order: see the module docstring.

    A batch holds at most ``limit`` entries (the worker may change it between batches:
    ``batch_size.py``) and is collected within ``max_wait_ms`` of its first read; the first read
    of a batch with nothing in hand blocks up to ``block_ms``. ``full`` tells whether the last
    batch's reads came back full: a stream filled its share of the count, or the batch was cut
    at the limit (there is more to read: the worker is behind).
    """

    def __init__(
        self,
        stream: StreamReads,
        *,
        limit: int,
        max_wait_ms: int,
        block_ms: int,
        redis: RedisCalls = _direct,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self.stream = stream
        self.limit = limit
        self.max_wait_ms = max_wait_ms
        self.block_ms = block_ms
        self._redis = redis
        self._stopping = stopping
        self._order = entry_order(stream.streams)
        # Streams whose own pending entries (read before a restart or a failed read) are still
        # being re-read; the others are read for new entries (see ``_read``).
        self._pending_streams: set[str] = set(stream.streams)
        self._pending_cursor: dict[str, str] = {}
        self._drain_in_order: bool | None = None
        self._drain_epoch = 0
        self._held: list[RawEntry] = []  # read, pending, not yet handed out (stream order)
        # Streams that may hold entries past the last read of them, by that last entry: kept
        # from one batch to the next (``_read``), so the merge point stays where it is.
        self._more: dict[str, EntryKey] = {}
        self.full = False

    @property
    def draining(self) -> bool:
        """Whether this consumer's own pending entries are still being re-read."""
        return bool(self._pending_streams)

    @property
    def in_hand(self) -> int:
        """Entries read but held back for stream order (pending in Redis, not yet handed out)."""
        return len(self._held)

    def drain_own_pending(self) -> None:
        """Re-read our own pending entries from the start (in order); what was in hand is in
        that list too, so it is dropped here rather than handed out twice."""
        self._pending_streams = set(self.stream.streams)
        self._drain_in_order = None
        self._drain_epoch += 1
        self._pending_cursor = {}
        self._held = []
        self._more = {}

    def next_batch(self) -> list[RawEntry]:
        """The next batch in stream order (empty: nothing to read now). When a drain finds our
        pending list exhausted, new entries are read from the next call on."""
        draining = self.draining
        batch = self._collect()
        if not batch and draining and not self._held:
            self._pending_streams.clear()
        return batch

    def _collect(self) -> list[RawEntry]:
        """Read up to ``limit`` entries within ``max_wait_ms`` of the first, and return at most
        that many that are complete in stream order (see ``merge_point``); the rest stays in
        hand for the next batch."""
        limit = self.limit
        epoch = self._drain_epoch
        self.full = False
        batch, self._held = self._held, []
        # A stream with entries in hand may hold more after them. Streams whose last read
        # filled its share stay in ``more`` too, even with nothing in hand: without them the
        # merge point would move to the others' last entries, and the next read would take
        # more of a stream that is ahead already (those entries piled up in hand).
        # Keyed to its *last* entry in hand: every entry of it not read yet comes after that one.
        # (Keyed to the first, a stream whose last read came back short, with entries still in
        # hand, pinned the merge point at its first one: with more in hand than the limit, two
        # such streams handed out one entry at a time, in turn.)
        more = dict(self._more)
        last_in_hand = {entry.key.stream: entry.key for entry in batch}
        for name, key in last_in_hand.items():
            more.setdefault(name, key)
        first_block = None if batch or self.draining else self.block_ms
        read = self._read(self._behind(more), more, limit, first_block)
        batch += read
        fresh = len(read)
        deadline = time.monotonic() + self.max_wait_ms / 1000
        while fresh and not self._stopping():
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            behind = self._behind(more)
            # Each read asks every stream it names for one entry at least: never overflow.
            if fresh + len(behind) > limit:
                break
            if remaining_ms > 0:
                block_ms = None if self.draining else remaining_ms
            elif any(name in more for name in behind) and limit - fresh >= limit // 8:
                # Past the wait, read on (without blocking) while a stream at the merge point
                # may hold more and an eighth of the batch is still free. COUNT cuts a busy
                # stream at an earlier id than a sparse one, so on a backlog a single read
                # leaves about half the batch waiting in hand for the next one.
                block_ms = None
            else:
                break
            read = self._read(behind, more, limit - fresh, block_ms)
            if not read:
                break
            fresh += len(read)
            batch += read
        if self._drain_epoch != epoch:
            # A read failed and may have delivered entries whose reply was lost: everything
            # read so far is in our pending list and is re-read from 0, in order.
            self._held = []
            self._more = {}
            return []
        # A stream held at NOTHING_READ (drained history, nothing of it read yet) is behind:
        # next time it is read with the others, as a stream not in ``more`` is.
        self._more = {name: key for name, key in more.items() if key.entry_id != NOTHING_READ}
        return self._keep_ordered(batch, more, limit)

    def _behind(self, more: dict[str, EntryKey]) -> list[str]:
        """Streams worth reading now: drained ones (new entries may have come) and the ones
        whose last read id is the merge point."""
        point = merge_point(more, self._order)
        return [
            name
            for name in self.stream.streams
            if name not in more or self._order(RawEntry(more[name], {})) == point
        ]

    def _read(
        self, names: list[str], more: dict[str, EntryKey], count: int, block_ms: int | None
    ) -> list[RawEntry]:
        """One read of the streams ``names`` (those behind); record in ``more`` each stream
        that may hold entries beyond what was read (it filled its share), keyed to its last id.

        While draining, a stream still in ``_pending_streams`` is read from our own pending
        list. When that list is exhausted, entries never delivered may follow it, older than
        pending entries of other streams: the stream is held at its last pending id (so the
        merge point stops there) and read for new entries from then on — unless another
        consumer holds pending entries (then reading past them would break their stream's
        order: the whole pending list is drained first and the order gate applies after)."""
        per_stream = max(1, count // len(names))
        history = [name for name in names if name in self._pending_streams]
        epoch = self._drain_epoch
        if history and self._drain_in_order is None:
            self._drain_in_order = self._no_foreign_pending()
        if len(history) == len(names):
            entries = self._redis(
                lambda: self.stream.read(
                    count=per_stream,
                    block_ms=None,
                    pending=True,
                    after=self._pending_cursor,
                    streams=names,
                )
            )
        else:
            entries = self._read_new(per_stream, None if history else block_ms, names)
        if self._drain_epoch != epoch:
            return []  # the read failed: ``_collect`` starts over from our pending list
        last: dict[str, EntryKey] = {}
        counts: dict[str, int] = {}
        for entry in entries:
            last[entry.key.stream] = entry.key
            counts[entry.key.stream] = counts.get(entry.key.stream, 0) + 1
        for name in names:
            if name in history and name in last:
                self._pending_cursor[name] = last[name].entry_id
            if counts.get(name, 0) >= per_stream:
                more[name] = last[name]
                self.full = True
            elif name in history and self._drain_in_order:
                self._pending_streams.discard(name)
                more[name] = EntryKey(name, self._pending_cursor.get(name, NOTHING_READ))
            else:
                more.pop(name, None)
        return entries

    def _no_foreign_pending(self) -> bool:
        owners = self._redis(self.stream.pending_owners)
        return not any(n for name, n in owners.items() if name != self.stream.consumer)

    def _keep_ordered(
        self, batch: list[RawEntry], more: dict[str, EntryKey], limit: int
    ) -> list[RawEntry]:
        """The first ``limit`` entries of ``batch`` in stream order, up to the merge point;
        everything after them stays in hand."""
        batch.sort(key=self._order)
        point = merge_point(more, self._order)
        complete = (
            len(batch) if point is None else bisect.bisect_right(batch, point, key=self._order)
        )
        cut = min(complete, limit)
        if complete > limit:
            self.full = True
        self._held = batch[cut:]
        return batch[:cut]

    def _read_new(self, count: int, block_ms: int | None, streams: Sequence[str]) -> list[RawEntry]:
        """XREADGROUP ``>`` exactly once (streams still in ``_pending_streams`` are read from
        our pending list in the same command). When it fails, Redis may still have delivered
        entries whose reply was lost: reading ``>`` again would skip past them and break stream
        order, so the next read re-reads this consumer's own pending entries from ``0`` instead.
        ``count`` applies to each stream."""
        fresh = [name for name in streams if name not in self._pending_streams]
        try:
            return self._redis(
                lambda: self.stream.read(
                    count=count,
                    block_ms=block_ms,
                    pending=len(fresh) < len(streams),
                    after=self._pending_cursor,
                    streams=streams,
                    new=fresh,
                ),
                once=True,
            )
        except RedisUnavailableError:
            self.drain_own_pending()
            return []
