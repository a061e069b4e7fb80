"""Shard leases and members (migration 006): who owns which shard, and the batch's fence.

A lease is taken, renewed and released on the worker's small pool; the fence is the first
statement of a sharded batch (``check_fence``): it holds the lease row FOR SHARE until COMMIT,
so neither a takeover nor a renewal can change it while the batch is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

from consumer.db.connection import Pooled, describe
from consumer.errors import (
    DatabaseUnavailableError,
    LeaseLostError,
)

# Take a shard that nobody holds (no row, released, or expired by PostgreSQL's clock). The epoch
# grows at every acquisition: it is the fencing token. A batch transaction of the previous owner
# holds the row FOR SHARE, so this waits for it to end, then re-checks the expiry.
ACQUIRE_LEASE = """
INSERT INTO paper_shard_leases AS l (group_name, shard, owner, epoch, acquired_at, heartbeat_at,
                                     expires_at)
VALUES (%(group)s, %(shard)s, %(owner)s, 1, clock_timestamp(), clock_timestamp(),
        clock_timestamp() + make_interval(secs => %(ttl_s)s))
ON CONFLICT (group_name, shard) DO UPDATE SET
    owner = EXCLUDED.owner, epoch = l.epoch + 1, acquired_at = clock_timestamp(),
    heartbeat_at = clock_timestamp(),
    expires_at = clock_timestamp() + make_interval(secs => %(ttl_s)s)
WHERE l.owner IS NULL OR l.expires_at <= clock_timestamp()
RETURNING epoch
"""


# Extend the leases still held (same owner and epoch, not expired); the rest were lost.
RENEW_LEASES = """
UPDATE paper_shard_leases AS l SET
    heartbeat_at = clock_timestamp(),
    expires_at = clock_timestamp() + make_interval(secs => %(ttl_s)s)
FROM unnest(%(shards)s::int[], %(epochs)s::bigint[]) AS h(shard, epoch)
WHERE l.group_name = %(group)s AND l.shard = h.shard AND l.epoch = h.epoch
  AND l.owner = %(owner)s AND l.expires_at > clock_timestamp()
RETURNING l.shard
"""


RELEASE_LEASE = """
UPDATE paper_shard_leases SET owner = NULL, expires_at = clock_timestamp()
WHERE group_name = %(group)s AND shard = %(shard)s AND owner = %(owner)s AND epoch = %(epoch)s
"""


# The fence: the first statement of a sharded batch. FOR SHARE keeps the row until COMMIT, so
# neither a takeover nor a renewal can change it while the batch is being written.
LOCK_LEASE_FOR_BATCH = """
SELECT expires_at > clock_timestamp() AS valid FROM paper_shard_leases
WHERE group_name = %(group)s AND shard = %(shard)s AND owner = %(owner)s AND epoch = %(epoch)s
FOR SHARE
"""


JOIN_MEMBERS = """
INSERT INTO paper_shard_members AS m (group_name, member, started_at, heartbeat_at, expires_at)
VALUES (%(group)s, %(member)s, clock_timestamp(), clock_timestamp(),
        clock_timestamp() + make_interval(secs => %(ttl_s)s))
ON CONFLICT (group_name, member) DO UPDATE SET
    heartbeat_at = EXCLUDED.heartbeat_at, expires_at = EXCLUDED.expires_at
"""


SELECT_LIVE_MEMBERS = """
SELECT member FROM paper_shard_members
WHERE group_name = %(group)s AND expires_at > clock_timestamp() ORDER BY member
"""


LEAVE_MEMBERS = """
DELETE FROM paper_shard_members WHERE group_name = %(group)s AND member = %(member)s
"""


SELECT_LEASES = """
SELECT shard, owner, epoch, acquired_at, heartbeat_at, expires_at,
       owner IS NOT NULL AND expires_at > clock_timestamp() AS live,
       extract(epoch FROM clock_timestamp() - heartbeat_at)::float8 AS heartbeat_age_s
