"""Redis Streams: the only module that imports redis.

``RedisStream`` owns the consumer-group protocol for the worker: create the group (MKSTREAM),
read new entries (``>``) or re-read this consumer's own pending entries (``0``) with XREADGROUP,
take over entries other consumers left pending (XPENDING IDLE + XCLAIM after an idle time),
look up delivery counts, acknowledge after commit, and dead-letter atomically (XADD to the
dead-letter stream and XACK in one MULTI/EXEC, so a crash never leaves an entry both
dead-lettered and pending), and record the attempts at suspect entries (``trials.py``: a hash
``<dead-letter stream>:trials:<group>``).

Entries trimmed away (MAXLEN) while pending come back with no fields — Redis 7 answers an empty
hash, Redis 6.2 nil, XCLAIM drops them (Redis 7): all become ``RawEntry`` with empty
``fields`` (a real entry always has one at least), which the worker dead-letters as trimmed.

Connection problems leave this module as ``RedisUnavailableError``; everything else that Redis
refuses is a bug or a misconfiguration and propagates.

Redis Cluster (``PAPER_REDIS_CLUSTER``): every client built here is then a ``RedisCluster``
(the URL is a startup node; redis-py discovers the others and follows MOVED/ASK). A command
over several keys must stay in one hash slot: the worker's XREADGROUP over its streams and
its MULTI (XADD to the dead-letter stream + XACK). ``check_cluster_layout`` refuses, before
anything is read, a layout where a worker's streams and dead-letter stream span slots — the
unsharded default names do; sharded keys (``<name>.{k}``) or one hash tag do not.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Self, TypeAlias

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from consumer.errors import ConfigError, RedisUnavailableError
from consumer.records import (
    EntryKey,
    RawEntry,
    StreamPosition,
    decode_fields,
    parse_entry_id,
    restore_bytes,
)
from consumer.settings import Settings, redact_url

DEAD_LETTER_META = ("source_stream", "source_id", "error", "deliveries")
"""Fields the worker adds to a dead-letter entry; original fields that collide get ``orig.``."""

ERROR_FIELD_MAX = 2000

TRIALS_TTL_S = 7 * 24 * 3600
"""The trials hash outlives its last write by a week: a field a crash left behind expires."""

Client: TypeAlias = "redis.Redis | RedisCluster"
"""A single-node client or a cluster client: the commands used here exist on both."""


@dataclass(frozen=True)
class Claimed:
    """What ``claim_stale`` did: ``taken`` entries of other consumers are now in our pending
    list; ``gone`` were trimmed from the stream while pending (no fields left, no longer
    pending anywhere) and are only worth a dead letter."""

    taken: int
    gone: list[RawEntry]


RedisError = redis.RedisError
"""What redis-py raises (for callers that must not import redis themselves)."""


def make_client(url: str, *, cluster: bool = False, **options: Any) -> Client:
    """A client for ``url``: ``RedisCluster`` (``url`` is a startup node; its database must be
    0) when ``cluster``, else ``redis.Redis``. ``options`` go to ``from_url``.

    A single-node client connects on first use; a cluster client at once (it reads the slot
    map): no node reachable is ``RedisUnavailableError``, a server that is no cluster or a
    database other than 0 is ``ConfigError``."""
    if not cluster:
        return redis.Redis.from_url(url, **options)
    try:
        return RedisCluster.from_url(url, **options)
    except RedisClusterException as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "cannot be connected" in detail and "not enabled" not in detail:
            raise RedisUnavailableError(
                f"Redis Cluster at {redact_url(url)} is unreachable: {detail}"
            ) from exc
        raise ConfigError(
            f"PAPER_REDIS_CLUSTER is set but {redact_url(url)} cannot serve as a Redis Cluster "
            f"node: {detail}"
        ) from exc


def slot_of(key: str) -> int:
    """The Redis Cluster hash slot of ``key`` (its ``{hash tag}`` when it has one)."""
    return int(key_slot(key.encode("utf-8")))


def check_cluster_layout(groups: Sequence[Sequence[str]]) -> None:
    """Refuse (``ConfigError``) when the keys one worker uses together — its streams and its
    dead-letter stream, one group per shard — do not all hash to one cluster slot."""
    for keys in groups:
        slots = {key: slot_of(key) for key in keys}
        if len(set(slots.values())) > 1:
            where = ", ".join(f"{key} (slot {slot})" for key, slot in slots.items())
            raise ConfigError(
                "Redis Cluster (PAPER_REDIS_CLUSTER): a worker's streams and dead-letter stream "
                f"must share one hash slot, but {where} do not; set PAPER_SHARDS>=1 (keys "
                "<name>.{k}) or give every stream name one hash tag, e.g. {paper}.orders"
            )


@contextmanager
def _translated(url: str) -> Iterator[None]:
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RedisUnavailableError(f"Redis at {redact_url(url)} is unreachable: {detail}") from exc


def _text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _reply_map(reply: Any) -> dict[str, Any]:
    """An XINFO reply as a dict with text keys: redis-py parses it into one, except in a Redis
    Cluster MULTI, which hands the flat list of pairs over as it came."""
    if isinstance(reply, dict):
        return {_text(k): v for k, v in reply.items()}
    return {_text(k): v for k, v in zip(reply[::2], reply[1::2], strict=True)}


def _entries(stream: str, raw: Sequence[Any], deliveries: int = 1) -> list[RawEntry]:
    """Entries as text. An entry with a field that is not UTF-8 is kept, with its bytes as lone
    surrogates and ``not_utf8`` saying which (``records.decode_fields``): never decoded
    lossily, never dropped here; the worker dead-letters it with that reason."""
    out = []
    for entry_id, fields in raw:
        key = EntryKey(stream, _text(entry_id))
        try:  # the common case, in C: every field strictly UTF-8
            text = {k.decode(): v.decode() for k, v in (fields or {}).items()}
        except (UnicodeDecodeError, AttributeError):
            text, not_utf8 = decode_fields(fields or {})
            out.append(RawEntry(key, text, deliveries, not_utf8))
            continue
        out.append(RawEntry(key, text, deliveries))
    return out


class RedisStream:
    """The worker's view of its streams within one consumer group."""

    def __init__(
        self,
        url: str,
        *,
        streams: Sequence[str],
        group: str,
        consumer: str,
        dlq_stream: str,
        start_id: str = "0",
        socket_timeout_s: float = 10.0,
        client: Client | None = None,
        cluster: bool = False,
    ) -> None:
        self._url = url
        self.streams = list(streams)
        self.group = group
        self.consumer = consumer
        self.dlq_stream = dlq_stream
        self._start_id = start_id
        self._socket_timeout_s = socket_timeout_s
        self.cluster = cluster
        self._conn: Client | None = client  # connected on first use (``_client``)
        self._created: list[StreamPosition] = []

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> Self:
        """The worker's streams, group, consumer name and Redis (cluster or not) as configured;
        ``overrides`` replace any of them (``streams=``, ``consumer=``) or add the other
        arguments (``client=``)."""
        options: dict[str, Any] = {
            "streams": settings.streams(),
            "group": settings.group,
            "consumer": settings.consumer_name,
            "dlq_stream": settings.dlq_stream,
            "start_id": settings.group_start_id,
            "cluster": settings.redis_cluster,
        }
        options.update(overrides)
        return cls(settings.redis_dsn(), **options)

    def _guard(self, block_ms: int | None = None) -> int | None:
        """Runs before every command that reads, claims or acknowledges; returns how long a
        read may block. A subclass refuses here (``leases.LeasedStream``: without a lease)."""
        return block_ms

    def _connect(self) -> Client:
        return make_client(
            self._url,
            cluster=self.cluster,
            socket_timeout=self._socket_timeout_s,
            socket_connect_timeout=5,
            health_check_interval=30,
            # No transparent re-send: a re-sent XREADGROUP '>' would skip the entries that a
            # lost reply delivered; the worker backs off and re-reads its own pending instead.
            retry=Retry(NoBackoff(), 0),
        )

    @property
    def _client(self) -> Client:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    @property
    def client(self) -> Client:
        return self._client

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def ensure_groups(self) -> None:
        """Create the consumer group on every stream (and the stream) when missing. On a
        cluster, first refuse streams that one XREADGROUP/MULTI could not address together.
        Each group created is noted with the stream's position just after (``groups_created``):
        a group that was there before and is gone is a sign of lost data (``losses.py``)."""
        if self.cluster:
            check_cluster_layout([[*self.streams, self.dlq_stream]])
        with _translated(self._url):
            for stream in self.streams:
                try:
                    self._client.xgroup_create(stream, self.group, id=self._start_id, mkstream=True)
                except ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
                else:
                    self._created.append(self._position(stream))

    def groups_created(self) -> list[StreamPosition]:
        """The positions noted by ``ensure_groups`` since the last call (then forgotten)."""
        created, self._created = self._created, []
        return created

    def eviction_policy(self) -> str | None:
        """Redis's ``maxmemory-policy``, or None when it cannot be read (CONFIG is commonly
        forbidden by an ACL or renamed on managed servers)."""
        with _translated(self._url):
            try:
                reply = self._client.config_get("maxmemory-policy")
            except ResponseError:  # NOPERM, unknown command
                return None
        pairs = reply.items() if isinstance(reply, dict) else ()
        for name, value in pairs:
            if _text(name).lower() == "maxmemory-policy" and value is not None:
                return _text(value).strip().lower()
        return None

    def read(
        self,
        *,
        count: int,
        block_ms: int | None,
        pending: bool,
        after: Mapping[str, str] | None = None,
        streams: Sequence[str] | None = None,
        new: Collection[str] = (),
    ) -> list[RawEntry]:
        """XREADGROUP from ``streams`` (default: all): new entries, or (``pending``) our own
        unacked ones with ids above ``after[stream]`` (default ``0``: from the start of our
        pending list) — except the streams in ``new``, read for new entries in the same command.
        ``count`` applies to each stream."""
        block_ms = self._guard(block_ms)
        names = list(streams) if streams is not None else self.streams
        history = [name for name in names if pending and name not in new]
        starts = dict.fromkeys(names, ">")
        starts.update({name: (after or {}).get(name, "0") for name in history})
        with _translated(self._url):
            try:
                reply: Any = self._client.xreadgroup(
                    self.group,
                    self.consumer,
                    starts,  # type: ignore[arg-type]
                    count=count,
                    block=None if history else block_ms,
                )
            except ResponseError as exc:
                # NOGROUP, or (a read blocked on it) UNBLOCKED "the stream key no longer exists"
                if "NOGROUP" not in str(exc) and "UNBLOCKED" not in str(exc):
                    raise
                # The stream or the group was deleted under us: recreate and read again later.
                self.ensure_groups()
                return []
        entries: list[RawEntry] = []
        redelivered: list[RawEntry] = []
        for stream, raw in reply or []:
            name = _text(stream)
            if name in history:
                redelivered.extend(_entries(name, raw, 2))
            else:
                entries.extend(_entries(name, raw, 1))
        if redelivered:
            entries.extend(self._with_delivery_counts(redelivered))
        return entries

    def _with_delivery_counts(self, entries: list[RawEntry]) -> list[RawEntry]:
        counts: dict[EntryKey, int] = {}
        by_stream: dict[str, list[RawEntry]] = {}
        for entry in entries:
            by_stream.setdefault(entry.key.stream, []).append(entry)
        for stream, group_entries in by_stream.items():
            ids = sorted((e.key for e in group_entries), key=lambda k: k.sort_key)
            rows = self._client.xpending_range(
                stream,
                self.group,
                min=ids[0].entry_id,
                max=ids[-1].entry_id,
                count=len(ids) + 100,
                consumername=self.consumer,
            )
            for row in rows:
                counts[EntryKey(stream, _text(row["message_id"]))] = int(row["times_delivered"])
        return [
            RawEntry(e.key, e.fields, counts.get(e.key, e.deliveries), e.not_utf8) for e in entries
        ]

    def claim_stale(self, *, min_idle_ms: int, count: int) -> Claimed:
        """Make ours up to ``count`` entries per stream that *other* consumers left pending
        longer than ``min_idle_ms`` (XPENDING IDLE, then XCLAIM JUSTID, which re-checks the
        idle time atomically and leaves delivery counts alone). Our own pending entries are
        never claimed: the worker holds them or re-reads them in stream order, and a claim
        handing them over apart from the rest would apply them out of order. The claimed
        entries are not returned: they are now in our pending list, to be read from there in
        order. Entries trimmed from the stream while pending are returned apart (``gone``)."""
        self._guard()
        taken, gone = 0, []
        with _translated(self._url):
            for stream in self.streams:
                theirs = self._idle_of_others(stream, min_idle_ms, count)
                if not theirs:
                    continue
                reply: Any = self._client.xclaim(
                    stream, self.group, self.consumer, min_idle_ms, [*theirs], justid=True
                )
                claimed = {_text(entry_id) for entry_id in reply or []}
                taken += len(claimed)
                # Not claimed: either someone else took it meanwhile, or it was trimmed from
                # the stream and Redis (>= 7) dropped it from the pending list on XCLAIM.
                for entry_id in theirs:
                    if entry_id not in claimed and not self._client.xrange(
                        stream, min=entry_id, max=entry_id
                    ):
                        gone.append(RawEntry(EntryKey(stream, entry_id), {}, 2))
        return Claimed(taken, gone)

    def _idle_of_others(self, stream: str, min_idle_ms: int, count: int) -> list[str]:
        """Up to ``count`` ids, oldest first, that other consumers hold pending on ``stream``
        and have left idle at least ``min_idle_ms``."""
        theirs: list[str] = []
        lower = "-"
        while len(theirs) < count:
            try:
                rows: Any = self._client.xpending_range(
                    stream, self.group, min=lower, max="+", count=count, idle=min_idle_ms
                )
            except ResponseError as exc:
                if "NOGROUP" in str(exc):
                    return []
                raise
            theirs += [
                _text(row["message_id"]) for row in rows if _text(row["consumer"]) != self.consumer
            ]
            if len(rows) < count:
                break
            lower = "(" + _text(rows[-1]["message_id"])
        return theirs[:count]

    def adopt_pending(self, page: int = 1000) -> int:
        """Make every entry that other consumers hold pending on our streams ours (XPENDING,
        then XCLAIM JUSTID with no idle time; JUSTID leaves delivery counts alone). A new shard
        owner does this before it reads anything, then re-reads them in order as its own.
        Returns how many entries were adopted."""
        self._guard()
        adopted = 0
        with _translated(self._url):
            for stream in self.streams:
                lower = "-"
                while True:
                    try:
                        rows: Any = self._client.xpending_range(
                            stream, self.group, min=lower, max="+", count=page
                        )
                    except ResponseError as exc:
                        if "NOGROUP" in str(exc):
                            break
                        raise
                    theirs: list[Any] = [
                        _text(row["message_id"])
                        for row in rows
                        if _text(row["consumer"]) != self.consumer
                    ]
                    if theirs:
                        self._client.xclaim(
                            stream, self.group, self.consumer, 0, theirs, justid=True
                        )
                        adopted += len(theirs)
                    if len(rows) < page:
                        break
                    lower = "(" + _text(rows[-1]["message_id"])
        return adopted

    def ack(self, keys: Sequence[EntryKey]) -> None:
        """XACK ``keys`` (after their effects are committed)."""
        self._guard()
        if not keys:
            return
        by_stream: dict[str, list[str]] = {}
        for key in keys:
            by_stream.setdefault(key.stream, []).append(key.entry_id)
        with _translated(self._url):
            pipe = self._client.pipeline(transaction=False)
            for stream, ids in by_stream.items():
                pipe.xack(stream, self.group, *ids)
            pipe.execute()

    def dead_letter_and_ack(
        self, dead: Sequence[tuple[RawEntry, str]], ack: Sequence[EntryKey]
    ) -> None:
        """Atomically copy ``dead`` entries to the dead-letter stream and XACK them and ``ack``."""
        self._guard()
        if not dead:
            self.ack(ack)
            return
        with _translated(self._url):
            pipe = self._client.pipeline(transaction=True)
            for entry, reason in dead:
                fields: dict[Any, Any] = dead_letter_fields(entry, reason)
                pipe.xadd(self.dlq_stream, fields)
            by_stream: dict[str, list[str]] = {}
            for key in [*(e.key for e, _ in dead), *ack]:
                by_stream.setdefault(key.stream, []).append(key.entry_id)
            for stream, ids in by_stream.items():
                pipe.xack(stream, self.group, *ids)
            pipe.execute()

    # -- trials: the evidence that an entry stops the worker (see ``trials.py``) ---------------

    @property
    def trials_key(self) -> str:
        """The hash of this group's unfinished trials: ``<stream>/<id>`` → attempts begun."""
        return f"{self.dlq_stream}:trials:{self.group}"

    def unfinished_trials(self, keys: Sequence[EntryKey]) -> dict[EntryKey, int]:
        """How many attempts at each of ``keys`` began and never finished (0: none)."""
        self._guard()
        if not keys:
            return {}
        with _translated(self._url):
            values = self._client.hmget(self.trials_key, [_trial_field(k) for k in keys])
        return {key: int(value or 0) for key, value in zip(keys, values, strict=True)}

    def begin_trial(self, attempts: Mapping[EntryKey, int]) -> None:
        """Record that an attempt at each key begins, as its count of unfinished attempts
        (HSET, not HINCRBY: a retry after a lost reply records it once). The hash expires
        ``TRIALS_TTL_S`` after the last write, so a field a crash left behind goes too."""
        self._guard()
        if not attempts:
            return
        with _translated(self._url):
            pipe = self._client.pipeline(transaction=True)
            pipe.hset(self.trials_key, mapping={_trial_field(k): n for k, n in attempts.items()})
            pipe.expire(self.trials_key, TRIALS_TTL_S)
            pipe.execute()

    def end_trial(self, keys: Sequence[EntryKey]) -> None:
        """The attempt at ``keys`` finished (committed or dead-lettered): forget it."""
        self._guard()
        if not keys:
            return
        with _translated(self._url):
            self._client.hdel(self.trials_key, *[_trial_field(k) for k in keys])

    def pending_owners(self) -> dict[str, int]:
        """Consumers holding unacknowledged entries of this group, over all streams."""
        owners: dict[str, int] = {}
        with _translated(self._url):
            pipe = self._client.pipeline(transaction=False)
            for stream in self.streams:
                pipe.xpending(stream, self.group)
            replies = pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, ResponseError):
                if "NOGROUP" not in str(reply):
                    raise reply
                continue
            for row in reply.get("consumers") or []:
                name = _text(row["name"])
                owners[name] = owners.get(name, 0) + int(row["pending"])
        return owners

    def pending_count(self) -> int:
        """Entries delivered to this group and not yet acknowledged, over all streams."""
        total = 0
        with _translated(self._url):
            for stream in self.streams:
                try:
                    total += int(self._client.xpending(stream, self.group)["pending"])
                except ResponseError as exc:
                    if "NOGROUP" not in str(exc):
                        raise
        return total

    def lag(self) -> int | None:
        """Entries not yet delivered to the group (Redis >= 7 ``XINFO GROUPS`` lag); else None."""
        total = 0
        with _translated(self._url):
            for stream in self.streams:
                try:
                    groups = self._client.xinfo_groups(stream)
                except ResponseError:
                    continue
                for group in groups:
                    if _text(group.get("name")) == self.group:
                        value = group.get("lag")
                        if value is None:
                            return None
                        total += int(value)
        return total

    def ping(self) -> None:
        with _translated(self._url):
            self._client.ping()

    # -- read-only inspection (``status`` and the metrics refresher; never creates anything) --

    def group_state(self) -> list[dict[str, Any]]:
        """Per stream: ``stream``, ``length``, ``last_id``, ``group`` (whether our group
        exists), ``lag``, ``pending``, ``last_delivered_id`` and ``consumers`` (``name``,
        ``pending``, ``idle_ms``), from XINFO STREAM/GROUPS/CONSUMERS.

        ``lag`` is 0 when the group has been delivered the stream's last entry (or the stream
        is empty), the stream's length when it starts after the last entry delivered, else
        XINFO GROUPS' own (Redis >= 7) or, where Redis cannot give it (Redis < 7, or 7 after
        deletions it cannot count past), None (unknown, never guessed). Redis's own lag keeps
        counting entries trimmed before the group read them, for good (``losses.py``).
        """
        states: list[dict[str, Any]] = []
        with _translated(self._url):
            for stream in self.streams:
                state: dict[str, Any] = {
                    "stream": stream, "length": 0, "last_id": None, "group": False,
                    "lag": None, "pending": 0, "last_delivered_id": None, "consumers": [],
                }  # fmt: skip
                states.append(state)
                try:
                    info: Any = self._client.xinfo_stream(stream)
                    groups: Any = self._client.xinfo_groups(stream)
                except ResponseError:  # no such stream yet
                    continue
                state["length"] = int(info["length"])
                state["last_id"] = _text(info["last-generated-id"])
                mine = [g for g in groups if _text(g.get("name")) == self.group]
                if not mine:
                    continue
                group = mine[0]
                state["group"] = True
                state["pending"] = int(group["pending"])
                delivered = state["last_delivered_id"] = _text(group["last-delivered-id"])
                first = info.get("first-entry")
                lag = group.get("lag")
                if delivered == state["last_id"] or state["length"] == 0:
                    state["lag"] = 0
                elif first and parse_entry_id(_text(first[0])) > parse_entry_id(delivered):
                    state["lag"] = state["length"]
                elif lag is not None:
                    state["lag"] = int(lag)
                consumers: Any = self._client.xinfo_consumers(stream, self.group)
                state["consumers"] = [
                    {"name": _text(c["name"]), "pending": int(c["pending"]), "idle_ms": c["idle"]}
                    for c in consumers
                ]
        return states

    def positions(self) -> list[StreamPosition]:
        """Every stream's ``StreamPosition`` (two XINFO per stream in one MULTI, so the
        stream's counters and the group's agree; read-only, never creates anything)."""
        with _translated(self._url):
            return [self._position(stream) for stream in self.streams]

    def _position(self, stream: str) -> StreamPosition:
        pipe = self._client.pipeline(transaction=True)
        pipe.xinfo_stream(stream)
        pipe.xinfo_groups(stream)
        raw_info, groups = pipe.execute(raise_on_error=False)
        if isinstance(raw_info, ResponseError):  # no such stream
            return StreamPosition(stream)
        if isinstance(groups, ResponseError):
            raise groups
        info = _reply_map(raw_info)
        first, added = info.get("first-entry"), info.get("entries-added")
        where: dict[str, Any] = {
            "length": int(info["length"]),
            "entries_added": None if added is None else int(added),
            "first_id": _text(first[0]) if first else None,
            "last_id": _text(info["last-generated-id"]),
            "max_deleted_id": _text(info.get("max-deleted-entry-id") or "0-0"),
        }
        for group in map(_reply_map, groups):
            if _text(group.get("name")) == self.group:
                read, lag = group.get("entries-read"), group.get("lag")
                return StreamPosition(
                    stream, True, **where, group=True,
                    last_delivered_id=_text(group["last-delivered-id"]),
                    entries_read=None if read is None else int(read),
                    lag=None if lag is None else int(lag),
                )  # fmt: skip
        return StreamPosition(stream, True, **where)

    def dead_letters(self, newest: int = 3) -> tuple[int, list[dict[str, str]]]:
        """The dead-letter stream's length and its ``newest`` entries (newest first), each
        with ``id``, ``source_stream``, ``source_id``, ``error`` and ``deliveries``."""
        with _translated(self._url):
            length = int(self._client.xlen(self.dlq_stream))
            raw: Any = self._client.xrevrange(self.dlq_stream, count=newest) if newest else []
        letters = []
        for entry_id, fields in raw:
            values = {_text(k): _text(v) for k, v in fields.items()}
            letters.append(
                {"id": _text(entry_id), **{k: values.get(k, "") for k in DEAD_LETTER_META}}
            )
        return length, letters


