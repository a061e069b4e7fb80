"""``paper-consumer report`` and ``snapshot``: what a trader reads at a glance.

``gather`` runs the report's queries (``db/report_queries.py``, one short read-only connection),
hands the window's snapshots and round trips to ``performance.py`` and returns a ``Report``; the
renderers (table, JSON, CSV) are pure. ``draw`` plots the equity curve with its drawdown shaded,
and P&L per symbol, with matplotlib, imported only when a plot is asked for
(``paper-consumer[plot]``).

Definitions (the window is ``since <= t < until``, either end open; docs/report.md):

- total P&L: ``get_paper_total_pnl()`` now (lifetime realized + unrealized of open positions);
  per symbol the same split from ``paper_positions``;
- realized in window: the realized P&L caused by the fills in the window (``paper_fill_pnl``,
  fees included), which is what ``paper_trading_stats.daily_pnl_usdt`` adds up per date;
- trades and win rate: round trips closed in the window (``paper_round_trips``), winning / all;
- fill rate: ``get_paper_fill_rate``'s definition over the orders created in the window
  (FILLED, PARTIAL or PARTIALLY_FILLED ÷ all), rounded to 4 places; none when no orders;
- average slippage: mean ``slippage_pct`` of the orders created in the window that carry one;
- volume and fees: Σ quantity × price and Σ fees of the fills in the window;
- drawdown, round-trip statistics, Sharpe, Sortino and fee share: ``performance.DEFINITIONS``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from consumer.db import PostgresStore, report_queries
from consumer.db.reads import SELECT_SNAPSHOT
from consumer.db.report_queries import Window
from consumer.errors import PaperConsumerError
from consumer.performance import (
    PERFORMANCE_FIELDS,
    Performance,
    Snapshot,
    account_curve,
    drawdown,
    evaluate,
    symbol_curve,
)

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


def parse_moment(text: str) -> timedelta | datetime:
    """A window end: a duration back from now (``7d``: a timedelta) or an ISO 8601 date or
    time (``2026-11-20``, ``2026-11-20T10:00``, ``…Z`` or ``…+01:00``; UTC without an
    offset: a datetime). ValueError otherwise."""
    try:
        return parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            "give a duration back from now (30m, 24h, 7d, 2w) or an ISO date or time"
            f" (2026-11-20, 2026-11-20T10:00Z) (got {text!r})"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def resolve(end: timedelta | datetime | None, now: datetime) -> datetime | None:
    """``parse_moment``'s result as a time (a duration counts back from ``now``)."""
    if isinstance(end, timedelta):
        return now - end
    return end


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
CSV_FIELDS = LINE_FIELDS + PERFORMANCE_FIELDS


@dataclass(frozen=True)
class Report:
    since: datetime | None  # None: all history
    until: datetime | None  # None: up to now (and any later event time)
    now: datetime
    total_pnl_usdt: Decimal
    account: Line
    symbols: list[Line] = field(default_factory=list)
    performance: dict[str, Performance] = field(default_factory=dict)  # by symbol and "ALL"
    snapshots: Sequence[Snapshot] = ()  # the window's points, for the plot (not rendered)


def _line(symbol: str, row: dict[str, Any]) -> Line:
    return Line(symbol=symbol, **{name: row[name] for name in LINE_FIELDS if name != "symbol"})