FROM paper_shard_leases WHERE group_name = %(group)s ORDER BY shard
"""


@dataclass(frozen=True)
class Fence:
    """A lease as its holder knows it: a batch commits only while the row still says this."""

    group: str
    shard: int
    owner: str
    epoch: int

    def params(self) -> dict[str, Any]:
        return {"group": self.group, "shard": self.shard, "owner": self.owner, "epoch": self.epoch}


def check_fence(conn: psycopg.Connection[dict[str, Any]], fence: Fence) -> None:
    """Lock ``fence``'s lease row for the rest of the transaction, or raise ``LeaseLostError``."""
    row = conn.execute(LOCK_LEASE_FOR_BATCH, fence.params()).fetchone()
    if row is None or not row["valid"]:
        raise LeaseLostError(
            f"shard {fence.shard}: lease epoch {fence.epoch} of {fence.owner} is no longer held"
        )


class LeaseStore(Pooled):
    """Membership and leases of one worker process (its own small pool, opened explicitly).
    Every failure here is ``DatabaseUnavailableError``: the runner retries it or lets the
    local leases run out."""

    refused = DatabaseUnavailableError

    def __init__(
        self, dsn: str, *, group: str, member: str, ttl_s: float, connect_timeout_s: float = 5.0
    ) -> None:
        super().__init__(
            dsn, name="paper-consumer-leases", max_size=1, connect_timeout_s=connect_timeout_s
        )
        self.group = group
        self.member = member
        self.ttl_s = ttl_s

    def heartbeat(self) -> list[str]:
        """Say this member is alive (for ``ttl_s``); return the live members, in name order."""
        with self._transaction() as conn:
            conn.execute(
                JOIN_MEMBERS, {"group": self.group, "member": self.member, "ttl_s": self.ttl_s}
            )
            rows = conn.execute(SELECT_LIVE_MEMBERS, {"group": self.group}).fetchall()
        return [row["member"] for row in rows]

    def leave(self) -> None:
        with self._transaction() as conn:
            conn.execute(LEAVE_MEMBERS, {"group": self.group, "member": self.member})

    def leases(self) -> list[dict[str, Any]]:
        with self._transaction() as conn:
            return conn.execute(SELECT_LEASES, {"group": self.group}).fetchall()

    def acquire(self, shard: int) -> Fence | None:
        """Take ``shard`` if nobody holds it; the new fence, or None."""
        params = {"group": self.group, "shard": shard, "owner": self.member, "ttl_s": self.ttl_s}
        with self._transaction() as conn:
            row = conn.execute(ACQUIRE_LEASE, params).fetchone()
        return None if row is None else Fence(self.group, shard, self.member, int(row["epoch"]))

    def renew(self, fences: Sequence[Fence]) -> set[int]:
        """Extend ``fences``; return the shards still held (the others are lost)."""
        if not fences:
            return set()
        params = {
            "group": self.group,
            "owner": self.member,
            "ttl_s": self.ttl_s,
            "shards": [f.shard for f in fences],
            "epochs": [f.epoch for f in fences],
        }
        with self._transaction() as conn:
            return {row["shard"] for row in conn.execute(RENEW_LEASES, params).fetchall()}

    def release(self, fence: Fence) -> None:
        """Give ``fence``'s shard up now (no waiting for the expiry)."""
        with self._transaction() as conn:
            conn.execute(RELEASE_LEASE, fence.params())


LEASES_PRESENT = "SELECT to_regclass('paper_shard_leases') IS NOT NULL AS present"


def read_leases(dsn: str, group: str, *, connect_timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """Every shard lease of ``group`` (``status``); empty before migration 006."""
    try:
        with psycopg.connect(
            dsn, connect_timeout=max(1, round(connect_timeout_s)), row_factory=dict_row
        ) as conn:
            present = conn.execute(LEASES_PRESENT).fetchone()
            if not present or not present["present"]:
                return []
            return conn.execute(SELECT_LEASES, {"group": group}).fetchall()
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError(f"cannot connect to PostgreSQL: {describe(exc)}") from exc
