"""Leased running: which shards this process works on, and the fences.

``ShardRunner`` is what ``paper-consumer run`` is. It composes around the ordinary ``Worker``
rather than changing it: for each shard it holds, one thread runs a ``ShardWorker`` (a
``Worker`` over that shard's streams) whose store and stream are fenced. Without sharding
(``PAPER_SHARDS`` 0) the unsharded streams are one shard: one worker process is active at a
time, the others stand by and take over when its lease expires.

- **Membership**: every ``lease_ttl_s / 3`` the runner says it is alive (``paper_shard_members``)
  and reads the live members; its fair share is N // W shards (``shards.plan_balance``). Below
  it, it acquires free shards; above it, it stops its surplus workers and releases their leases
  so that a new worker gets work. A process starting waits one interval first, so processes
  started together see each other before anyone takes everything.
- **Leases** (``paper_shard_leases``): a row per shard with owner, epoch (the fencing token,
  +1 at every acquisition) and an expiry by PostgreSQL's clock, renewed at each heartbeat.
  A dead process's shards are free ``lease_ttl_s`` after its last renewal.
- **Fencing, PostgreSQL side** (the hard guarantee): every batch transaction of a shard starts
  by locking its lease row FOR SHARE and checking owner, epoch and expiry
  (``store.check_fence``); otherwise nothing is written (``LeaseLostError``). A takeover must
  update that row, so it waits until the batch in flight commits or rolls back: two workers
  never write the same shard's batches at the same time, whatever fails in which order.
- **Fencing, Redis side** (timing): a shard's stream refuses to read, claim or acknowledge once
  the lease may have expired by the local clock (renewal sent + ttl - a guard), and clamps
  XREADGROUP BLOCK to what is left, so a worker cut off from PostgreSQL stops reading before
  its successor starts. The successor first adopts every entry pending at other consumers
  (XCLAIM) and re-reads them in order as its own, then reads new ones.

Effects are idempotent (fills by id, monotonic order folds, per-stream offsets), so entries
that a lost owner read but could not commit are simply processed again by the next one.
"""

from __future__ import annotations

import functools
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from consumer import events, shards
from consumer.db import Fence, LeaseStore, PostgresStore
from consumer.errors import DatabaseUnavailableError, LeaseLostError, RedisUnavailableError
from consumer.fold import BatchResult
from consumer.logs import get_logger
from consumer.observer import Observer
from consumer.records import ParsedEntry, RawEntry
from consumer.settings import Settings
from consumer.stream import RedisStream, check_cluster_layout
from consumer.worker import EXIT_GRACE_EXPIRED, EXIT_OK, Worker, worker_logger

T = TypeVar("T")

EXIT_SHARD_FAILED = 70  # EX_SOFTWARE: a shard's worker died of an unexpected error


def heartbeat_interval_s(ttl_s: float) -> float:
    """How often leases are renewed: three chances before one expires."""
    return ttl_s / 3


def read_guard_s(ttl_s: float) -> float:
    """How long before the lease's expiry (by the local clock) reads stop."""
    return min(1.0, ttl_s / 5)


class LocalLease:
    """What a shard's thread knows of its lease: until when (monotonic) it may still read."""

    def __init__(self, valid_until: float) -> None:
        self.valid_until = valid_until

    def remaining_s(self) -> float:
        return self.valid_until - time.monotonic()

    def check(self, shard: int) -> float:
        """Seconds left, or ``LeaseLostError`` when none are."""
        left = self.remaining_s()
        if left <= 0:
            raise LeaseLostError(f"shard {shard}: lease not renewed in time, reading stopped")
        return left

    def revoke(self) -> None:
        self.valid_until = float("-inf")


class LeasedStream(RedisStream):
    """A shard's streams that refuse to read, claim or acknowledge without a valid lease."""

    lease: LocalLease
    shard: int

    @classmethod
    def for_shard(cls, settings: Settings, shard: int, lease: LocalLease) -> LeasedStream:
        """The streams of ``settings`` (already the shard's: ``shards.shard_settings``)."""
        stream = cls.from_settings(settings)
        stream.lease, stream.shard = lease, shard
        return stream

    def _guard(self, block_ms: int | None = None) -> int | None:
        """Refuse (``LeaseLostError``) once the lease may have expired; a read blocks no longer
        than the lease has left."""
        left_ms = int(self.lease.check(self.shard) * 1000)
        return None if block_ms is None else max(1, min(block_ms, left_ms))


