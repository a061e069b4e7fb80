"""The worker loop: read → parse → write in one transaction → acknowledge → report.

Reads top to bottom (``run`` → ``_step`` → ``_process``):
- Batches come from ``merge.OrderedReader``, in stream order across the streams. At start it
  drains this consumer's own pending entries (what it had read before a crash), merged with
  what follows them, then reads new ones; every ``claim_interval_s`` the worker takes over
  entries other consumers left idle too long, and drains those in order with its own.
- A batch is collected up to the size limit or ``batch_max_wait_ms``, validated (invalid
  entries are dead-lettered with the reason), written in one transaction, then acknowledged
  together with the dead letters (one MULTI/EXEC). Nothing is acknowledged before it commits.
  The limit follows the backlog (``batch_size.BatchSizer``): it doubles while reads come back
  full, up to ``batch_max_entries``, and halves back when they do not.
- When PostgreSQL refuses a batch's data, the batch is split in halves (in stream order) until
  the one bad entry is isolated and dead-lettered; every good entry is still committed.
- Every call to PostgreSQL or Redis goes through ``outages.Outages``: retried with backoff while
  the server is unreachable, each state change logged once.
- ``stop()`` only sets a flag: the batch in hand is finished (committed and acked) and ``run``
  returns. If that cannot happen within ``shutdown_grace_s`` it gives up without acking (the
  entries stay pending and are redelivered; their effects are idempotent).

What is not the loop lives beside it: ``outages.py`` (backoff, the shutdown grace),
``tally.py`` (totals, the ``batch_committed`` line), ``batch_size.py`` (the size limit),
``losses.py`` (data lost in Redis, the eviction-policy check), ``merge.py`` (stream order),
``parse.py`` and the store.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from consumer import dialect, events
from consumer.batch_size import BatchSizer, mean_entry_bytes
from consumer.errors import RejectedByDatabaseError
from consumer.fold import BatchResult
from consumer.logs import get_logger
from consumer.losses import LossWatch, check_eviction_policy, read_committed
from consumer.merge import OrderedReader, entry_order
from consumer.observer import Observer
from consumer.outages import Outages, Shutdown, ShutdownTimeoutError
from consumer.parse import Rejection, parse
from consumer.records import EntryKey, ParsedEntry, RawEntry
from consumer.settings import Settings
from consumer.stream import RedisStream
from consumer.tally import Tally, Totals

EXIT_OK = 0
EXIT_GRACE_EXPIRED = 75  # EX_TEMPFAIL: stopped with work uncommitted; it will be redelivered

__all__ = ["EXIT_GRACE_EXPIRED", "EXIT_OK", "ShutdownTimeoutError", "Store", "Totals", "Worker"]


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


class Worker:
    """One consumer in the group. Not thread-safe except for ``stop()``.

    ``log``: the logger every line of this worker goes to (default: bound to ``component`` and
    ``consumer``); a caller adding context (a shard) binds it once and passes it here."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        stream: RedisStream,
        observer: Observer | None = None,
        *,
        log: Any = None,
    ) -> None:
        self.settings = settings
        self.observer = observer if observer is not None else Observer()
        self.store = store
        self.stream = stream
        self.log = log if log is not None else worker_logger(settings)
        self.shutdown = Shutdown(settings.shutdown_grace_s)
        self.outages = Outages(
            initial_ms=settings.retry_initial_ms,
            max_ms=settings.retry_max_ms,
            shutdown=self.shutdown,
            log=self.log,
            observer=self.observer,
        )
        self.tally = Tally(stream.lag, self.log)
        self.sizer = BatchSizer.from_settings(settings)
        self.reader = OrderedReader(
            stream,
            limit=self.sizer.limit,
            max_wait_ms=settings.batch_max_wait_ms,
            block_ms=settings.block_ms,
            redis=self.outages.redis,
            stopping=lambda: self.shutdown.requested,
        )
        self.losses = LossWatch(
            stream,
            committed=lambda: read_committed(settings.database_dsn(), settings.group),
            period_s=settings.metrics_refresh_s,
            observer=self.observer,
            log=self.log,
        )
        self._order = entry_order(stream.streams)
        self._kinds = stream_kinds(settings)
        self._dialect = dialect_options(settings)
        self._next_claim = 0.0
        self._next_tick = 0.0

    @property
    def totals(self) -> Totals:
        return self.tally.totals

    # -- control --------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish the batch in hand and return (safe from a signal handler)."""
        self.shutdown.request()

    @property
    def stopping(self) -> bool:
        return self.shutdown.requested

    # -- loop -----------------------------------------------------------------------------------

    def run(self, *, until_idle: bool = False) -> int:
        """Consume until ``stop()`` (or, with ``until_idle``, until the streams are drained)."""
        self.outages.retry("redis", self.stream.ensure_groups)
        check_eviction_policy(self.stream, self.log)
        self.losses.check()  # entries lost in Redis while no worker read (losses.py)
        self.log.info(
            "worker_started",
            streams=self.stream.streams,
            group=self.settings.group,
            batch_max_entries=self.settings.batch_max_entries,
            batch_min_entries=self.sizer.floor,
            batch_max_bytes=self.settings.batch_max_bytes,
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
        totals = self.totals
        self.log.info(
            "worker_stopped",
            entries=totals.entries,
            fills=totals.fills,
            dead_lettered=totals.dead_lettered,
            batches=totals.batches,
        )
        return EXIT_OK

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
            started = time.perf_counter()
            self._process(batch)
            self.reader.limit = self.sizer.after(
                full=self.reader.full,
                seconds=time.perf_counter() - started,
                mean_bytes=mean_entry_bytes(batch),
            )
            return True
        if not draining:
            self._tick_if_due()
        return draining  # an empty read while draining is still work: new entries come next

    def _process(self, batch: list[RawEntry]) -> None:
        """One batch: parse → write in one transaction → dead-letter and ack → report."""
        started = time.perf_counter()
        # Stream id order; on a tie, orders before fills before marks (the configured order).
        batch.sort(key=self._order)
        parsed, dead = self._parse_all(batch)
        isolated: list[tuple[ParsedEntry, str]] = []
        results = self._write_or_split(parsed, isolated) if parsed else []
        not_applied = [*isolated, *(r for result in results for r in result.rejected)]
        dead.extend((item.raw, reason) for item, reason in not_applied)
        skipped = {item.key for item, _ in not_applied}
        committed: list[EntryKey] = [p.key for p in parsed if p.key not in skipped]

        self.outages.retry("redis", lambda: self.stream.dead_letter_and_ack(dead, committed))
        for entry, reason in dead:
            self.log.warning(
                "entry_dead_lettered",
                stream=entry.key.stream,
                entry_id=entry.key.entry_id,
                reason=reason,
                deliveries=entry.deliveries,
            )
        self.tally.batch(batch, results, dead, started)
        self.observer.batch_committed(batch, parsed, dead, results, time.perf_counter() - started)

    # -- read: claims, the order gate, idle ticks -----------------------------------------------

    def _drained(self) -> bool:
        if self.reader.draining:
            return False
        return self.outages.retry("redis", self.stream.pending_count) == 0

    def _order_gate_closed(self) -> bool:
        """Order gate: never read past entries that are pending but not in hand (a read whose
        reply was lost, or a dead consumer's batch): positions need stream order. Ours are
        drained from the start; another consumer's are claimed now if they are idle long
        enough — if not, wait a little and return True (nothing is read this step)."""
        owners = self.outages.retry("redis", self.stream.pending_owners)
        if owners.get(self.stream.consumer):
            self.reader.drain_own_pending()
        elif owners:
            self._next_claim = 0.0
            if not self._claim_if_due():
                self.shutdown.wait(min(self.settings.block_ms / 1000, 0.1))
                return True
        return False

    def _claim_if_due(self) -> bool:
        """Every ``claim_interval_s``, take over what other consumers left pending longer than
        ``claim_idle_s``; then drain our pending list from the start. Entries trimmed while
        pending are dead-lettered here. Returns whether anything was taken."""
        now = time.monotonic()
        if now < self._next_claim:
            return False
        self._next_claim = now + self.settings.claim_interval_s
        claimed = self.outages.retry(
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

    def _tick_if_due(self) -> None:
        """Idle: let the wall clock take the hourly/daily snapshots event time has not."""
        now = time.monotonic()
        if now < self._next_tick:
            return
        self._next_tick = now + 1.0
        written = self.outages.retry("postgres", lambda: self.store.tick(datetime.now(UTC)))
        if written:
            self.log.info("snapshots_taken", count=written, source="wall_clock")

    # -- parse and write --------------------------------------------------------------------------

    def _parse_all(
        self, batch: Sequence[RawEntry]
    ) -> tuple[list[ParsedEntry], list[tuple[RawEntry, str]]]:
        """The entries that parse, and the others with the reason they are dead-lettered."""
        parsed: list[ParsedEntry] = []
        dead: list[tuple[RawEntry, str]] = []
        for entry in batch:
            reason = self._poison_reason(entry)
            if reason is None:
                try:
                    parsed.append(ParsedEntry(entry, self._parse(entry)))
                    continue
                except events.InvalidEventError as exc:
                    reason = exc.reason
            dead.append((entry, reason))
        return parsed, dead

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
            return [self.outages.retry("postgres", lambda: self.store.write_batch(items))]
        except RejectedByDatabaseError as exc:
            if len(items) == 1:
                isolated.append((items[0], f"rejected by PostgreSQL: {exc}"))
                return []
            self.log.info("batch_split", entries=len(items), reason=str(exc))
            middle = len(items) // 2
            return self._write_or_split(items[:middle], isolated) + self._write_or_split(
                items[middle:], isolated
            )


def worker_logger(settings: Settings, **context: Any) -> Any:
    """The worker's logger: ``component=worker``, its consumer name and ``context``."""
    return get_logger(component="worker", consumer=settings.consumer_name, **context)


# -- shared with replay (consumer/replay.py): how a batch is parsed -----------------------------


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