def gather(
    dsn: str,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    now: datetime | None = None,
    connect_timeout_s: float = 5.0,
) -> Report:
    """Read the report for the window ``since <= t < until`` (see the module docstring)."""
    window = Window(since, until)
    with report_queries.connect(dsn, connect_timeout_s) as conn:
        totals, per_symbol = report_queries.read_lines(conn, window)
        snapshots = report_queries.read_snapshots(conn, window)
        trips = report_queries.read_trips(conn, window)
    account = _line("ALL", totals)
    symbols = [_line(row["symbol"], row) for row in per_symbol]
    curve = account_curve(snapshots)
    performance = {
        "ALL": evaluate(
            curve,
            trips,
            fees_usdt=account.fees_usdt,
            window_realized_usdt=account.window_realized_pnl_usdt,
        )
    }
    for line in symbols:
        performance[line.symbol] = evaluate(
            symbol_curve(snapshots, line.symbol),
            [t for t in trips if t.symbol == line.symbol],
            fees_usdt=line.fees_usdt,
            window_realized_usdt=line.window_realized_pnl_usdt,
            return_base=curve,
        )
    return Report(
        since=since,
        until=until,
        now=now or datetime.now(UTC),
        total_pnl_usdt=totals["total_pnl_now_usdt"],
        account=account,
        symbols=symbols,
        performance=performance,
        snapshots=snapshots,
    )


# --------------------------------------------------------------------------------------------
# Rendering (pure)
# --------------------------------------------------------------------------------------------


def _plain(value: Any) -> str:
    """Decimals without exponent or trailing zeros (``Infinity`` for an infinite one); times in
    ISO 8601; None as empty."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return "0" if text in ("-0", "") else text
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _money(value: Decimal | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _pct(value: Decimal | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def _ratio(value: Decimal | None) -> str:
    if value is None:
        return "-"
    return "inf" if value.is_infinite() else f"{value:.2f}"


def _when(value: datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M}"


def _held(seconds: Decimal | None) -> str:
    """A holding time, two units: ``2d 03h``, ``1h 05m``, ``4m 10s``, ``12s``."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _span(report: Report) -> str:
    since = "all history" if report.since is None else f"{report.since:%Y-%m-%d %H:%M}"
    until = f"now ({report.now:%Y-%m-%d %H:%M})" if report.until is None else _when(report.until)
    return f"{since} → {until} UTC"


def _columns(columns: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    """A left-aligned first column and right-aligned others, two spaces apart."""
    widths = [max(len(row[i]) for row in [columns, *body]) for i in range(len(columns))]

    def fmt(row: Sequence[str]) -> str:
        rest = zip(row[1:], widths[1:], strict=True)
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in rest]
        return "  ".join(cells).rstrip()

    return [fmt(columns), fmt(["-" * w for w in widths]), *map(fmt, body)]


def _performance_head(perf: Performance, acct: Line) -> list[str]:
    """The account's risk lines of the table (see ``performance.DEFINITIONS``)."""
    if perf.curve_basis is None:
        curve = ["equity curve         no snapshot in the window: no drawdown, Sharpe or Sortino"]
    else:
        what = "equity" if perf.curve_basis == "equity" else "total P&L, no start balance: no %"
        curve = [
            f"equity curve         {_money(perf.curve_start_usdt)} → "
            f"{_money(perf.curve_end_usdt)} USDT, return {_pct(perf.window_return)}"
            f"  ({perf.snapshots} snapshots of {what})",
            f"max drawdown         {_money(perf.max_drawdown_usdt)} USDT"
            f" ({_pct(perf.max_drawdown_pct)})  peak {_when(perf.drawdown_peak_at)}"
            f" → trough {_when(perf.drawdown_trough_at)},"
            f" recovered {_when(perf.drawdown_recovered_at)}",
            f"current drawdown     {_money(perf.current_drawdown_usdt)} USDT"
            f" ({_pct(perf.current_drawdown_pct)})",
        ]
    return [
        *curve,
        f"closed-trade DD      {_money(perf.trade_drawdown_usdt)} USDT"
        "  (cumulative P&L of the round trips, from 0)",
        f"profit factor        {_ratio(perf.profit_factor)}  (won {_money(perf.gross_profit_usdt)}"
        f" / lost {_money(abs(perf.gross_loss_usdt))} USDT)",
        f"expectancy           {_money(perf.expectancy_usdt)} USDT per round trip"
        f"  (avg win {_money(perf.avg_win_usdt)}, avg loss {_money(perf.avg_loss_usdt)})",
        f"streaks              longest {perf.max_win_streak} winning,"
        f" {perf.max_loss_streak} losing in a row"
        f"  (avg holding {_held(perf.avg_holding_s)})",
        f"Sharpe / Sortino     {_ratio(perf.sharpe)} / {_ratio(perf.sortino)}"
        f"  ({perf.return_days} daily returns, annualised ×√365)",
        f"fees                 {_money(acct.fees_usdt)} USDT"
        + (
            f" = {_pct(perf.fee_share)} of gross P&L {_money(perf.gross_pnl_usdt)} USDT"
            if perf.fee_share is not None
            else f", gross P&L {_money(perf.gross_pnl_usdt)} USDT (no fee share: gross P&L ≤ 0)"
        ),
    ]


