"""The worker loop: read → validate → write in one transaction → acknowledge.

Reads top to bottom (``run`` → ``_step`` → ``_process``):
- At start it drains its own pending entries (what it had read before a crash), merged in
  stream order with what follows them, then reads new ones; every ``claim_interval_s`` it takes
  over entries other consumers left idle too long.
- A batch is collected up to ``batch_max_entries`` or ``batch_max_wait_ms``, validated (invalid
  entries are dead-lettered with the reason), written in one transaction, then acknowledged
  together with the dead letters (one MULTI/EXEC). Nothing is acknowledged before it commits.
- When PostgreSQL refuses a batch's data, the batch is split in halves (in stream order) until
  the one bad entry is isolated and dead-lettered; every good entry is still committed.
- When PostgreSQL or Redis is unreachable it retries with capped exponential backoff and jitter,
  logging each state change once, and carries on by itself when the server is back.
- ``stop()`` only sets a flag: the batch in hand is finished (committed and acked) and ``run``
  returns. If that cannot happen within ``shutdown_grace_s`` it gives up without acking (the
  entries stay pending and are redelivered; their effects are idempotent).
"""

from __future__ import annotations

import bisect
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from consumer import dialect, events
from consumer.errors import (
    DatabaseUnavailableError,
    RedisUnavailableError,
    RejectedByDatabaseError,
)
from consumer.logs import get_logger
from consumer.losses import LossWatch, read_committed
from consumer.observer import Observer
from consumer.records import EntryKey, ParsedEntry, RawEntry
from consumer.settings import Settings
from consumer.store import BatchResult
from consumer.stream import RedisStream

T = TypeVar("T")

EXIT_OK = 0
EXIT_GRACE_EXPIRED = 75  # EX_TEMPFAIL: stopped with work uncommitted; it will be redelivered
# The id before every entry: a stream held there (``_read_tracked``) has had nothing read yet.
NOTHING_READ = "0-0"


class ShutdownTimeoutError(Exception):
    """The grace period ended while a batch could not be committed."""


@dataclass
class Totals:
    """Counters over the worker's life (also what ``--until-idle`` prints at the end)."""

    entries: int = 0
    orders: int = 0
    fills: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    batches: int = 0


class Store(Protocol):
    """What the worker needs from the database: ``PostgresStore``, or ``testing.MemoryStore``.

    ``write_batch`` applies the entries in one transaction and raises
    ``DatabaseUnavailableError`` (nothing applied, retry) or ``RejectedByDatabaseError``
    (nothing applied, the data is bad).
    """

    def write_batch(self, items: Sequence[ParsedEntry]) -> BatchResult: ...

    def tick(self, now: datetime) -> int:
        """Take the snapshots whose boundaries the wall clock crossed; return how many."""
        ...


# -- shared with replay (consumer/replay.py): how a batch is ordered and parsed -----------------


def stream_kinds(settings: Settings) -> dict[str, events.EventKind]:
    """Which event kind each configured stream carries."""
    kinds: dict[str, events.EventKind] = {
        settings.orders_stream: "order",
        settings.fills_stream: "fill",
    }
    if settings.results_stream:
        kinds[settings.results_stream] = "fill"  # the bot's audit copy of its results
    if settings.marks_stream:
        kinds[settings.marks_stream] = "mark"
    return kinds


def entry_order(streams: Sequence[str]) -> Callable[[RawEntry], tuple[int, int, int]]:
    """Sort key: stream id; on a tie, the configured stream order (orders < fills < marks)."""
    rank = {name: i for i, name in enumerate(streams)}

    def key(entry: RawEntry) -> tuple[int, int, int]:
        ms, seq = entry.key.sort_key
        return ms, seq, rank.get(entry.key.stream, len(rank))

    return key


