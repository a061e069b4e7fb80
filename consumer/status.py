"""``paper-consumer status``: where the consumer stands, for a person at a terminal (or JSON).

Per stream: length, group lag, pending entries (and per consumer: pending, idle) and data lost
in Redis before the group read it (``data_lost``: see ``losses.assess``); the dead-letter
stream's length and newest reasons; the committed offsets in PostgreSQL; the last P&L snapshot
and ``get_paper_total_pnl()``. With ``PAPER_SHARDS`` N > 0, per shard: the owner and its lease
epoch, the last heartbeat, the lag, pending entries, dead letters and entries lost. Read-only
on both servers: it creates no group and takes no worker lock. The Redis calls live in
``stream.py``, the SQL in ``db/reads.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from consumer.db import read_leases, read_status
from consumer.losses import Committed, assess, committed_from_rows
from consumer.settings import Settings
from consumer.shards import all_shard_streams, shard_settings
from consumer.stream import RedisStream

REASON_MAX = 160


def gather(settings: Settings, *, newest_dead_letters: int = 3) -> dict[str, Any]:
    """Everything ``status`` shows, as plain data (what ``--format json`` prints)."""
    stream = RedisStream.from_settings(settings)
    try:
        streams = stream.group_state()
        positions = stream.positions()
        dlq_length, newest = stream.dead_letters(newest_dead_letters)
    finally:
        stream.close()
    database = read_status(settings.database_dsn(), settings.group)
    committed = committed_from_rows(database["offsets"])
    for state, position in zip(streams, positions, strict=True):
        gap = assess(position, settings.group, committed.get(position.stream))
        state["data_lost"] = None if gap is None else gap.as_dict()
    return {
        "group": settings.group,
        "streams": streams,
        "dead_letters": {"stream": settings.dlq_stream, "length": dlq_length, "newest": newest},
        **({"shards": gather_shards(settings, committed)} if settings.shards else {}),
        **database,
    }


def gather_shards(
    settings: Settings, committed: Mapping[str, Committed] | None = None
) -> list[dict[str, Any]]:
    """Per shard: ``shard``, ``owner`` (None: unowned or expired), ``epoch``, ``live``,
    ``heartbeat_at``, ``heartbeat_age_s``, ``expires_at``, ``length``, ``lag`` (None: unknown),
    ``pending``, ``dead_letters`` (its dead-letter stream's length) and ``data_lost`` (the gaps
    ``losses.assess`` finds in its streams, given the ``committed`` offsets)."""
    dlqs = [shard_settings(settings, k).dlq_stream for k in range(settings.shards)]
    stream = RedisStream.from_settings(settings, streams=[*all_shard_streams(settings), *dlqs])
    try:
        states = {s["stream"]: s for s in stream.group_state()}
        positions = {p.stream: p for p in stream.positions()}
    finally:
        stream.close()
    offsets = committed or {}
    leases = {row["shard"]: row for row in read_leases(settings.database_dsn(), settings.group)}
    rows = []
    for k in range(settings.shards):
        names = shard_settings(settings, k).streams()
        mine = [states[name] for name in names]
        lags = [s["lag"] for s in mine]
        gaps = [assess(positions[name], settings.group, offsets.get(name)) for name in names]
        lease = leases.get(k, {})
        live = bool(lease.get("live"))
        rows.append(
            {
                "shard": k,
                "owner": lease.get("owner") if live else None,
                "epoch": lease.get("epoch", 0),
                "live": live,
                "heartbeat_at": lease.get("heartbeat_at"),
                "heartbeat_age_s": lease.get("heartbeat_age_s"),
                "expires_at": lease.get("expires_at"),
                "length": sum(s["length"] for s in mine),
                "lag": None if None in lags else sum(lags),
                "pending": sum(s["pending"] for s in mine),
                "dead_letters": states[dlqs[k]]["length"],
                "data_lost": [gap.as_dict() for gap in gaps if gap is not None],
            }
        )
    return rows


def _money(value: Decimal | None) -> str:
    return "-" if value is None else f"{value:,.2f} USDT"


def _shorten(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= REASON_MAX else line[: REASON_MAX - 1] + "…"


def describe_gap(gap: Mapping[str, Any]) -> str:
    """One line for a ``losses.Gap`` (as ``as_dict`` gives it)."""
    lost = "an unknown number of" if gap["lost"] is None else str(gap["lost"])
    how = {
        "trimmed": "trimmed before the group read them",
        "deleted": "deleted (XDEL) before the group read them",
        "stream_vanished": "gone with the stream (deleted, FLUSHALL or a restart without "
        "persistence)",
        "group_vanished": "maybe gone while the consumer group was missing",
    }[gap["cause"]]
    since = gap["last_delivered_id"] or gap["committed_id"] or "-"
    first = gap["first_available_id"] or "none"
    return f"DATA LOST: {lost} entries {how} (after {since}; first available {first})"


def _render_shards(rows: list[dict[str, Any]]) -> list[str]:
    lines = [f"shards ({len(rows)})"]
    for r in rows:
        owner = f"{r['owner']} (epoch {r['epoch']})" if r["live"] else "unowned"
        age = r["heartbeat_age_s"]
        beat = "never" if age is None else f"{age:,.1f} s ago"
        lag = "?" if r["lag"] is None else str(r["lag"])
        lines.append(
            f"  shard {r['shard']:>3}  owner {owner:<28} heartbeat {beat:<12} lag {lag:>6}  "
            f"pending {r['pending']:>6}  dead letters {r['dead_letters']}"
        )
        for gap in r.get("data_lost") or []:
            lines.append(f"      {gap['stream']}: {describe_gap(gap)}")
    return lines


def render(status: dict[str, Any]) -> str:
    """The terminal view of ``gather``'s result."""
    lines = [f"consumer group {status['group']}"]
    for s in status["streams"]:
        lost = [f"      {describe_gap(s['data_lost'])}"] if s.get("data_lost") else []
        if not s["group"]:
            state = "no such stream" if s["last_id"] is None else "group not created yet"
            lines.append(f"  {s['stream']:<28} length {s['length']:>8}  ({state})")
            lines.extend(lost)
            continue
        lag = "?" if s["lag"] is None else str(s["lag"])
        lines.append(
            f"  {s['stream']:<28} length {s['length']:>8}  lag {lag:>6}  pending {s['pending']:>6}"
        )
        lines.extend(lost)
        for c in s["consumers"]:
            lines.append(
                f"      consumer {c['name']:<24} pending {c['pending']:>6}  "
                f"idle {c['idle_ms'] / 1000:,.1f} s"
            )
    if "shards" in status:
        lines.extend(_render_shards(status["shards"]))
    dlq = status["dead_letters"]
    lines.append(f"dead letters ({dlq['stream']}): {dlq['length']}")
    for letter in dlq["newest"]:
        lines.append(
            f"  {letter['id']}  {letter['source_stream']} {letter['source_id']}: "
            f"{_shorten(letter['error'])}"
        )
    lines.append("committed offsets (PostgreSQL)")
    if not status["offsets"]:
        lines.append("  none yet")
    for o in status["offsets"]:
        lines.append(
            f"  {o['stream_name']:<28} last {o['last_entry_id']:<22} "
            f"entries {o['entries_committed']:>8}  at {o['updated_at']:%Y-%m-%d %H:%M:%S %Z}"
        )
    snap = status["last_snapshot"]
    if snap is None:
        lines.append("last P&L snapshot: none")
    else:
        lines.append(
            f"last P&L snapshot: {snap['snapshot_time']:%Y-%m-%d %H:%M %Z} {snap['snapshot_type']}"
            f"  total {_money(snap['total_pnl_usdt'])}  realized "
            f"{_money(snap['realized_pnl_usdt'])}  unrealized "
            f"{_money(snap['unrealized_pnl_usdt'])}  trades {snap['total_trades']}"
        )
    lines.append(f"total P&L now: {_money(status['total_pnl_usdt'])}")
    return "\n".join(lines)