class ShardsProbe(RedisStream):
    """Every shard's streams at once, for the metrics prober and ``status``: read-only, and
    the dead letters are those of all shards' dead-letter streams together."""

    dlqs: list[str]

    @classmethod
    def for_settings(cls, settings: Settings) -> ShardsProbe:
        parts = [shards.shard_settings(settings, k) for k in range(shards.lease_count(settings))]
        probe = cls.from_settings(settings, streams=[n for part in parts for n in part.streams()])
        probe.dlqs = [part.dlq_stream for part in parts]
        return probe

    def dead_letters(self, newest: int = 3) -> tuple[int, list[dict[str, str]]]:
        total, letters = 0, []
        for name in self.dlqs:
            self.dlq_stream = name
            length, some = super().dead_letters(newest)
            total += length
            letters.extend(some)
        letters.sort(key=lambda letter: tuple(map(int, letter["id"].split("-"))), reverse=True)
        return total, letters[:newest]


class FencedStore:
    """The worker's ``Store`` for one shard: every batch checks the lease in its transaction."""

    def __init__(self, store: PostgresStore, fence: Fence) -> None:
        self.store = store
        self.fence = fence

    def write_batch(self, items: Sequence[ParsedEntry]) -> BatchResult:
        return self.store.write_batch(items, fence=self.fence)

    def tick(self, now: datetime) -> int:
        return self.store.tick(now)


class ShardWorker(Worker):
    """A ``Worker`` over one shard's streams: adopts the predecessor's pending entries first,
    and dead-letters an entry whose symbol belongs to another shard (a publisher computing the
    shard differently would otherwise let two workers apply one symbol)."""

    def __init__(
        self,
        settings: Settings,
        store: FencedStore,
        stream: LeasedStream,
        observer: Observer | None,
        *,
        shard: int,
    ) -> None:
        super().__init__(
            settings, store, stream, observer, log=worker_logger(settings, shard=shard)
        )
        self.shard = shard
        self.shards = shards.lease_count(settings)
        self._leased = stream

    def run(self, *, until_idle: bool = False) -> int:
        adopted = self.outages.retry("redis", self._leased.adopt_pending)
        if adopted:
            self.log.warning("shard_pending_adopted", entries=adopted)
        return super().run(until_idle=until_idle)

    def _parse(self, entry: RawEntry) -> events.Event:
        event = super()._parse(entry)
        symbol = getattr(event, "symbol", None)
        if symbol:
            home = shards.shard_of(symbol, self.shards)
            if home != self.shard:
                raise events.InvalidEventError(
                    f"symbol {symbol} belongs to shard {home} of {self.shards}, not {self.shard}"
                    " (the publisher must use the shard function of docs/scaling.md)"
                )
        return event


@dataclass
class _Held:
    """A shard this process holds and the thread working on it."""

    fence: Fence
    lease: LocalLease
    worker: ShardWorker | None = None
    thread: threading.Thread | None = None
    outcome: str | None = None  # drained|stopped|grace_expired|lost|crashed (set by the thread)
    releasing: bool = False


