"""Data lost in Redis before the consumer group read it: detected, logged once, counted.

Redis drops stream entries without telling the reader: MAXLEN/XTRIM trims entries the group
has not read yet, XDEL deletes them, and FLUSHALL (or a restart without persistence) takes a
whole stream, which the worker then recreates with its group (MKSTREAM). ``LossWatch`` looks
for that at start and every ``PAPER_METRICS_REFRESH_S`` (XINFO STREAM and XINFO GROUPS in one
MULTI per stream: never per entry), logs one ``stream_data_lost`` error per gap and tells the
observer (``paper_consumer_stream_gaps_total`` and ``..._stream_entries_lost_total``);
``assess`` tells ``status`` the same from one look. How each kind shows (Redis >= 7):

- ``trimmed``: the group's entries-read never counts an entry trimmed before it was read, so
  its lag (entries-added − entries-read) keeps counting it for good. Where the number of
  unread entries still in the stream is known — the stream starts after the group's
  last-delivered-id (all of it is unread) or the group was delivered its last entry (none is) —
  lag minus that number is how many entries the group will never get (``never_read``). The
  count grows by each loss. ``LossWatch`` reports the growth it sees; the first count it makes
  is taken as older than the worker (not reported) unless the stream then starts after the
  group's last-delivered-id, i.e. the loss is there to see. So a loss that the worker read
  across before it could first count (it started on a backlog) is not reported; ``status``
  shows the group's whole count either way.
- ``deleted``: max-deleted-entry-id is above the group's last-delivered-id: an entry was XDEL'd
  before the group read it. Redis cannot count them (its lag is nil then): ``lost`` is None.
- ``stream_vanished``: PostgreSQL committed entries of the stream (``paper_consumer_offsets``),
  but the stream is gone, or its ids (last-generated-id) or entries-added went back below
  them: it was deleted and recreated (empty, or by a publisher's XADD). How many unread
  entries it held is unknown.
- ``group_vanished``: the group was gone while the stream stayed (the worker recreates it at
  ``PAPER_GROUP_START_ID``), and the stream now starts after the committed id: entries in
  between may be gone, how many is unknown. If it still holds the committed entry, nothing is
  lost (the group reads it all again, to no effect): ``consumer_group_recreated``, a warning.

A group recreated while the worker runs (after NOGROUP, or a read blocked on a stream that was
deleted) is judged against the worker's last look; one missing at start, against the committed
offsets, read from PostgreSQL then only, on a short connection of its own (``read_committed``).
Redis 6.2 has no entries-added, entries-read, lag nor max-deleted-entry-id: there only a
stream whose ids went back, or one that starts after the committed id, can be seen.

Losses to come are warned of at start (``check_eviction_policy``): under memory pressure an
``allkeys-*`` maxmemory-policy may evict a whole stream, entries not yet read included.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, NamedTuple

from consumer.db.reads import read_offsets
from consumer.errors import DatabaseUnavailableError, PaperConsumerError, RedisUnavailableError
from consumer.observer import Observer
from consumer.records import StreamPosition, parse_entry_id
from consumer.stream import RedisError, RedisStream

NOTHING = "0-0"
"""The id before every entry: a stream whose last id it is never held one."""

Cause = Literal["trimmed", "deleted", "stream_vanished", "group_vanished"]


class Committed(NamedTuple):
    """What PostgreSQL committed of one stream for the group (``paper_consumer_offsets``)."""

    last_entry_id: str
    entries: int


def read_committed(dsn: str, group: str, *, connect_timeout_s: float = 5.0) -> dict[str, Committed]:
    """The committed offsets of ``group``, by stream (``DatabaseUnavailableError`` when
    PostgreSQL cannot be asked)."""
    return committed_from_rows(read_offsets(dsn, group, connect_timeout_s=connect_timeout_s))


def committed_from_rows(rows: Sequence[Mapping[str, Any]]) -> dict[str, Committed]:
    """``Committed`` by stream from ``db.reads`` ``offsets`` rows."""
    return {
        row["stream_name"]: Committed(row["last_entry_id"], int(row["entries_committed"]))
        for row in rows
    }


@dataclass(frozen=True)
class Gap:
    """Entries of ``stream`` that the group will never read. ``lost``: how many (None: Redis
    cannot tell); the ids say where: after ``last_delivered_id`` (the group's) or
    ``committed_id`` (PostgreSQL's), before ``first_available_id`` (None: the stream is empty)."""

    stream: str
    group: str
    cause: Cause
    lost: int | None
    last_delivered_id: str | None
    committed_id: str | None
    first_available_id: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _after(a: str, b: str) -> bool:
    return parse_entry_id(a) > parse_entry_id(b)


def never_read(p: StreamPosition) -> int | None:
    """Entries the group will never be delivered (trimmed before it read them), over the
    group's life, where Redis's counters tell: see the module docstring. None: not now."""
    if not p.group or p.lag is None:
        return None
    if not _after(p.last_id, p.last_delivered_id):
        unread = 0  # delivered the stream's last entry
    elif p.first_id is None or _after(p.first_id, p.last_delivered_id):
        unread = p.length  # every entry left comes after the last one delivered
    else:
        return None
    return max(0, p.lag - unread)


def _nothing_left_after(p: StreamPosition, since: str) -> bool:
    """Whether what followed ``since`` in the stream may be gone: the stream now starts after
    it, or it is empty and had entries after it."""
    return _after(p.first_id if p.first_id is not None else p.last_id, since)


def _reset_gap(
    p: StreamPosition, group: str, committed: Committed | None, before: StreamPosition | None
) -> Gap | None:
    """The gap left by a stream or group that went away, or None when no data went with it.
    ``p`` is how the stream is now; what it held is told by ``before`` (the last look of the
    worker, with the group) or, without one, by what PostgreSQL ``committed``."""
    delivered = before.last_delivered_id if before is not None and before.group else None
    since = delivered if delivered is not None else (committed.last_entry_id if committed else None)
    counted = (before.entries_added or 0) if before else (committed.entries if committed else 0)
    newest = before.last_id if before else since
    if counted == 0 and (newest is None or newest == NOTHING):
        return None  # it never held an entry: a new stream
    vanished = (
        not p.exists
        or (p.entries_added is not None and p.entries_added < counted)  # Redis >= 7 counts
        or (newest is not None and _after(newest, p.last_id))  # its ids went back
    )
    if not vanished and (since is None or not _nothing_left_after(p, since)):
        return None
    return Gap(
        p.stream,
        group,
        "stream_vanished" if vanished else "group_vanished",
        None,
        delivered,
        committed.last_entry_id if committed else None,
        p.first_id,
    )


def assess(p: StreamPosition, group: str, committed: Committed | None) -> Gap | None:
    """What one look shows of data lost on ``p`` (for ``status``: no memory of earlier looks;
    a ``trimmed`` count is the group's whole)."""
    behind = committed is not None and _after(committed.last_entry_id, p.last_delivered_id)
    if committed is not None and (not p.group or behind):
        # No group, or one behind what was committed: the stream or the group went away.
        return _reset_gap(p, group, committed, None)
    if not p.group:
        return None
    if _after(p.max_deleted_id, p.last_delivered_id):
        return _gap(p, group, "deleted", None, committed)
    lost = never_read(p)
    return _gap(p, group, "trimmed", lost, committed) if lost else None


def _gap(
    p: StreamPosition, group: str, cause: Cause, lost: int | None, committed: Committed | None
) -> Gap:
    return Gap(
        p.stream,
        group,
        cause,
        lost,
        p.last_delivered_id,
        committed.last_entry_id if committed else None,
        p.first_id,
    )


def check_eviction_policy(stream: RedisStream, log: Any) -> None:
    """Warn when Redis may evict the streams: under memory pressure an ``allkeys-*`` policy
    evicts any key, a whole stream (entries never read) included. ``volatile-*`` policies
    evict only keys with a TTL, and streams have none; ``noeviction`` refuses writes."""
    try:
        policy = stream.eviction_policy()
    except RedisUnavailableError as exc:
        policy, reason = None, str(exc)
    else:
        reason = "CONFIG GET is not allowed for this Redis user (ACL)"
    if policy is None:
        log.warning("redis_eviction_policy_unchecked", reason=reason)
    elif policy.startswith("allkeys-"):
        log.warning(
            "redis_eviction_policy_can_evict_streams",
            policy=policy,
            detail=(
                f"maxmemory-policy {policy} may evict any key under memory pressure, the "
                "streams included (entries not yet read would be lost); volatile-* policies "
                "only evict keys with a TTL (streams have none): set noeviction"
            ),
        )


class LossWatch:
    """The worker's watch over its streams (see the module docstring); ``check`` at start,
    ``check_if_due`` every loop turn. Runs on the worker's thread; never raises."""

    def __init__(
        self,
        stream: RedisStream,
        *,
        committed: Callable[[], Mapping[str, Committed]],
        period_s: float,
        observer: Observer,
        log: Any,
    ) -> None:
        self.stream = stream
        self.committed = committed
        self.period_s = period_s
        self.observer = observer
        self.log = log
        self._next = 0.0
        self._seen: dict[str, StreamPosition] = {}  # last look with the group there
        self._counted: dict[str, int] = {}  # never_read already accounted for
        self._deleted: dict[str, str] = {}  # max-deleted-entry-id already reported
        self._created: list[tuple[StreamPosition, StreamPosition | None]] = []
        self._failed = False

    def check_if_due(self) -> None:
        if time.monotonic() >= self._next:
            self.check()

    def check(self) -> None:
        """Look at every stream now; report what was lost since the last look."""
        self._next = time.monotonic() + self.period_s
        self._attempt(self._judge_created)
        self._attempt(self._look_all)

    def _attempt(self, call: Callable[[], None]) -> None:
        try:
            call()
        except (PaperConsumerError, RedisError) as exc:
            # An outage is the loop's to report (it retries and logs it); anything else (XINFO
            # refused by an ACL) is worth one warning. What was not judged waits for next time.
            if not self._failed and not isinstance(
                exc, (DatabaseUnavailableError, RedisUnavailableError)
            ):
                self.log.warning("stream_loss_check_failed", error=str(exc).splitlines()[0])
                self._failed = True

    def _look_all(self) -> None:
        for p in self.stream.positions():
            self._look(p)

    def _judge_created(self) -> None:
        """Judge the groups ``ensure_groups`` had to create (kept until PostgreSQL answers)."""
        self._created += [(p, self._seen.get(p.stream)) for p in self.stream.groups_created()]
        if not self._created:
            return
        # PostgreSQL only where the worker had not seen the group yet (at start, before anything
        # was read): later, what it commits from the recreated stream would be taken for the old.
        unseen = any(before is None for _, before in self._created)
        committed = self.committed() if unseen else {}
        created, self._created = self._created, []
        for now, before in created:
            self._counted.pop(now.stream, None)
            self._deleted.pop(now.stream, None)
            mine = committed.get(now.stream) if before is None else None
            gap = _reset_gap(now, self.stream.group, mine, before)
            if gap is not None:
                self._report(gap)
            elif mine is not None or before is not None:
                self.log.warning(
                    "consumer_group_recreated",
                    stream=now.stream,
                    group=self.stream.group,
                    committed_id=mine.last_entry_id if mine else None,
                    first_available_id=now.first_id,
                )

    def _look(self, p: StreamPosition) -> None:
        if not p.group:
            return  # gone: the next read recreates it (ensure_groups) and it is judged then
        self._seen[p.stream] = p
        deleted = _after(p.max_deleted_id, p.last_delivered_id)
        if deleted and self._deleted.get(p.stream) != p.max_deleted_id:
            self._deleted[p.stream] = p.max_deleted_id
            self._report(_gap(p, self.stream.group, "deleted", None, None))
        lost = never_read(p)
        if lost is None:
            return
        counted = self._counted.get(p.stream)
        self._counted[p.stream] = lost
        if counted is None:
            # First count: older than this worker unless the loss is there to see.
            counted = 0 if _after(p.last_id, p.last_delivered_id) else lost
        if lost > counted:
            self._report(_gap(p, self.stream.group, "trimmed", lost - counted, None))

    def _report(self, gap: Gap) -> None:
        self.log.error("stream_data_lost", **gap.as_dict())
        self.observer.stream_data_lost(gap.stream, gap.lost)
