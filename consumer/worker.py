"""The worker loop: read → validate → write in one transaction → acknowledge.

Reads top to bottom (``run`` → ``_step`` → ``_process``):
- Batches come from ``merge.OrderedReader``, in stream order across the streams. At start it
  drains this consumer's own pending entries (what it had read before a crash), merged with
  what follows them, then reads new ones; every ``claim_interval_s`` the worker takes over
  entries other consumers left idle too long, and drains those in order with its own.
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
from consumer.fold import BatchResult
from consumer.logs import get_logger
from consumer.losses import LossWatch, read_committed
from consumer.merge import OrderedReader, entry_order
from consumer.observer import Observer
from consumer.parse import Rejection, parse
from consumer.records import EntryKey, ParsedEntry, RawEntry
from consumer.settings import Settings
from consumer.stream import RedisStream

T = TypeVar("T")

EXIT_OK = 0
EXIT_GRACE_EXPIRED = 75  # EX_TEMPFAIL: stopped with work uncommitted; it will be redelivered


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


def parse_raw(
    kinds: dict[str, events.EventKind],
    entry: RawEntry,
    options: dialect.DialectOptions | None = None,
) -> events.Event:
    """``parse`` of ``entry`` as its stream's kind (the contract, or the trading bot's own
    messages translated by ``dialect.py``); its rejection raises ``InvalidEventError`` with the
    reason, which the batch loop dead-letters."""
    result = parse(kinds.get(entry.key.stream, "order"), entry.fields, entry.key.entry_id, options)
    if isinstance(result, Rejection):
        raise events.InvalidEventError(result.reason)
    return result


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
        self._next_claim = 0.0
        self._outage: dict[str, bool] = {"postgres": False, "redis": False}
        self._lag_checked_at = float("-inf")
        self._next_tick = 0.0
        self._last_lag: int | None = None
        self._kinds = stream_kinds(settings)
        self._dialect = dialect_options(settings)
        self.log = get_logger(component="worker", consumer=settings.consumer_name)
        self.reader = OrderedReader(
            stream,
            limit=settings.batch_max_entries,
            max_wait_ms=settings.batch_max_wait_ms,
            block_ms=settings.block_ms,
            redis=self._redis,
            stopping=self._stop.is_set,
        )
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
        return not self.reader.draining and self._retry("redis", self.stream.pending_count) == 0

    def _step(self) -> bool:
        """Collect and process one batch; return whether there was anything to do."""
        if not self.reader.draining:
            # Entries claimed from other consumers join our pending list and are drained
            # from there in stream order with ours (never applied apart, ahead of them).
            self._claim_if_due()
        if not self.reader.draining and not self.reader.in_hand and self._order_gate_closed():
            return True
        draining = self.reader.draining
        batch = self.reader.next_batch()
        if batch:
            self._process(batch)
            return True
        if not draining:
            self._tick_if_due()
        return draining  # an empty read while draining is still work: new entries come next

    def _order_gate_closed(self) -> bool:
        """Order gate: never read past entries that are pending but not in hand (a read whose
        reply was lost, or a dead consumer's batch): positions need stream order. Ours are
        drained from the start; another consumer's are claimed now if they are idle long
        enough — if not, wait a little and return True (nothing is read this step)."""
        owners = self._retry("redis", self.stream.pending_owners)
        if owners.get(self.stream.consumer):
            self.reader.drain_own_pending()
        elif owners:
            self._next_claim = 0.0
            if not self._claim_if_due():
                self._stop.wait(min(self.settings.block_ms / 1000, 0.1))
                return True
        return False

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
        self.reader.drain_own_pending()
        return True

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

    def _redis(self, call: Callable[[], T], *, once: bool = False) -> T:
        """Redis calls of the reader (``merge.RedisCalls``): retried, or ``once`` attempted."""
        if once:
            return self._attempt("redis", call, float(self.settings.retry_initial_ms))
        return self._retry("redis", call)

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