class ShardRunner:
    """``paper-consumer run`` with ``PAPER_SHARDS`` > 0: see the module docstring."""

    def __init__(
        self, settings: Settings, *, archive: bool = False, observer: Observer | None = None
    ) -> None:
        self.settings = settings
        self.count = shards.lease_count(settings)
        self.archive = archive
        self.observer = observer if observer is not None else Observer()
        self.member = settings.consumer_name
        self.interval_s = heartbeat_interval_s(settings.lease_ttl_s)
        self.guard_s = read_guard_s(settings.lease_ttl_s)
        self.held: dict[int, _Held] = {}
        self.drained: set[int] = set()
        self.failed = False
        self.grace_expired = False
        self._burst = False
        self._stop = threading.Event()
        self._wake = threading.Event()  # a shard's thread ended (or stop): turn now
        self._outage = False
        self.log = get_logger(component="shards", consumer=self.member)
        self.leases = LeaseStore(
            settings.database_dsn(),
            group=settings.group,
            member=self.member,
            ttl_s=settings.lease_ttl_s,
        )

    # -- control --------------------------------------------------------------------------------

    def stop(self) -> None:
        """Finish the batches in hand, release the leases and return (signal-handler safe)."""
        self._stop.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def ping(self) -> None:
        self.leases.ping()

    # -- loop -----------------------------------------------------------------------------------

    def run(self, *, until_idle: bool = False) -> int:
        self._burst = until_idle
        if self.settings.redis_cluster:
            parts = [shards.shard_settings(self.settings, k) for k in range(self.count)]
            check_cluster_layout([[*part.streams(), part.dlq_stream] for part in parts])
        self.leases.open()
        self.log.info(
            "shard_runner_started",
            shards=self.settings.shards,
            group=self.settings.group,
            lease_ttl_s=self.settings.lease_ttl_s,
        )
        try:
            self._retry(self.leases.heartbeat)
            if self.count > 1:
                self._stop.wait(self.interval_s)  # let members started together see each other
            while not self.stopping and not self.failed:
                self.observer.heartbeat()
                if self._turn(until_idle=until_idle):
                    break
                self._wake.wait(self.interval_s)
                self._wake.clear()
        finally:
            self._shutdown()
            self.leases.close()
        self.log.info("shard_runner_stopped", drained=sorted(self.drained), failed=self.failed)
        if self.failed:
            return EXIT_SHARD_FAILED
        return EXIT_GRACE_EXPIRED if self.grace_expired else EXIT_OK

    def _turn(self, *, until_idle: bool) -> bool:
        """Heartbeat, renew, reap, rebalance; return True when ``until_idle`` is satisfied."""
        sent = time.monotonic()
        members = self._retry(self.leases.heartbeat)
        if members is None:
            return False
        self._renew(sent)
        self._reap()
        if self.stopping or self.failed:
            return False
        views = [
            shards.LeaseView(row["shard"], row["owner"], bool(row["live"]))
            for row in (self._retry(self.leases.leases) or [])
        ]
        working = [k for k, h in self.held.items() if not h.releasing]
        acquire, release = shards.plan_balance(self.count, members, self.member, views, working)
        for shard in release:
            self._give_up(shard)
        for shard in acquire:
            if until_idle and shard in self.drained:
                continue
            self._take(shard)
        return until_idle and self._all_done()

    def _renew(self, sent: float) -> None:
        held = list(self.held.values())
        kept = self._retry(lambda: self.leases.renew([h.fence for h in held]))
        if kept is None:
            return  # PostgreSQL unreachable: the local leases run out by themselves
        for h in held:
            if h.fence.shard in kept:
                h.lease.valid_until = sent + self.settings.lease_ttl_s - self.guard_s
            elif h.outcome is None:
                self.log.warning("shard_lease_lost", shard=h.fence.shard, epoch=h.fence.epoch)
                h.lease.revoke()
                if h.worker is not None:
                    h.worker.stop()

    def _reap(self) -> None:
        """Forget shards whose thread has ended; release the leases that are still ours."""
        for shard, h in list(self.held.items()):
            if h.thread is not None and h.thread.is_alive():
                if h.outcome is None:
                    continue
                h.thread.join(timeout=self.interval_s / 2)  # it is closing its connections
                if h.thread.is_alive():
                    continue
            del self.held[shard]
            if h.outcome == "crashed":
                self.failed = True
            if h.outcome == "grace_expired":
                self.grace_expired = True
            if h.outcome == "drained":
                self.drained.add(shard)
            if h.outcome != "lost":
                self._retry(functools.partial(self.leases.release, h.fence))
            self.log.info("shard_released", shard=shard, outcome=h.outcome)

    def _give_up(self, shard: int) -> None:
        h = self.held[shard]
        h.releasing = True
        self.log.info("shard_surplus", shard=shard)
        if h.worker is not None:
            h.worker.stop()

    def _take(self, shard: int) -> None:
        sent = time.monotonic()
        fence = self._retry(lambda: self.leases.acquire(shard))
        if fence is None:
            return  # someone else was quicker
        h = _Held(fence, LocalLease(sent + self.settings.lease_ttl_s - self.guard_s))
        self.held[shard] = h
        h.thread = threading.Thread(
            target=self._work, args=(h,), name=f"shard-{shard}", daemon=True
        )
        self.log.info("shard_acquired", shard=shard, epoch=fence.epoch)
        h.thread.start()

    def _all_done(self) -> bool:
        """Burst mode: nothing of ours runs, and every shard we did not drain ourselves has
        nothing left in Redis (a shard held by another worker counts only once that worker
        has drained it: if it dies meanwhile, its lease expires and we take the shard)."""
        if self.held:
            return False
        rest = [k for k in range(self.count) if k not in self.drained]
        return all(self._shard_empty(k) for k in rest)

    def _shard_empty(self, shard: int) -> bool:
        stream = RedisStream.from_settings(shards.shard_settings(self.settings, shard))
        try:
            states = stream.group_state()
        except RedisUnavailableError:
            return False
        finally:
            stream.close()
        return all(
            s["length"] == 0 or (s["group"] and s["lag"] == 0 and s["pending"] == 0) for s in states
        )

    # -- one shard's thread ---------------------------------------------------------------------

    def _work(self, h: _Held) -> None:
        shard = h.fence.shard
        settings = shards.shard_settings(self.settings, shard)
        store = PostgresStore(
            settings.database_dsn(),
            group=settings.group,
            archive=self.archive,
            start_balance=settings.start_balance_usdt,
        )
        store.open()
        stream = LeasedStream.for_shard(settings, shard, h.lease)
        try:
            h.worker = ShardWorker(
                settings, FencedStore(store, h.fence), stream, self.observer, shard=shard
            )
            if self.stopping or h.releasing:
                h.outcome = "stopped"
                return
            code = h.worker.run(until_idle=self._burst)
            if code == EXIT_GRACE_EXPIRED:
                h.outcome = "grace_expired"
            else:
                h.outcome = "stopped" if h.worker.stopping else "drained"
        except LeaseLostError as exc:
            h.outcome = "lost"
            self.log.warning("shard_lease_lost", shard=shard, reason=str(exc))
        except Exception:
            h.outcome = "crashed"
            self.log.exception("shard_worker_crashed", shard=shard)
        finally:
            stream.close()
            store.close()
            self._wake.set()

    # -- shutdown and retries -------------------------------------------------------------------

    def _shutdown(self) -> None:
        """Stop every shard's worker, keep the leases alive while they finish their batch (up
        to the grace period), then release them and leave the membership."""
        for h in self.held.values():
            if h.worker is not None:
                h.worker.stop()
        deadline = time.monotonic() + self.settings.shutdown_grace_s + 1
        while self.held and time.monotonic() < deadline:
            sent = time.monotonic()
            self._renew(sent)
            for h in list(self.held.values()):
                if h.thread is not None:
                    h.thread.join(timeout=min(self.interval_s, 0.2))
            self._reap()
        try:
            self.leases.leave()
        except DatabaseUnavailableError as exc:
            self.log.warning("shard_membership_not_left", error=str(exc))

    def _retry(self, call: Callable[[], T]) -> T | None:
        """``call`` with capped backoff while PostgreSQL is unreachable; None once stopping."""
        delay_ms = float(self.settings.retry_initial_ms)
        while True:
            try:
                value = call()
            except DatabaseUnavailableError as exc:
                if not self._outage:
                    self._outage = True
                    self.log.error("postgres_unavailable", error=str(exc), component="shards")
                if self.stopping:
                    return None
                self._stop.wait(random.uniform(0, delay_ms) / 1000)  # noqa: S311 - jitter
                delay_ms = min(delay_ms * 2, float(self.settings.retry_max_ms))
                continue
            if self._outage:
                self._outage = False
                self.log.warning("postgres_available", component="shards")
            return value