def render_table(report: Report) -> str:
    acct = report.account
    head = [
        f"P&L report  {_span(report)}",
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
    ]
    if "ALL" in report.performance:
        head += ["", *_performance_head(report.performance["ALL"], acct)]
    head.append("")
    if not report.symbols:
        return "\n".join([*head, "no symbols traded yet"])
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
    lines = [*head, *_columns(columns, body)]
    risk = [(line.symbol, report.performance.get(line.symbol)) for line in report.symbols]
    rows = [_risk_row(symbol, perf) for symbol, perf in risk if perf is not None]
    return "\n".join([*lines, "", *_columns(_RISK_COLUMNS, rows)] if rows else lines)


_RISK_COLUMNS = ("symbol", "max DD", "current DD", "trade DD", "profit f.", "expectancy",
                 "avg win", "avg loss", "streaks W/L", "avg hold", "Sharpe", "Sortino",
                 "fee share")  # fmt: skip


def _risk_row(symbol: str, perf: Performance) -> tuple[str, ...]:
    return (
        symbol,
        _money(perf.max_drawdown_usdt),
        _money(perf.current_drawdown_usdt),
        _money(perf.trade_drawdown_usdt),
        _ratio(perf.profit_factor),
        _money(perf.expectancy_usdt),
        _money(perf.avg_win_usdt),
        _money(perf.avg_loss_usdt),
        f"{perf.max_win_streak}/{perf.max_loss_streak}",
        _held(perf.avg_holding_s),
        _ratio(perf.sharpe),
        _ratio(perf.sortino),
        _pct(perf.fee_share),
    )


def _plain_fields(values: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (v if isinstance(v, int | str) or v is None else _plain(v)) for k, v in values.items()
    }


def to_dict(report: Report) -> dict[str, Any]:
    """JSON-ready: numbers as exact decimal strings (``"Infinity"`` for an infinite profit
    factor or Sortino), times in ISO 8601, an absent figure as null."""

    def plain_line(line: Line) -> dict[str, Any]:
        body = _plain_fields(asdict(line))
        perf = report.performance.get(line.symbol)
        if perf is not None:
            body["performance"] = _plain_fields(asdict(perf))
        return body

    return {
        "since": None if report.since is None else report.since.isoformat(),
        "until": None if report.until is None else report.until.isoformat(),
        "generated_at": report.now.isoformat(),
        "total_pnl_usdt": _plain(report.total_pnl_usdt),
        "account": plain_line(report.account),
        "symbols": [plain_line(line) for line in report.symbols],
    }


def render_json(report: Report) -> str:
    return json.dumps(to_dict(report), indent=2)