def merge_point(
    more: dict[str, EntryKey], order: Callable[[RawEntry], tuple[int, int, int]]
) -> tuple[int, int, int] | None:
    """How far a multi-stream read is complete in stream order.

    XREADGROUP's COUNT truncates each stream separately, so a read can hold entries of stream A
    up to id 900 but of stream B only up to 500 (B has more). Processing A's 501–900 now would
    put them before B's 501–900, which a differently cut read would not. Only entries up to the
    smallest last id of the streams that may hold more are complete; ``None``: all are.
    """
    if not more:
        return None
    return min(order(RawEntry(key, {})) for key in more.values())


def parse_raw(
    kinds: dict[str, events.EventKind],
    entry: RawEntry,
    options: dialect.DialectOptions | None = None,
) -> events.Event:
    """Validate ``entry`` as its stream's kind (``InvalidEventError`` when it is not valid).
    The trading bot's own messages are translated into the internal events (``dialect.py``)."""
    kind = kinds.get(entry.key.stream, "order")
    try:
        return events.parse_entry(kind, entry.fields, entry.key.entry_id)
    except events.UnsupportedDialectError as exc:
        return dialect.translate(exc, entry.key.entry_id, options)


def dialect_options(settings: Settings) -> dialect.DialectOptions:
    return dialect.DialectOptions(default_fee_rate=settings.bot_default_fee_rate)


