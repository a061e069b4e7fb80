"""``paper-consumer status``: where the consumer stands, for a person at a terminal (or JSON).

Per stream: length, group lag, pending entries (and per consumer: pending, idle); the
dead-letter stream's length and newest reasons; the committed offsets in PostgreSQL; the last
P&L snapshot and ``get_paper_total_pnl()``. Read-only on both servers: it creates no group and
takes no worker lock. The Redis calls live in ``stream.py``, the SQL in ``store.py``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from consumer.settings import Settings
from consumer.store import read_status
from consumer.stream import RedisStream

REASON_MAX = 160


def gather(settings: Settings, *, newest_dead_letters: int = 3) -> dict[str, Any]:
    """Everything ``status`` shows, as plain data (what ``--format json`` prints)."""
    stream = RedisStream.from_settings(settings)
    try:
        streams = stream.group_state()
        dlq_length, newest = stream.dead_letters(newest_dead_letters)
    finally:
        stream.close()
    database = read_status(settings.database_dsn(), settings.group)
    return {
        "group": settings.group,
        "streams": streams,
        "dead_letters": {"stream": settings.dlq_stream, "length": dlq_length, "newest": newest},
        **database,
    }


def _money(value: Decimal | None) -> str:
    return "-" if value is None else f"{value:,.2f} USDT"


def _shorten(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= REASON_MAX else line[: REASON_MAX - 1] + "…"


def render(status: dict[str, Any]) -> str:
    """The terminal view of ``gather``'s result."""
    lines = [f"consumer group {status['group']}"]
    for s in status["streams"]:
        if not s["group"]:
            state = "no such stream" if s["last_id"] is None else "group not created yet"
            lines.append(f"  {s['stream']:<28} length {s['length']:>8}  ({state})")
            continue
        lag = "?" if s["lag"] is None else str(s["lag"])
        lines.append(
            f"  {s['stream']:<28} length {s['length']:>8}  lag {lag:>6}  pending {s['pending']:>6}"
        )
        for c in s["consumers"]:
            lines.append(
                f"      consumer {c['name']:<24} pending {c['pending']:>6}  "
                f"idle {c['idle_ms'] / 1000:,.1f} s"
            )
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
