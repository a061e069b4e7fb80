"""``paper-consumer report`` and ``snapshot``: what a trader reads at a glance.

``gather`` runs the analytics queries of ``db/reads.py`` (one short read-only connection) and
returns a ``Report``; the renderers (table, JSON, CSV) are pure. ``plot`` draws the P&L
snapshots with matplotlib, imported only when a plot is asked for (``paper-consumer[plot]``).

Definitions (the window is ``since`` → now, every time column compared with ``>= since``):

- total P&L: ``get_paper_total_pnl()`` now (lifetime realized + unrealized of open positions);
  per symbol the same split from ``paper_positions``;
- realized in window: the realized P&L caused by the fills in the window (``paper_fill_pnl``,
  fees included), which is what ``paper_trading_stats.daily_pnl_usdt`` adds up per date;
- trades and win rate: round trips closed in the window (``paper_round_trips``), winning / all;
- fill rate: ``get_paper_fill_rate``'s definition over the orders created in the window
  (FILLED, PARTIAL or PARTIALLY_FILLED ÷ all), rounded to 4 places; none when no orders;
- average slippage: mean ``slippage_pct`` of the orders created in the window that carry one;
- volume and fees: Σ quantity × price and Σ fees of the fills in the window.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from consumer.db import PostgresStore
from consumer.db.reads import (
    REPORT_BY_SYMBOL,
    REPORT_TOTALS,
    SELECT_PLOT_SNAPSHOTS,
    SELECT_SNAPSHOT,
)
from consumer.errors import DatabaseUnavailableError, PaperConsumerError, SchemaNotReadyError

_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}
_UNITS["w"] = 7 * _UNITS["d"]


def parse_duration(text: str) -> timedelta:
    """``30m``, ``24h``, ``7d``, ``2w`` → a positive timedelta (ValueError otherwise)."""
    match = re.fullmatch(r"\s*(\d+)\s*([mhdw])\s*", text.lower())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"give a positive duration such as 30m, 24h, 7d or 2w (got {text!r})")
    try:
        return int(match.group(1)) * _UNITS[match.group(2)]
    except OverflowError as exc:
        raise ValueError(f"duration too long: {text!r}") from exc


@dataclass(frozen=True)
class Line:
    """One row of the report: a symbol, or ``ALL`` for the account."""

    symbol: str
    position_quantity: Decimal
    realized_pnl_usdt: Decimal
    unrealized_pnl_usdt: Decimal
    total_pnl_usdt: Decimal
    window_realized_pnl_usdt: Decimal
    trades: int
    winning_trades: int
    losing_trades: int
    win_rate: Decimal | None
    orders: int
    filled_orders: int
    fill_rate: Decimal | None
    avg_slippage_pct: Decimal | None
    fills: int
    volume_usdt: Decimal
    fees_usdt: Decimal


LINE_FIELDS = tuple(Line.__dataclass_fields__)


@dataclass(frozen=True)
class Report:
    since: datetime
    until: datetime
    total_pnl_usdt: Decimal
    account: Line
    symbols: list[Line] = field(default_factory=list)


def _line(symbol: str, row: dict[str, Any]) -> Line:
    return Line(symbol=symbol, **{name: row[name] for name in LINE_FIELDS if name != "symbol"})


def _connect(dsn: str, timeout_s: float) -> psycopg.Connection[dict[str, Any]]:
    try:
        return psycopg.connect(dsn, row_factory=dict_row, connect_timeout=max(1, round(timeout_s)))
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError(f"cannot connect to PostgreSQL: {exc}") from exc


def _schema_error(exc: psycopg.Error) -> SchemaNotReadyError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return SchemaNotReadyError(
        f"cannot read the paper tables ({first}); run `paper-consumer migrate up`"
    )


def gather(dsn: str, since: datetime, now: datetime, *, connect_timeout_s: float = 5.0) -> Report:
    """Read the report for the window ``since`` → ``now`` (see the module docstring)."""
    with _connect(dsn, connect_timeout_s) as conn:
        try:
            totals = conn.execute(REPORT_TOTALS, {"since": since}).fetchone()
            per_symbol = conn.execute(REPORT_BY_SYMBOL, {"since": since}).fetchall()
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailableError(str(exc)) from exc
        except psycopg.Error as exc:
            raise _schema_error(exc) from exc
    if totals is None:  # pragma: no cover - aggregates without GROUP BY return one row
        raise SchemaNotReadyError("the report query returned no row")
    return Report(
        since=since,
        until=now,
        total_pnl_usdt=totals["total_pnl_now_usdt"],
        account=_line("ALL", totals),
        symbols=[_line(row["symbol"], row) for row in per_symbol],
    )


# --------------------------------------------------------------------------------------------
# Rendering (pure)
# --------------------------------------------------------------------------------------------


def _plain(value: Any) -> str:
    """Decimals without exponent or trailing zeros; None as empty."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return "0" if text in ("-0", "") else text
    return str(value)


