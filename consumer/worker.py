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
- A batch with entries delivered more than ``max_deliveries`` times is processed the way
  ``trials.py`` cuts it (suspects tried with the others, then alone, recorded in Redis first):
  an entry is dead-lettered as poison on evidence that it stops the worker, never on its
  delivery count alone.
- Every call to PostgreSQL or Redis goes through ``outages.Outages``: retried with backoff while
  the server is unreachable, each state change logged once.
- ``stop()`` only sets a flag: the batch in hand is finished (committed and acked) and ``run``
  returns. If that cannot happen within ``shutdown_grace_s`` it gives up without acking (the
  entries stay pending and are redelivered; their effects are idempotent).

Pipelined commits (``pipeline_commits``, off by default: measured no faster, and slower at
the tail, see docs/benchmarks.md; issue #20). Two stages overlap: the
worker's thread reads batch N+1 and parses it (sort, validate) while the committer thread
(``committer.py``) writes batch N, commits it, dead-letters and acknowledges it, and reports it.
The hand-off holds one batch: N+1 is handed over only once N is acknowledged, so at most one
batch is in flight and one parsed ahead, batches commit in the order they were read, and an
entry is acknowledged only after its own commit. A batch that PostgreSQL refuses is split inside
the committer; an outage while committing N is retried there while the reader, N+1 parsed (not
folded), waits at the hand-off. An error of the committer is raised in the worker's thread at
the next hand-off. What must not overlap a commit:

- **our pending list**: the batch in flight is pending under our consumer name until its ack.
  The order gate asks ``pending_owners`` with the ack held off (``_ack_lock``) and counts only
  our entries beyond the batch in flight (all of its entries, dead letters included: they are
  acked in the same MULTI); only those mean a drain. Whenever the reader re-reads our pending
  list (``reader.draining``: at start, after a failed read or a claim) the worker first waits
  for the committer (``_settle``): a re-read from ``0`` would otherwise hand out the batch in
  flight a second time. Draining is rare, so the steady backlog keeps the overlap.
- **the rest that looks at the group or the store as a whole** — dead-lettering trimmed claimed
  entries, the idle tick (snapshots by the wall clock), ``until_idle``'s drained check, stop —
  waits for the committer first too: each runs when idle, so it costs no overlap.

``pipeline_commits=False`` is the plain loop: each batch committed before the next is read.
The batch size (``batch_size.py``) sees each batch's parse + commit time, in the pipeline one
batch late (the last one committed when the next is handed over).

What is not the loop lives beside it: ``outages.py`` (backoff, the shutdown grace),
``tally.py`` (totals, the ``batch_committed`` line), ``batch_size.py`` (the size limit),
``losses.py`` (data lost in Redis, the eviction-policy check), ``merge.py`` (stream order),
``parse.py`` and the store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol

from consumer import dialect, events, trials
from consumer.batch_size import BatchSizer, mean_entry_bytes
from consumer.collector import fewer_collections, paused
from consumer.committer import Committer
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


@dataclass
class Parsed:
    """A batch read and parsed (stream order), on its way to the committer."""

    batch: list[RawEntry]
    parsed: list[ParsedEntry]
    dead: list[tuple[RawEntry, str]]
    parse_s: float


class Worker:
    """One consumer in the group. Not thread-safe except for ``stop()``; with
    ``pipeline_commits`` it runs a committer thread of its own during ``run``.

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
        self.pipelined = settings.pipeline_commits
        self._committer: Committer[Parsed] | None = None
        # Held while acknowledging and while the order gate reads the pending list, so the gate
        # knows exactly how many of our pending entries are the batch in flight.
        self._ack_lock = threading.Lock()
        self._in_flight = 0  # entries handed to the committer and not yet acknowledged
        self._last_batch_s: float | None = None  # parse + commit time of the last batch

    @property
    def totals(self) -> Totals:
        return self.tally.snapshot()

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
            pipeline_commits=self.pipelined,
        )
        if self.pipelined:
            self._committer = Committer(self._commit, name=f"committer-{self.stream.consumer}")
        try:
            with fewer_collections():  # a backlog batch keeps thousands of objects alive
                while not self.stopping:
                    self.observer.heartbeat()
                    self.losses.check_if_due()
                    with paused():  # the batch's objects are freed by its end: see collector
                        had_work = self._step()
                    if until_idle and not had_work and self._drained():
                        break
                self._settle()  # the batch in flight commits and is acked before run returns
        except ShutdownTimeoutError:
            self.log.error("shutdown_grace_expired", grace_s=self.settings.shutdown_grace_s)
            return EXIT_GRACE_EXPIRED
        except BaseException:
            self.shutdown.request()  # the committer's retries end within the grace period
            raise
        finally:
            self._close_committer()
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
        if draining:
            self._settle()  # a re-read of our pending list must not find the batch in flight
        batch = self.reader.next_batch()
        suspects = trials.suspects(batch, self.settings.max_deliveries)
        if suspects:
            self._settle()
            self._try_suspects(batch, suspects)
            return True
        if batch:
            item = self._prepare(batch)
            self._hand_off(item)
            seconds = self._last_batch_s
            self.reader.limit = self.sizer.after(
                full=self.reader.full,
                seconds=item.parse_s if seconds is None else seconds,
                mean_bytes=mean_entry_bytes(batch),
            )
            return True
        if not draining:
            self._tick_if_due()
        return draining  # an empty read while draining is still work: new entries come next

    def _process(self, batch: list[RawEntry]) -> None:
        """One batch, here and now: parse → write in one transaction → dead-letter and ack →
        report (the committer must be idle: ``_settle``)."""
        self._commit(self._prepare(batch))

    def _try_suspects(self, batch: list[RawEntry], keys: list[EntryKey]) -> None:
        """A batch (in stream order, from the reader) with entries delivered more than
        ``max_deliveries`` times (``keys``): processed in the segments ``trials.plan`` cuts it
        into, one after the other, each suspect's attempt recorded before it begins and
        forgotten once committed and acked (the committer idle)."""
        limit = self.settings.max_deliveries
        unfinished = self.outages.retry("redis", lambda: self.stream.unfinished_trials(keys))
        segments = trials.plan(batch, limit, unfinished)
        self.log.warning(
            "suspect_entries_tried",
            suspects=len(keys),
            alone=sum(1 for s in segments if s.alone),
            poison=sum(1 for s in segments if s.poison is not None),
            max_deliveries=limit,
        )
        for segment in segments:
            recorded = segment.suspects
            if segment.poison is not None:
                (entry,) = segment.entries
                self._commit(Parsed(segment.entries, [], [(entry, segment.poison)], 0.0))
            else:
                attempts = {key: unfinished.get(key, 0) + 1 for key in recorded}
                self.outages.retry("redis", partial(self.stream.begin_trial, attempts))
                self._process(segment.entries)
            self.outages.retry("redis", partial(self.stream.end_trial, recorded))

    def _prepare(self, batch: list[RawEntry]) -> Parsed:
        """The first stage: sort (stream id order; on a tie, orders before fills before
        marks, the configured order) and parse."""
        started = time.perf_counter()
        batch.sort(key=self._order)
        parsed, dead = self._parse_all(batch)
        return Parsed(batch, parsed, dead, time.perf_counter() - started)

    def _hand_off(self, item: Parsed) -> None:
        """Commit ``item`` now, or (pipelined) hand it to the committer once the batch in
        flight is acknowledged (its error raised here)."""
        committer = self._committer
        if committer is None:
            self._commit(item)
            return
        committer.wait()
        with self._ack_lock:
            self._in_flight = len(item.batch)
        committer.submit(item)

    def _settle(self) -> None:
        """Wait until the batch in flight (if any) is committed and acknowledged; raise the
        committer's error if it failed."""
        if self._committer is not None:
            self._committer.wait()

    def _close_committer(self) -> None:
        committer, self._committer = self._committer, None
        if committer is None:
            return
        error = committer.close()
        if error is not None:  # only when run is failing already: say what the committer hit
            self.log.error("committer_failed", error=repr(error))

    def _commit(self, item: Parsed) -> None:
        """The second stage: write in one transaction (split on refusal) → dead-letter and
        ack in one MULTI → report. Runs on the committer thread when pipelined."""
        started = time.perf_counter() - item.parse_s  # durations cover parse + commit
        batch, parsed, dead = item.batch, item.parsed, item.dead
        isolated: list[tuple[ParsedEntry, str]] = []
        results = self._write_or_split(parsed, isolated) if parsed else []
        not_applied = [*isolated, *(r for result in results for r in result.rejected)]
        dead.extend((entry.raw, reason) for entry, reason in not_applied)
        skipped = {entry.key for entry, _ in not_applied}
        committed: list[EntryKey] = [p.key for p in parsed if p.key not in skipped]

        def ack() -> None:
            with self._ack_lock:
                self.stream.dead_letter_and_ack(dead, committed)
                self._in_flight = 0

        self.outages.retry("redis", ack)
        for entry, reason in dead:
            self.log.warning(
                "entry_dead_lettered",
                stream=entry.key.stream,
                entry_id=entry.key.entry_id,
                reason=reason,
                deliveries=entry.deliveries,
            )
        self.tally.batch(batch, results, dead, started)
        self._last_batch_s = time.perf_counter() - started
        self.observer.batch_committed(batch, parsed, dead, results, self._last_batch_s)

    # -- read: claims, the order gate, idle ticks -----------------------------------------------

    def _drained(self) -> bool:
        if self.reader.draining:
            return False
        self._settle()
        return self.outages.retry("redis", self.stream.pending_count) == 0

    def _order_gate_closed(self) -> bool:
        """Order gate: never read past entries that are pending but not in hand (a read whose
        reply was lost, or a dead consumer's batch): positions need stream order. Ours are
        drained from the start; another consumer's are claimed now if they are idle long
        enough — if not, wait a little and return True (nothing is read this step)."""
        owners = self.outages.retry("redis", self._pending_owners)
        if owners.get(self.stream.consumer):
            self._settle()
            self.reader.drain_own_pending()
        elif owners:
            self._next_claim = 0.0
            if not self._claim_if_due():
                self.shutdown.wait(min(self.settings.block_ms / 1000, 0.1))
                return True
        return False

    def _pending_owners(self) -> dict[str, int]:
        """``pending_owners`` without the batch in flight: the ack waits meanwhile, so every
        entry of that batch is still pending under our name and is taken off our count."""
        with self._ack_lock:
            in_flight = self._in_flight
            owners = self.stream.pending_owners()
        me = self.stream.consumer
        beyond = owners.pop(me, 0) - in_flight
        if beyond > 0:
            owners[me] = beyond
        return owners

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
            self._settle()
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
        self._settle()  # snapshots by the wall clock follow what is committed
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