def render_csv(report: Report) -> str:
    """One row per symbol, then the ``ALL`` row; columns are ``CSV_FIELDS`` (the line's, then
    the performance's; empty where a figure is absent)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for line in [*report.symbols, report.account]:
        perf = report.performance.get(line.symbol)
        cells = [_plain(getattr(line, name)) for name in LINE_FIELDS]
        cells += [_plain(getattr(perf, name)) if perf else "" for name in PERFORMANCE_FIELDS]
        writer.writerow(cells)
    return out.getvalue()


RENDERERS = {"table": render_table, "json": render_json, "csv": render_csv}


# --------------------------------------------------------------------------------------------
# Plot
# --------------------------------------------------------------------------------------------


class PlotUnavailableError(PaperConsumerError):
    """matplotlib is not installed."""


def underwater(
    times: Sequence[datetime], values: Sequence[float]
) -> tuple[list[datetime], list[float], list[float]]:
    """The points of the (piecewise linear) curve, plus each point where it climbs back through
    its running peak, with the running peak at every one: the area between the two is exactly
    the drawdown of the curve as drawn."""
    out_t: list[datetime] = []
    out_v: list[float] = []
    peaks: list[float] = []
    for moment, value in zip(times, values, strict=True):
        if peaks and out_v[-1] < peaks[-1] < value:
            share = (peaks[-1] - out_v[-1]) / (value - out_v[-1])
            out_t.append(out_t[-1] + (moment - out_t[-1]) * share)
            out_v.append(peaks[-1])
            peaks.append(peaks[-1])
        out_t.append(moment)
        out_v.append(value)
        peaks.append(value if not peaks else max(peaks[-1], value))
    return out_t, out_v, peaks


def draw(snapshots: Sequence[Snapshot], path: Path, *, title: str = "Paper trading P&L") -> None:
    """The equity curve (total P&L without a start balance) with its drawdown from the running
    peak shaded, the realized part, and P&L per symbol, over time, into ``path``."""
    try:
        import matplotlib as mpl  # noqa: PLC0415 - optional dependency, imported on demand

        mpl.use("Agg")
        import matplotlib.dates as mdates  # noqa: PLC0415
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError as exc:
        raise PlotUnavailableError(
            "--plot needs matplotlib: pip install 'paper-consumer[plot]'"
        ) from exc
    curve = account_curve(snapshots)
    if curve is None:
        raise PaperConsumerError("no P&L snapshots in the window: nothing to plot")
    times = [moment for moment, _ in curve.points]
    values = [float(value) for _, value in curve.points]
    shade_t, shade_v, peaks = underwater(times, values)
    equity = curve.basis == "equity"
    realized = [float(s.balance if equity and s.balance is not None else s.realized_pnl)
                for s in snapshots]  # fmt: skip
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    try:
        top.plot(times, values, label="equity" if equity else "total P&L (realized + unrealized)")
        top.plot(times, realized, label="balance (start + realized)" if equity else "realized",
                 linestyle="--", linewidth=0.9)  # fmt: skip
        top.plot(shade_t, peaks, color="grey", linewidth=0.6, linestyle=":", label="running peak")
        top.fill_between(shade_t, shade_v, peaks, color="tab:red", alpha=0.3, label="drawdown")
        worst = drawdown(curve.points, relative=equity)
        if worst is not None and worst.trough_at is not None:
            peak = peaks[shade_t.index(worst.trough_at)]
            depth = float(worst.max_usdt)
            top.annotate(
                f"max drawdown {worst.max_usdt:,.2f}"
                + ("" if worst.max_pct is None else f" ({worst.max_pct * 100:.2f}%)"),
                xy=(worst.trough_at, peak - depth),
                xytext=(worst.trough_at, peak - depth / 2),
                arrowprops={"arrowstyle": "->", "color": "tab:red"},
                ha="center",
                fontsize="small",
                color="tab:red",
            )
        top.set_title(f"{title}: {'equity' if equity else 'cumulative P&L'} (USDT)")
        symbols = sorted({s for p in snapshots for s in p.per_symbol})
        for symbol in symbols:
            bottom.plot(times, [float(p.per_symbol.get(symbol, 0)) for p in snapshots],
                        label=symbol)  # fmt: skip
        bottom.set_title("P&L per symbol (USDT)")
        for axis in (top, bottom):
            if not equity or axis is bottom:
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
    with report_queries.connect(dsn, connect_timeout_s) as conn:
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