def _money(value: Decimal | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _pct(value: Decimal | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def render_table(report: Report) -> str:
    acct = report.account
    head = [
        f"P&L report  {report.since:%Y-%m-%d %H:%M} → {report.until:%Y-%m-%d %H:%M} UTC",
        "",
        f"total P&L now        {_money(report.total_pnl_usdt)} USDT"
        f"  (realized {_money(acct.realized_pnl_usdt)},"
        f" unrealized {_money(acct.unrealized_pnl_usdt)})",
        f"realized in window   {_money(acct.window_realized_pnl_usdt)} USDT",
        f"win rate             {_pct(acct.win_rate)}  ({acct.winning_trades} winning,"
        f" {acct.losing_trades} losing of {acct.trades} closed round trips)",
        f"fill rate            {_pct(acct.fill_rate)}  ({acct.filled_orders} of"
        f" {acct.orders} orders)",
        f"avg slippage         "
        f"{'-' if acct.avg_slippage_pct is None else f'{acct.avg_slippage_pct:.4f}%'}",
        f"volume / fees        {_money(acct.volume_usdt)} / {_money(acct.fees_usdt)} USDT"
        f"  ({acct.fills} fills)",
        "",
    ]
    columns = ("symbol", "realized", "unrealized", "total", "in window", "trades", "win rate",
               "fill rate", "volume", "fees")  # fmt: skip
    body = [
        (
            line.symbol,
            _money(line.realized_pnl_usdt),
            _money(line.unrealized_pnl_usdt),
            _money(line.total_pnl_usdt),
            _money(line.window_realized_pnl_usdt),
            str(line.trades),
            _pct(line.win_rate),
            _pct(line.fill_rate),
            _money(line.volume_usdt),
            _money(line.fees_usdt),
        )
        for line in report.symbols
    ]
    if not body:
        return "\n".join([*head, "no symbols traded yet"])
    widths = [max(len(row[i]) for row in [columns, *body]) for i in range(len(columns))]

    def fmt(row: Sequence[str]) -> str:
        rest = zip(row[1:], widths[1:], strict=True)
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in rest]
        return "  ".join(cells).rstrip()

    return "\n".join([*head, fmt(columns), fmt(["-" * w for w in widths]), *map(fmt, body)])


def to_dict(report: Report) -> dict[str, Any]:
    """JSON-ready: numbers as exact decimal strings, times in ISO 8601."""

    def plain_line(line: Line) -> dict[str, Any]:
        return {
            k: (v if isinstance(v, int | str) or v is None else _plain(v))
            for k, v in asdict(line).items()
        }

    return {
        "since": report.since.isoformat(),
        "until": report.until.isoformat(),
        "total_pnl_usdt": _plain(report.total_pnl_usdt),
        "account": plain_line(report.account),
        "symbols": [plain_line(line) for line in report.symbols],
    }


def render_json(report: Report) -> str:
    return json.dumps(to_dict(report), indent=2)


def render_csv(report: Report) -> str:
    """One row per symbol, then the ``ALL`` row; columns are ``LINE_FIELDS``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(LINE_FIELDS)
    for line in [*report.symbols, report.account]:
        writer.writerow([_plain(getattr(line, name)) for name in LINE_FIELDS])
    return out.getvalue()


RENDERERS = {"table": render_table, "json": render_json, "csv": render_csv}


# --------------------------------------------------------------------------------------------
# Plot
# --------------------------------------------------------------------------------------------


class PlotUnavailableError(PaperConsumerError):
    """matplotlib is not installed."""


@dataclass(frozen=True)
class Point:
    time: datetime
    total: Decimal
    realized: Decimal
    per_symbol: dict[str, Decimal]


def read_points(dsn: str, since: datetime, *, connect_timeout_s: float = 5.0) -> list[Point]:
    """One point per snapshot time in the window, oldest first."""
    with _connect(dsn, connect_timeout_s) as conn:
        try:
            rows = conn.execute(SELECT_PLOT_SNAPSHOTS, {"since": since}).fetchall()
        except psycopg.Error as exc:
            raise _schema_error(exc) from exc
    return [
        Point(
            time=row["snapshot_time"],
            total=row["total_pnl_usdt"],
            realized=row["realized_pnl_usdt"],
            per_symbol={
                symbol: Decimal(str(body.get("pnl", 0)))
                for symbol, body in (row["symbol_pnl"] or {}).items()
            },
        )
        for row in rows
    ]


def draw(points: Sequence[Point], path: Path, *, title: str = "Paper trading P&L") -> None:
    """Cumulative (total and realized) P&L, and P&L per symbol, over time, into ``path``."""
    try:
        import matplotlib as mpl  # noqa: PLC0415 - optional dependency, imported on demand

        mpl.use("Agg")
        import matplotlib.dates as mdates  # noqa: PLC0415
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError as exc:
        raise PlotUnavailableError(
            "--plot needs matplotlib: pip install 'paper-consumer[plot]'"
        ) from exc
    if not points:
        raise PaperConsumerError("no P&L snapshots in the window: nothing to plot")
    times = [p.time for p in points]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    try:
        top.plot(times, [float(p.total) for p in points], label="total (realized + unrealized)")
        top.plot(times, [float(p.realized) for p in points], label="realized", linestyle="--")
        top.set_title(f"{title}: cumulative P&L (USDT)")
        symbols = sorted({s for p in points for s in p.per_symbol})
        for symbol in symbols:
            values = [float(p.per_symbol.get(symbol, Decimal(0))) for p in points]
            bottom.plot(times, values, label=symbol)
        bottom.set_title("P&L per symbol (USDT)")
        for axis in (top, bottom):
            axis.axhline(0, color="grey", linewidth=0.8)
            axis.grid(True, alpha=0.3)
            if axis.get_legend_handles_labels()[0]:
                axis.legend(loc="best", fontsize="small")
        bottom.xaxis.set_major_formatter(
            mdates.DateFormatter("%m-%d %H:%M", tz="UTC")  # type: ignore[no-untyped-call]
        )
        bottom.set_xlabel("time (UTC)")
        fig.autofmt_xdate()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------------------------
# `paper-consumer snapshot`
# --------------------------------------------------------------------------------------------


def take_manual_snapshot(
    dsn: str,
    *,
    group: str,
    start_balance: Decimal | None,
    now: datetime,
    connect_timeout_s: float = 5.0,
) -> tuple[bool, dict[str, Any]]:
    """Write a MANUAL snapshot at ``now``; return (written now?, the stored row)."""
    store = PostgresStore(
        dsn, group=group, start_balance=start_balance, connect_timeout_s=connect_timeout_s
    )
    store.open()
    try:
        written = store.snapshot_now(now) == 1
    finally:
        store.close()
    with _connect(dsn, connect_timeout_s) as conn:
        row = conn.execute(SELECT_SNAPSHOT, {"time": now, "type": "MANUAL"}).fetchone()
    if row is None:  # pragma: no cover - the insert above committed it
        raise PaperConsumerError("the MANUAL snapshot was not found after writing it")
    return written, row


def render_snapshot(row: dict[str, Any]) -> str:
    lines = [f"{row['snapshot_type']} snapshot at {row['snapshot_time'].isoformat()}"]
    for name in (
        "total_pnl_usdt", "realized_pnl_usdt", "unrealized_pnl_usdt", "balance_usdt",
        "equity_usdt", "total_trades", "winning_trades", "losing_trades", "win_rate",
        "total_volume_usdt", "total_fees_usdt",
    ):  # fmt: skip
        lines.append(f"  {name:<20} {_plain(row[name]) or '-'}")
    for symbol, body in sorted((row["symbol_pnl"] or {}).items()):
        detail = ", ".join(f"{k} {body[k]}" for k in sorted(body))
        lines.append(f"  {symbol:<20} {detail}")
    return "\n".join(lines)