class Worker:
    """One consumer in the group. Not thread-safe except for ``stop()``."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        stream: RedisStream,
        observer: Observer | None = None,
    ) -> None:
        self.settings = settings
        self.observer = observer if observer is not None else Observer()
        self.store = store
        self.stream = stream
        self.totals = Totals()
        self._stop = threading.Event()
        self._stop_deadline: float | None = None
        # Streams whose own pending entries (read before a restart or a failed read) are still
        # being re-read; the others are read for new entries (see ``_read_tracked``).
        self._pending_streams: set[str] = set(stream.streams)
        self._drain_in_order: bool | None = None
        self._drain_epoch = 0
        self._next_claim = 0.0
        self._outage: dict[str, bool] = {"postgres": False, "redis": False}
        self._lag_checked_at = float("-inf")
        self._next_tick = 0.0
        self._carry: list[RawEntry] = []  # read, pending, not yet processed (stream order)
        # Streams that may hold entries past the last read of them, by that last entry: kept
        # from one batch to the next (``_read_tracked``), so the merge point stays where it is.
        self._more: dict[str, EntryKey] = {}
        self._last_read: list[RawEntry] = []
        self._pending_cursor: dict[str, str] = {}
        self._last_lag: int | None = None
        self._kinds = stream_kinds(settings)
        self._dialect = dialect_options(settings)
        self.log = get_logger(component="worker", consumer=settings.consumer_name)
        self.losses = LossWatch(
            stream,
            committed=lambda: read_committed(settings.database_dsn(), settings.group),
            period_s=settings.metrics_refresh_s,
            observer=self.observer,
            log=self.log,
        )

    # -- control --------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish the batch in hand and return (safe from a signal handler)."""
        if not self._stop.is_set():
            self._stop_deadline = time.monotonic() + self.settings.shutdown_grace_s
            self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def _draining_own_pending(self) -> bool:
        return bool(self._pending_streams)

    # -- loop -----------------------------------------------------------------------------------

    def run(self, *, until_idle: bool = False) -> int:
        """Consume until ``stop()`` (or, with ``until_idle``, until the streams are drained)."""
        self._retry("redis", self.stream.ensure_groups)
        self._check_eviction_policy()
        self.losses.check()  # entries lost in Redis while no worker read (losses.py)
        self.log.info(
            "worker_started",
            streams=self.stream.streams,
            group=self.settings.group,
            batch_max_entries=self.settings.batch_max_entries,
            batch_max_wait_ms=self.settings.batch_max_wait_ms,
        )
        try:
            while not self.stopping:
                self.observer.heartbeat()
                self.losses.check_if_due()
                had_work = self._step()
                if until_idle and not had_work and self._drained():
                    break
        except ShutdownTimeoutError:
            self.log.error("shutdown_grace_expired", grace_s=self.settings.shutdown_grace_s)
            return EXIT_GRACE_EXPIRED
        self.log.info(
            "worker_stopped",
            entries=self.totals.entries,
            fills=self.totals.fills,
            dead_lettered=self.totals.dead_lettered,
            batches=self.totals.batches,
        )
        return EXIT_OK

    def _check_eviction_policy(self) -> None:
        """Warn when Redis may evict the streams: under memory pressure an ``allkeys-*`` policy
        evicts any key, a whole stream (entries never read) included. ``volatile-*`` policies
        evict only keys with a TTL, and streams have none; ``noeviction`` refuses writes."""
        try:
            policy = self.stream.eviction_policy()
        except RedisUnavailableError as exc:
            policy, reason = None, str(exc)
        else:
            reason = "CONFIG GET is not allowed for this Redis user (ACL)"
        if policy is None:
            self.log.warning("redis_eviction_policy_unchecked", reason=reason)
        elif policy.startswith("allkeys-"):
            self.log.warning(
                "redis_eviction_policy_can_evict_streams",
                policy=policy,
                detail=(
                    f"maxmemory-policy {policy} may evict any key under memory pressure, the "
                    "streams included (entries not yet read would be lost); volatile-* policies "
                    "only evict keys with a TTL (streams have none): set noeviction"
                ),
            )

    def _drained(self) -> bool:
        return not self._draining_own_pending and (
            self._retry("redis", self.stream.pending_count) == 0
        )

    def _step(self) -> bool:
        """Collect and process one batch; return whether there was anything to do."""
        if not self._draining_own_pending:
            # Entries claimed from other consumers join our pending list and are drained
            # from there in stream order with ours (never applied apart, ahead of them).
            self._claim_if_due()
        if not self._draining_own_pending and not self._carry:
            # Order gate: never read past entries that are pending but not in hand (a read
            # whose reply was lost, or a dead consumer's batch): positions need stream order.
            owners = self._retry("redis", self.stream.pending_owners)
            if owners.get(self.stream.consumer):
                self._start_draining()
            elif owners:
                self._next_claim = 0.0
                if not self._claim_if_due():
                    self._stop.wait(min(self.settings.block_ms / 1000, 0.1))
                    return True
        draining = self._draining_own_pending
        batch = self._collect()
        if not batch and draining:
            if not self._carry:
                # Our pending list is exhausted: read new entries next (the order gate
                # above runs first).
                self._pending_streams.clear()
            return True
        if not batch:
            self._tick_if_due()
            return False
        self._process(batch)
        return True

    def _tick_if_due(self) -> None:
        """Idle: let the wall clock take the hourly/daily snapshots event time has not."""
        now = time.monotonic()
        if now < self._next_tick:
            return
        self._next_tick = now + 1.0
        written = self._retry("postgres", lambda: self.store.tick(datetime.now(UTC)))
        if written:
            self.log.info("snapshots_taken", count=written, source="wall_clock")

    def _claim_if_due(self) -> bool:
        """Every ``claim_interval_s``, take over what other consumers left pending longer than
        ``claim_idle_s``; then drain our pending list from the start. Entries trimmed while
        pending are dead-lettered here. Returns whether anything was taken."""
        now = time.monotonic()
        if now < self._next_claim:
            return False
        self._next_claim = now + self.settings.claim_interval_s
        claimed = self._retry(
            "redis",
            lambda: self.stream.claim_stale(
                min_idle_ms=int(self.settings.claim_idle_s * 1000),
                count=self.settings.batch_max_entries,
            ),
        )
        if claimed.gone:
            self._process(claimed.gone)
        if not claimed.taken:
            return False
        self.log.warning("entries_reclaimed", count=claimed.taken)
        self._start_draining()
        return True

    def _collect(self) -> list[RawEntry]:
        """Read up to ``batch_max_entries`` new entries within ``batch_max_wait_ms`` of the
        first, and return at most that many that are complete in stream order (see
        ``merge_point``); the rest stays in hand (``_carry``) for the next batch. Entries in
        hand are pending in Redis, so a crash loses nothing: they are re-read first on restart.

        Reads go to the streams that are behind (those holding the merge point, and those
        with nothing in hand), so one busy stream cannot run ahead and starve the batch."""
        limit = self.settings.batch_max_entries
        epoch = self._drain_epoch
        batch, self._carry = self._carry, []
        # A stream with entries in hand may hold more after them. Streams whose last read
        # filled its share stay in ``more`` too, even with nothing in hand: without them the
        # merge point would move to the others' last entries, and the next read would take
        # more of a stream that is ahead already (those entries piled up in hand).
        more = dict(self._more)
        for entry in batch:
            more.setdefault(entry.key.stream, entry.key)
        first_block = None if batch or self._draining_own_pending else self.settings.block_ms
        fresh = len(self._read_tracked(more, limit, first_block))
        batch += self._last_read
        deadline = time.monotonic() + self.settings.batch_max_wait_ms / 1000
        while fresh and not self.stopping:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            behind = self._behind(more)
            # Each read asks every stream it names for one entry at least: never overflow.
            if fresh + len(behind) > limit:
                break
            if remaining_ms > 0:
                block_ms = None if self._draining_own_pending else remaining_ms
            elif any(name in more for name in behind) and limit - fresh >= limit // 8:
                # Past the wait, read on (without blocking) while a stream at the merge point
                # may hold more and an eighth of the batch is still free. COUNT cuts a busy
                # stream at an earlier id than a sparse one, so on a backlog a single read
                # leaves about half the batch waiting in hand for the next one.
                block_ms = None
            else:
                break
            if not self._read_tracked(more, limit - fresh, block_ms):
                break
            fresh += len(self._last_read)
            batch += self._last_read
        if self._drain_epoch != epoch:
            # A read failed and may have delivered entries whose reply was lost: everything
            # read so far is in our pending list and is re-read from 0, in order.
            self._carry = []
            self._more = {}
            return []
        # A stream held at NOTHING_READ (drained history, nothing of it read yet) is behind:
        # next time it is read with the others, as a stream not in ``more`` is.
        self._more = {name: key for name, key in more.items() if key.entry_id != NOTHING_READ}
        return self._keep_ordered(batch, more, limit)

    def _behind(self, more: dict[str, EntryKey]) -> list[str]:
        """Streams worth reading now: drained ones (new entries may have come) and the ones
        whose last read id is the merge point."""
        order = entry_order(self.stream.streams)
        point = merge_point(more, order)
        return [
            name
            for name in self.stream.streams
            if name not in more or order(RawEntry(more[name], {})) == point
        ]

    def _read_tracked(
        self, more: dict[str, EntryKey], count: int, block_ms: int | None
    ) -> list[RawEntry]:
        """One read of the streams that are behind; record in ``more`` each stream that may
        hold entries beyond what was read (it filled its share), keyed to its last id.

        While draining, a stream still in ``_pending_streams`` is read from our own pending
        list. When that list is exhausted, entries never delivered may follow it, older than
        pending entries of other streams: the stream is held at its last pending id (so the
        merge point stops there) and read for new entries from then on — unless another
        consumer holds pending entries (then reading past them would break their stream's
        order: the whole pending list is drained first and the order gate applies after)."""
        names = self._behind(more)
        per_stream = max(1, count // len(names))
        history = [name for name in names if name in self._pending_streams]
        epoch = self._drain_epoch
        if history and self._drain_in_order is None:
            self._drain_in_order = self._no_foreign_pending()
        if len(history) == len(names):
            entries = self._retry(
                "redis",
                lambda: self.stream.read(
                    count=per_stream,
                    block_ms=None,
                    pending=True,
                    after=self._pending_cursor,
                    streams=names,
                ),
            )
        else:
            entries = self._read_new(per_stream, None if history else block_ms, names)
        if self._drain_epoch != epoch:
            self._last_read = []
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
            elif name in history and self._drain_in_order:
                self._pending_streams.discard(name)
                more[name] = EntryKey(name, self._pending_cursor.get(name, NOTHING_READ))
            else:
                more.pop(name, None)
        self._last_read = entries
        return entries

    def _no_foreign_pending(self) -> bool:
        owners = self._retry("redis", self.stream.pending_owners)
        return not any(n for name, n in owners.items() if name != self.stream.consumer)

    def _keep_ordered(
        self, batch: list[RawEntry], more: dict[str, EntryKey], limit: int
    ) -> list[RawEntry]:
        """The first ``limit`` entries of ``batch`` in stream order, up to the merge point;
        everything after them stays in hand."""
        order = entry_order(self.stream.streams)
        batch.sort(key=order)
        point = merge_point(more, order)
        complete = len(batch) if point is None else bisect.bisect_right(batch, point, key=order)
        cut = min(complete, limit)
        self._carry = batch[cut:]
        return batch[:cut]

    def _read_new(self, count: int, block_ms: int | None, streams: Sequence[str]) -> list[RawEntry]:
        """XREADGROUP ``>`` exactly once (streams still in ``_pending_streams`` are read from
        our pending list in the same command). When it fails, Redis may still have delivered
        entries whose reply was lost: reading ``>`` again would skip past them and break stream
        order, so the next step re-reads this consumer's own pending entries from ``0`` instead.
        ``count`` applies to each stream."""
        fresh = [name for name in streams if name not in self._pending_streams]
        try:
            return self._attempt(
                "redis",
                lambda: self.stream.read(
                    count=count,
                    block_ms=block_ms,
                    pending=len(fresh) < len(streams),
                    after=self._pending_cursor,
                    streams=streams,
                    new=fresh,
                ),
                float(self.settings.retry_initial_ms),
            )
        except RedisUnavailableError:
            self._start_draining()
            return []

    def _start_draining(self) -> None:
        """Re-read our own pending entries from the start (in order); what was in hand is in
        that list too, so it is dropped here rather than processed twice."""
        self._pending_streams = set(self.stream.streams)
        self._drain_in_order = None
        self._drain_epoch += 1
        self._pending_cursor = {}
        self._carry = []
        self._more = {}

    # -- one batch --------------------------------------------------------------------------------

    def _process(self, batch: list[RawEntry]) -> None:
        started = time.perf_counter()
        # Stream id order; on a tie, orders before fills before marks (the configured order).
        batch.sort(key=entry_order(self.stream.streams))
        dead: list[tuple[RawEntry, str]] = []
        parsed: list[ParsedEntry] = []
        for entry in batch:
            reason = self._poison_reason(entry)
            if reason is None:
                try:
                    parsed.append(ParsedEntry(entry, self._parse(entry)))
                    continue
                except events.InvalidEventError as exc:
                    reason = exc.reason
            dead.append((entry, reason))

        isolated: list[tuple[ParsedEntry, str]] = []
        results = self._write_or_split(parsed, isolated) if parsed else []
        not_applied = [*isolated, *(r for result in results for r in result.rejected)]
        dead.extend((item.raw, reason) for item, reason in not_applied)
        skipped = {item.key for item, _ in not_applied}
        committed: list[EntryKey] = [p.key for p in parsed if p.key not in skipped]

        self._retry("redis", lambda: self.stream.dead_letter_and_ack(dead, committed))
        for entry, reason in dead:
            self.log.warning(
                "entry_dead_lettered",
                stream=entry.key.stream,
                entry_id=entry.key.entry_id,
                reason=reason,
                deliveries=entry.deliveries,
            )
        self._account(batch, results, dead, started)
        self.observer.batch_committed(batch, parsed, dead, results, time.perf_counter() - started)

    def _parse(self, entry: RawEntry) -> events.Event:
        return parse_raw(self._kinds, entry, self._dialect)

    def _poison_reason(self, entry: RawEntry) -> str | None:
        if not entry.fields:
            return (
                "trimmed from the stream (MAXLEN) while pending, before it was committed: "
                "its fields are gone (replay it from an archive or the ledger if it mattered)"
            )
        if entry.not_utf8 is not None:
            return entry.not_utf8
        if entry.deliveries > self.settings.max_deliveries:
            return (
                f"delivered {entry.deliveries} times without being committed "
                f"(limit {self.settings.max_deliveries}); set aside as poison"
            )
        return None

    def _write_or_split(
        self, items: list[ParsedEntry], isolated: list[tuple[ParsedEntry, str]]
    ) -> list[BatchResult]:
        """Commit ``items``; on a data error split them (stream order kept) until each bad
        entry is alone, and put it in ``isolated`` with PostgreSQL's reason."""
        try:
            return [self._retry("postgres", lambda: self.store.write_batch(items))]
        except RejectedByDatabaseError as exc:
            if len(items) == 1:
                isolated.append((items[0], f"rejected by PostgreSQL: {exc}"))
                return []
            self.log.info("batch_split", entries=len(items), reason=str(exc))
            middle = len(items) // 2
            return self._write_or_split(items[:middle], isolated) + self._write_or_split(
                items[middle:], isolated
            )

    def _account(
        self,
        batch: Sequence[RawEntry],
        results: Sequence[BatchResult],
        dead: Sequence[tuple[RawEntry, str]],
        started: float,
    ) -> None:
        orders = sum(r.orders_written for r in results)
        fills = sum(r.fills_inserted for r in results)
        duplicates = sum(r.fills_duplicate for r in results)
        self.totals.entries += len(batch)
        self.totals.orders += orders
        self.totals.fills += fills
        self.totals.duplicates += duplicates
        self.totals.dead_lettered += len(dead)
        self.totals.batches += 1
        self.log.info(
            "batch_committed",
            lag=self._lag(),
            entries=len(batch),
            orders=orders,
            fills=fills,
            duplicate_fills=duplicates,
            dead_lettered=len(dead),
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
            first_id=batch[0].key.entry_id,
            last_id=batch[-1].key.entry_id,
        )

    def _lag(self) -> int | None:
        """Entries not yet delivered to the group (XINFO GROUPS, Redis >= 7), read at most
        once a second so the batch log line costs no extra round trips under load."""
        now = time.monotonic()
        if now >= self._lag_checked_at + 1.0:
            self._lag_checked_at = now
            try:
                self._last_lag = self.stream.lag()
            except RedisUnavailableError:
                self._last_lag = None
        return self._last_lag

    # -- outages --------------------------------------------------------------------------------

    def _retry(self, server: str, call: Callable[[], T]) -> T:
        """Run ``call`` until it succeeds, backing off while ``server`` is unreachable."""
        delay_ms = float(self.settings.retry_initial_ms)
        while True:
            try:
                return self._attempt(server, call, delay_ms)
            except (DatabaseUnavailableError, RedisUnavailableError):
                delay_ms = min(delay_ms * 2, float(self.settings.retry_max_ms))

    def _attempt(self, server: str, call: Callable[[], T], delay_ms: float) -> T:
        """Run ``call`` once. If ``server`` is unreachable: log the state change (once), sleep
        a full-jitter pause of up to ``delay_ms`` and re-raise; give up after the grace period
        once stopping."""
        unavailable = DatabaseUnavailableError if server == "postgres" else RedisUnavailableError
        try:
            value = call()
        except unavailable as exc:
            if not self._outage[server]:
                self._outage[server] = True
                self.log.error(f"{server}_unavailable", error=str(exc))
                self.observer.server_state(server, available=False)
            self.observer.retry(server)
            if self._stop_deadline is not None and time.monotonic() >= self._stop_deadline:
                raise ShutdownTimeoutError from exc
            # Full jitter (AWS architecture blog): sleep uniformly in [0, delay].
            self._sleep(random.uniform(0, delay_ms) / 1000)  # noqa: S311 - jitter, not crypto
            raise
        if self._outage[server]:
            self._outage[server] = False
            self.log.warning(f"{server}_available")
            self.observer.server_state(server, available=True)
        return value

    def _sleep(self, seconds: float) -> None:
        # Wake early when stop() is called, but keep retrying until the grace period ends.
        if self._stop_deadline is None:
            self._stop.wait(seconds)
        else:
            time.sleep(min(seconds, max(0.0, self._stop_deadline - time.monotonic())))