def _trial_field(key: EntryKey) -> str:
    return f"{key.stream}/{key.entry_id}"


def dead_letter_fields(entry: RawEntry, reason: str) -> dict[str | bytes, str | bytes]:
    """The dead-letter entry: where it came from, why, and every original field (an entry that
    was not UTF-8 with its original bytes: ``reason`` shows them escaped)."""
    fields: dict[str | bytes, str | bytes] = {
        "source_stream": entry.key.stream,
        "source_id": entry.key.entry_id,
        "error": reason[:ERROR_FIELD_MAX],
        "deliveries": str(entry.deliveries),
    }
    for name, value in entry.fields.items():
        key = f"orig.{name}" if name in DEAD_LETTER_META else name
        if entry.not_utf8 is None:
            fields[key] = value
        else:  # redis-py encodes str strictly: give it the bytes the entry was read from
            fields[restore_bytes(key)] = restore_bytes(value)
    return fields


# --------------------------------------------------------------------------------------------
# Ranges without a consumer group (replay and export)
# --------------------------------------------------------------------------------------------

RANGE_PAGE_SIZE = 10_000
"""Entries per XRANGE call: memory stays constant whatever the length of the range."""


def connect(url: str, *, cluster: bool = False, socket_timeout_s: float = 30.0) -> Client:
    """A plain client for range reads and the publisher (no group)."""
    return make_client(
        url, cluster=cluster, socket_timeout=socket_timeout_s, socket_connect_timeout=5
    )


def read_range(
    client: Client,
    url: str,
    stream: str,
    *,
    start: str = "-",
    end: str = "+",
    page_size: int = RANGE_PAGE_SIZE,
) -> Iterator[RawEntry]:
    """Every entry of ``stream`` between ``start`` and ``end`` (inclusive), in id order.

    Pages of ``page_size`` with XRANGE; the next page starts just after the last id read (an
    exclusive ``(`` range, Redis >= 6.2). Never touches a consumer group, so a live worker is
    not disturbed. A missing stream yields nothing.
    """
    lower = start
    while True:
        with _translated(url):
            page: Any = client.xrange(stream, min=lower, max=end, count=page_size)
        entries = _entries(stream, page)
        yield from entries
        if len(page) < page_size:
            return
        lower = f"({entries[-1].key.entry_id}" if entries else f"({_text(page[-1][0])}"


def stream_length(client: Client, url: str, stream: str) -> int:
    with _translated(url):
        return int(client.xlen(stream))
