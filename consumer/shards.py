"""Sharding by symbol: the shard function, the shard's stream keys, and the balance rule. Pure.

A publisher that shards (``PAPER_SHARDS=N``) sends every event of a symbol to that symbol's
shard, so one worker at a time — the shard's lease holder (``leases.py``) — applies a symbol's
fills, in stream order, while other shards go to other workers.

The shard function (docs/scaling.md, with test vectors) is meant to be reimplemented by any
publisher in a few lines::

    shard = crc32(symbol.strip().upper().encode("utf-8")) % N

CRC-32 is the IEEE 802.3 polynomial of zlib, Java's ``java.util.zip.CRC32``, Go's
``hash/crc32.ChecksumIEEE``, Node's ``zlib.crc32`` and PHP's ``crc32``. The symbol is
normalised as ``events.py`` normalises it, so ``btcusdt`` and ``BTCUSDT`` share a shard.

Stream keys carry the shard in a Redis Cluster hash tag: ``stream.orders.{3}``,
``stream.fills.{3}``, ``stream.market_data.{3}`` and the shard's dead-letter stream
``stream.paper_dlq.{3}`` all hash to one cluster slot, so every multi-key command of a shard
(XREADGROUP over its streams, the MULTI that dead-letters and acknowledges) stays on one node.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from consumer.settings import Settings


def shard_of(symbol: str, shards: int) -> int:
    """The shard of ``symbol`` among ``shards``: CRC-32 of the upper-cased UTF-8 symbol mod N."""
    if shards < 1:
        raise ValueError(f"shards: must be at least 1 (got {shards})")
    return zlib.crc32(symbol.strip().upper().encode("utf-8")) % shards


def shard_key(base: str, shard: int) -> str:
    """``stream.fills`` → ``stream.fills.{3}``: the hash tag puts a shard on one cluster slot."""
    return f"{base}.{{{shard}}}"


def lease_count(settings: Settings) -> int:
    """How many leases the group's workers share: one per shard, or one for the unsharded
    streams (``PAPER_SHARDS`` 0: one active worker, the others stand by)."""
    return max(1, settings.shards)


def shard_settings(settings: Settings, shard: int) -> Settings:
    """The settings of a worker of one shard: its streams and its dead-letter stream (the
    unsharded streams themselves when ``settings.shards`` is 0)."""
    if not settings.shards:
        return settings
    update: dict[str, Any] = {
        "orders_stream": shard_key(settings.orders_stream, shard),
        "fills_stream": shard_key(settings.fills_stream, shard),
        "dlq_stream": shard_key(settings.dlq_stream, shard),
    }
    if settings.marks_stream:
        update["marks_stream"] = shard_key(settings.marks_stream, shard)
    if settings.results_stream:
        update["results_stream"] = shard_key(settings.results_stream, shard)
    return settings.model_copy(update=update)


def all_shard_streams(settings: Settings) -> list[str]:
    """Every stream of every shard (for the metrics prober and ``status``)."""
    return [
        name for k in range(lease_count(settings)) for name in shard_settings(settings, k).streams()
    ]


def entry_symbol(fields: Mapping[str, str]) -> str | None:
    """The symbol an entry names, flat (``symbol``) or inside a JSON ``data`` envelope; None
    when it names none (such an entry goes to shard 0; it is invalid or symbol-less)."""
    symbol = fields.get("symbol")
    if symbol is None and "data" in fields:
        try:
            body = json.loads(fields["data"])
        except ValueError:
            return None
        symbol = body.get("symbol") if isinstance(body, dict) else None
    return symbol if isinstance(symbol, str) and symbol.strip() else None


def stream_for(base: str, fields: Mapping[str, str], shards: int) -> str:
    """Where a publisher sends an entry meant for stream ``base``: itself when not sharding,
    else the shard of the entry's symbol (shard 0 when it names none)."""
    if not shards:
        return base
    symbol = entry_symbol(fields)
    return shard_key(base, shard_of(symbol, shards) if symbol else 0)


# -- balance ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeaseView:
    """One shard's lease as the balancer sees it."""

    shard: int
    owner: str | None
    live: bool  # held and not expired


def fair_share(shards: int, members: Sequence[str], me: str) -> int:
    """How many shards ``me`` should hold: N // W, one more for the first N % W members in
    name order, so the shares add up to N exactly."""
    names = sorted(set(members) | {me})
    base, extra = divmod(shards, len(names))
    return base + (1 if names.index(me) < extra else 0)


def plan_balance(
    shards: int, members: Sequence[str], me: str, leases: Sequence[LeaseView], mine: Sequence[int]
) -> tuple[list[int], list[int]]:
    """Which shards ``me`` should try to acquire and which to give up now.

    ``mine`` are the shards ``me`` holds. Below its fair share it tries free shards (no live
    lease), starting at an offset of its own so that workers starting together do not all race
    for shard 0; above it, it releases its highest-numbered surplus so a new worker gets work.
    """
    target = fair_share(shards, members, me)
    held = sorted(set(mine))
    if len(held) > target:
        return [], held[target:]
    live = {lease.shard for lease in leases if lease.live}
    names = sorted(set(members) | {me})
    start = names.index(me) * shards // len(names)
    order = [(start + i) % shards for i in range(shards)]
    free = [k for k in order if k not in live and k not in held]
    return free[: target - len(held)], []
