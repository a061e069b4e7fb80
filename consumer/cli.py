"""Command line: ``paper-consumer run | migrate | publish | demo …`` (also ``python -m consumer``).

Each command is a small function taking the parsed arguments. Flags override environment
variables (see ``settings.py``); ``--help`` never shows a secret, because secrets are only read
from the environment or files, never accepted or echoed as flag defaults. Signal handlers are
installed here, in one place, and restored when ``run`` returns.

Secrets never reach the output: a malformed ``DATABASE_URL``/``REDIS_URL`` (or ``replay
--database-url``) is refused before anything connects (exit 2, naming the variable); the
settings' secrets are registered with ``redact``, whose ``scrub`` every message, log line and
traceback goes through (an unexpected exception is one scrubbed log event, never a raw traceback).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import ValidationError

from consumer import __version__, migrations, redact
from consumer.errors import ConfigError, PaperConsumerError, SchemaNotReadyError
from consumer.logs import configure, get_logger
from consumer.redact import redact_url
from consumer.settings import Settings, check_database_url

EXIT_USAGE = 2
EXIT_ERROR = 1

# CLI flag → Settings field. Only non-secret settings are flags.
_RUN_FLAGS: dict[str, tuple[str, type, str]] = {
    "--group": ("group", str, "consumer group name (PAPER_GROUP)"),
    "--consumer-name": ("consumer_name", str, "stable consumer name (PAPER_CONSUMER_NAME)"),
    "--orders-stream": ("orders_stream", str, "order stream (PAPER_ORDERS_STREAM)"),
    "--fills-stream": ("fills_stream", str, "fill stream (PAPER_FILLS_STREAM)"),
    "--marks-stream": ("marks_stream", str, "mark stream; '' disables (PAPER_MARKS_STREAM)"),
    "--dlq-stream": ("dlq_stream", str, "dead-letter stream (PAPER_DLQ_STREAM)"),
    "--batch-max-entries": ("batch_max_entries", int, "max entries per batch (on a backlog)"),
    "--batch-min-entries": ("batch_min_entries", int, "entries per batch when caught up"),
    "--batch-max-bytes": ("batch_max_bytes", int, "max field bytes per batch"),
    "--batch-max-wait-ms": ("batch_max_wait_ms", int, "max wait to fill a batch, ms"),
    "--block-ms": ("block_ms", int, "XREADGROUP BLOCK, ms"),
    "--claim-idle-s": ("claim_idle_s", float, "reclaim others' pending entries idle this long"),
    "--max-deliveries": ("max_deliveries", int, "dead-letter an entry delivered more often"),
    "--shutdown-grace-s": ("shutdown_grace_s", float, "time to finish the batch on SIGTERM"),
    "--shards": ("shards", int, "streams sharded by symbol into N (PAPER_SHARDS; 0: unsharded)"),
    "--lease-ttl-s": ("lease_ttl_s", float, "a dead worker's shards move after this long"),
}


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paper-consumer",
        description="Persist a paper-trading bot's Redis Streams events into PostgreSQL.",
        epilog="Connection settings come from the environment: DATABASE_URL or POSTGRES_HOST/"
        "PORT/DB/USER/PASSWORD(_FILE); REDIS_URL or REDIS_HOST/PORT/DB/PASSWORD(_FILE).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--log-format", choices=["auto", "json", "console"], default=None)
    parser.add_argument("--log-level", default=None, help="debug, info, warning, error")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="consume the streams into PostgreSQL (the worker)")
    run.add_argument(
        "--until-idle",
        action="store_true",
        help="exit once every stream is drained (burst mode, for replays and tests)",
    )
    run.add_argument(
        "--migrate",
        action="store_true",
        help="apply pending migrations before starting instead of refusing to run",
    )
    run.add_argument(
        "--archive",
        action="store_true",
        help="also keep every accepted raw entry in paper_event_ledger",
    )
    for flag, (_, kind, text) in _RUN_FLAGS.items():
        run.add_argument(flag, type=kind, default=None, help=text)
    run.set_defaults(handler=_cmd_run)

    migrate = commands.add_parser("migrate", help="apply, roll back, list or verify migrations")
    actions = migrate.add_subparsers(dest="action", required=True, metavar="ACTION")
    up = actions.add_parser("up", help="apply pending migrations")
    up.add_argument("--to", type=int, default=None, help="stop after this version")
    down = actions.add_parser("down", help="roll back applied migrations")
    down.add_argument(
        "--to",
        type=int,
        default=None,
        help="keep versions up to this one (required; 0 removes everything)",
    )
    actions.add_parser("status", help="list applied and pending migrations")
    actions.add_parser("verify", help="check every expected object exists")
    migrate.set_defaults(handler=_cmd_migrate)
    _add_status(commands)
    _add_publish_and_demo(commands)
    _add_replay_and_export(commands)
    _add_analytics(commands)
    return parser


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0 (got {text})")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative (got {text})")
    return value


def _ratio(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (got {text})")
    return value


def _symbols(text: str) -> list[str]:
    symbols = [part.strip().upper() for part in text.split(",") if part.strip()]
    bad = [symbol for symbol in symbols if not re.fullmatch(r"[A-Z0-9]{2,20}", symbol)]
    if bad or not symbols:
        raise argparse.ArgumentTypeError(
            f"give symbols matching ^[A-Z0-9]{{2,20}}$, e.g. BTCUSDT,ETHUSDT (got {text!r})"
        )
    return symbols


def _add_publish_and_demo(commands: Any) -> None:
    """``publish`` (the synthetic bot alone) and ``demo`` (everything, on embedded servers)."""
    publish = commands.add_parser(
        "publish", help="publish synthetic paper-trading events to the configured streams"
    )
    publish.add_argument("--events", type=_non_negative_int, default=1000, help="default 1000")
    publish.add_argument(
        "--rate", type=_positive_float, default=None, help="events per second (default: at once)"
    )
    publish.add_argument(
        "--shards",
        type=_non_negative_int,
        default=None,
        help="send each event to its symbol's shard <stream>.{k} of N (PAPER_SHARDS; default 0)",
    )
    demo = commands.add_parser(
        "demo", help="embedded PostgreSQL + Redis, the worker and a synthetic bot, live summary"
    )
    demo.add_argument(
        "--data-dir", type=Path, default=Path(".paper-consumer"), help="default ./.paper-consumer"
    )
    demo.add_argument(
        "--events",
        type=_non_negative_int,
        default=None,
        help="publish this many, wait until committed, report and exit (default: until Ctrl-C)",
    )
    demo.add_argument(
        "--rate",
        type=_positive_float,
        default=None,
        help="events per second (default 50 without --events, else at once)",
    )
    for sub in (publish, demo):
        sub.add_argument("--seed", type=int, default=None, help="default: a random one (printed)")
        sub.add_argument(
            "--symbols", type=_symbols, default=None, help="default BTCUSDT,ETHUSDT,SOLUSDT"
        )
        sub.add_argument(
            "--malformed-ratio",
            type=_ratio,
            default=0.01,
            help="share of deliberately invalid entries, for the dead-letter path (default 0.01)",
        )
    publish.set_defaults(handler=_cmd_publish)
    demo.set_defaults(handler=_cmd_demo)


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for flag, (name, _, _) in _RUN_FLAGS.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"), None)
        if value is not None:
            overrides[name] = value or None if name == "marks_stream" else value
    if args.log_format:
        overrides["log_format"] = args.log_format
    if args.log_level:
        overrides["log_level"] = args.log_level
    settings = Settings()
    return settings.model_copy(update=overrides) if overrides else settings


@contextmanager
def _stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """Route SIGTERM/SIGINT to ``stop`` for the duration; restore the old handlers after."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        get_logger(component="cli").info("signal_received", signal=signal.Signals(signum).name)
        stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """The worker, always under a lease (consumer/leases.py): with PAPER_SHARDS > 0 the shards
    this process holds, one worker thread each; unsharded, the streams are one shard, so one
    process is active and others stand by to take over."""
    from consumer.leases import ShardRunner, ShardsProbe  # noqa: PLC0415 - keep `--help` fast

    log = get_logger(component="cli")
    dsn = settings.database_dsn()
    if args.migrate:
        applied = migrations.upgrade(dsn)
        log.info("migrations_checked", applied=[m.filename for m in applied])
    try:
        migrations.verify(dsn)
    except SchemaNotReadyError as exc:
        log.error("schema_not_ready", error=str(exc))
        return EXIT_ERROR
    probe = ShardsProbe.for_settings(settings)
    runner = ShardRunner(settings, archive=args.archive)
    log.info(
        "connecting",
        database=redact_url(dsn),
        redis=redact_url(settings.redis_dsn()),
        shards=settings.shards,
    )
    monitoring = _start_monitoring(settings, runner, probe)
    if monitoring is not None:
        runner.observer = monitoring.metrics
    try:
        with _stop_on_signals(runner.stop):
            return runner.run(until_idle=args.until_idle)
    finally:
        if monitoring is not None:
            monitoring.close()
        probe.close()


def _cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    dsn = settings.database_dsn()
    if args.action == "up":
        applied = migrations.upgrade(dsn, to=args.to)
        _print_lines([f"applied {m.filename}" for m in applied] or ["already up to date"])
    elif args.action == "down":
        if args.to is None:
            print("migrate down needs --to N (0 removes every object)", file=sys.stderr)
            return EXIT_USAGE
        rolled = migrations.downgrade(dsn, to=args.to)
        _print_lines([f"rolled back {m.filename}" for m in rolled] or ["nothing to roll back"])
    elif args.action == "status":
        current = migrations.status(dsn)
        lines = [
            f"applied  {a.version:03d}_{a.name}  {a.applied_at.isoformat()}  {a.duration_ms} ms"
            for a in current.applied
        ]
        lines += [f"pending  {m.filename}" for m in current.pending]
        _print_lines(lines or ["no migrations"])
    else:
        migrations.verify(dsn)
        _print_lines(["schema verified: every migration applied, every object present"])
    return 0


def _seed(args: argparse.Namespace) -> int:
    if args.seed is not None:
        return int(args.seed)
    return random.SystemRandom().randrange(1_000_000)


def _cmd_publish(args: argparse.Namespace, settings: Settings) -> int:
    from consumer.publisher import DEFAULT_SYMBOLS, Publisher  # noqa: PLC0415 - fast `--help`
    from consumer.stream import RedisError, connect  # noqa: PLC0415

    url = settings.redis_dsn()
    seed = _seed(args)
    client = connect(url, cluster=settings.redis_cluster)
    try:
        publisher = Publisher.for_settings(
            client,
            settings,
            seed=seed,
            symbols=args.symbols or DEFAULT_SYMBOLS,
            malformed_ratio=args.malformed_ratio,
            shards=settings.shards,
        )
        with _stop_on_signals(publisher.stop):
            stats = publisher.publish(args.events, rate_per_s=args.rate)
    except RedisError as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        detail = redact.scrub(detail)
        print(f"paper-consumer: cannot publish to {redact_url(url)}: {detail}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        client.close()
    print(f"published {stats.describe()} seed={seed} run={publisher.run_id} to {redact_url(url)}")
    return 0


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from consumer.demo import Demo, DemoOptions  # noqa: PLC0415 - keep `--help` fast
    from consumer.publisher import DEFAULT_SYMBOLS  # noqa: PLC0415

    options = DemoOptions(
        data_dir=args.data_dir,
        events=args.events,
        rate_per_s=args.rate,
        seed=_seed(args),
        symbols=args.symbols or DEFAULT_SYMBOLS,
        malformed_ratio=args.malformed_ratio,
    )
    demo = Demo(options, settings, sys.stdout)
    with _stop_on_signals(demo.stop):
        return demo.run()


# --------------------------------------------------------------------------------------------
# replay and export (consumer/replay.py)
# --------------------------------------------------------------------------------------------


def _stream_id_bound(text: str) -> str:
    if text in ("-", "+") or re.fullmatch(r"\d+(-\d+)?", text):
        return text
    raise argparse.ArgumentTypeError(
        f"give -, +, MS or MS-SEQ, e.g. 1700000000000-0 (got {text!r})"
    )


def _add_replay_and_export(commands: Any) -> None:
    replay = commands.add_parser(
        "replay",
        help="rebuild the paper tables from Redis, an export file or the ledger (one transaction)",
        description="Rebuild the paper tables exactly as the live worker would have written them. "
        "The target must be empty (or use --reset) and no worker may be connected to it.",
    )
    replay.add_argument(
        "--source",
        choices=["redis", "file", "ledger"],
        default="redis",
        help="redis: XRANGE of the configured streams (no consumer group touched); file: an "
        "archive from `export`; ledger: paper_event_ledger (`run --archive`). Default redis",
    )
    replay.add_argument("--file", type=Path, default=None, help="the archive for --source file")
    replay.add_argument(
        "--reset",
        action="store_true",
        help="empty the paper tables first, in the same transaction (never done silently)",
    )
    replay.add_argument(
        "--database-url",
        default=None,
        metavar="URL",
        help="write into this database instead of the configured one (not echoed)",
    )
    replay.add_argument(
        "--chunk-size", type=int, default=None, help="entries per write inside the transaction"
    )
    replay.add_argument(
        "--engine",
        choices=["bulk", "batches"],
        default="bulk",
        help="bulk (default): one fold over the whole history, rows COPYed as they become "
        "final, statistics and snapshots in SQL; batches: the live batch writer per chunk "
        "(splits a chunk PostgreSQL refuses and sets the entry aside)",
    )
    export = commands.add_parser(
        "export", help="stream a range of the streams to a JSON Lines archive (.gz: gzip)"
    )
    export.add_argument(
        "--stream",
        action="append",
        default=None,
        metavar="NAME",
        help="a stream to export (repeatable; default: the configured orders, fills, marks)",
    )
    export.add_argument("--out", type=Path, required=True, help="FILE or FILE.gz")
    for sub in (replay, export):
        sub.add_argument("--from", dest="start", type=_stream_id_bound, default="-", metavar="ID")
        sub.add_argument("--to", dest="end", type=_stream_id_bound, default="+", metavar="ID")
    replay.set_defaults(handler=_cmd_replay)
    export.set_defaults(handler=_cmd_export)


def _cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from consumer import replay  # noqa: PLC0415 - keep `--help` fast

    if args.source == "file" and args.file is None:
        print("paper-consumer: replay --source file needs --file PATH", file=sys.stderr)
        return EXIT_USAGE
    if args.database_url is not None:
        try:
            check_database_url("--database-url", args.database_url)
        except ConfigError as exc:
            print(f"paper-consumer: {exc}", file=sys.stderr)
            return EXIT_USAGE
        redact.remember_url(args.database_url)
    summary = replay.replay(
        settings,
        replay.SourceSpec(kind=args.source, path=args.file, start=args.start, end=args.end),
        target_dsn=args.database_url,
        reset=args.reset,
        chunk_size=args.chunk_size or replay.DEFAULT_CHUNK_SIZE,
        engine=args.engine,
    )
    shown = 20
    for stream, entry_id, reason in [*summary.invalid, *summary.rejected][:shown]:
        print(f"dead-lettered {stream} {entry_id}: {reason}")
    if summary.dead_lettered > shown:
        print(f"... and {summary.dead_lettered - shown} more (see the replay_entry_* log lines)")
    print(summary.describe())
    return 0


def _cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from consumer import replay  # noqa: PLC0415 - keep `--help` fast

    streams = args.stream or replay.layout(settings)[0]
    summary = replay.export(
        settings.redis_dsn(),
        streams,
        args.out,
        start=args.start,
        end=args.end,
        cluster=settings.redis_cluster,
    )
    print(summary.describe())
    return 0


# --------------------------------------------------------------------------------------------
# status, and the metrics/health endpoint of `run` (consumer/status.py, consumer/metrics.py)
# --------------------------------------------------------------------------------------------


def _add_status(commands: Any) -> None:
    status = commands.add_parser(
        "status",
        help="group lag, pending entries, dead letters, committed offsets and the last P&L",
    )
    status.add_argument("--format", choices=["text", "json"], default="text")
    status.add_argument("--group", default=None, help="consumer group to inspect (PAPER_GROUP)")
    status.set_defaults(handler=_cmd_status)


def _cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from consumer import status  # noqa: PLC0415 - keep `--help` fast

    if args.group:
        settings = settings.model_copy(update={"group": args.group})
    current = status.gather(settings)
    if args.format == "json":
        print_json(current)
    else:
        print(status.render(current))
    return 0


def _start_monitoring(settings: Settings, store: Any, stream: Any) -> Any:
    """Serve /metrics, /healthz and /readyz for ``run`` (None when PAPER_METRICS_PORT=0)."""
    if not settings.metrics_port:
        return None
    from consumer.metrics import start_monitoring  # noqa: PLC0415 - prometheus only for `run`

    # `run` got here only after migrations.verify() passed, hence schema_verified.
    return start_monitoring(settings, stream, store.ping, schema_verified=True)


# --------------------------------------------------------------------------------------------
# snapshot, report, prune (consumer/report.py, consumer/retention.py)
# --------------------------------------------------------------------------------------------


def _duration(text: str) -> Any:
    from consumer.report import parse_duration  # noqa: PLC0415 - keep `--help` fast

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _moment(text: str) -> Any:
    from consumer.report import parse_moment  # noqa: PLC0415 - keep `--help` fast

    try:
        return parse_moment(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {text})")
    return value


def _add_analytics(commands: Any) -> None:
    snapshot = commands.add_parser("snapshot", help="write a MANUAL P&L snapshot now and print it")
    snapshot.add_argument("--format", choices=["text", "json"], default="text")
    snapshot.set_defaults(handler=_cmd_snapshot)

    from consumer.performance import DEFINITIONS  # noqa: PLC0415 - stdlib only, still cheap

    report = commands.add_parser(
        "report",
        help="P&L, drawdown, round-trip statistics, Sharpe and Sortino, fill rate, fees, per "
        "symbol and in total, for a window",
        description="The P&L report of a window, per symbol and for the account (ALL), computed "
        "from the stored tables.",
        epilog=DEFINITIONS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report.add_argument(
        "--since",
        type=_moment,
        default=None,
        help="window start: a duration back from now (30m, 24h, 7d, 2w) or an ISO date or time "
        "(2026-11-20, 2026-11-20T10:00Z; UTC without an offset); default: all history",
    )
    report.add_argument(
        "--until",
        type=_moment,
        default=None,
        help="window end (excluded), in the same forms; default: no end",
    )
    report.add_argument("--format", choices=["table", "json", "csv"], default="table")
    report.add_argument(
        "--plot",
        type=Path,
        default=None,
        metavar="FILE.png",
        help="also draw the equity curve with its drawdown shaded, and P&L per symbol, from "
        "the snapshots of the window (needs matplotlib)",
    )
    report.set_defaults(handler=_cmd_report)

    prune = commands.add_parser(
        "prune",
        help="delete old HOURLY snapshots and old orders that never filled, in small batches",
    )
    prune.add_argument("--older-than", type=_duration, required=True, help="age cut-off, e.g. 90d")
    prune.add_argument(
        "--batch-size", type=_positive_int, default=5000, help="rows per DELETE (default 5000)"
    )
    prune.add_argument("--dry-run", action="store_true", help="only count what would go")
    prune.set_defaults(handler=_cmd_prune)


def _cmd_snapshot(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime  # noqa: PLC0415

    from consumer import report  # noqa: PLC0415 - keep `--help` fast

    written, row = report.take_manual_snapshot(
        settings.database_dsn(),
        group=settings.group,
        start_balance=settings.start_balance_usdt,
        now=datetime.now(UTC),
    )
    if args.format == "json":
        print_json(row)
    else:
        print(report.render_snapshot(row) + ("" if written else "\n(already existed)"))
    return 0


def _cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime  # noqa: PLC0415

    from consumer import report  # noqa: PLC0415 - keep `--help` fast

    now = datetime.now(UTC)
    since, until = report.resolve(args.since, now), report.resolve(args.until, now)
    if since is not None and until is not None and since >= until:
        print("paper-consumer: --since must be before --until", file=sys.stderr)
        return EXIT_USAGE
    summary = report.gather(settings.database_dsn(), since, until, now=now)
    print(report.RENDERERS[args.format](summary).rstrip("\n"))
    if args.plot is not None:
        report.draw(summary.snapshots, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0


def _cmd_prune(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime  # noqa: PLC0415

    from consumer import retention  # noqa: PLC0415 - keep `--help` fast

    result = retention.prune(
        settings.database_dsn(),
        datetime.now(UTC) - args.older_than,
        batch_size=args.batch_size,
        dry_run=args.dry_run,
    )
    print(result.describe())
    return 0


def _print_lines(lines: Sequence[str]) -> None:
    for line in lines:
        print(line)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``paper-consumer`` script."""
    redact.install_excepthooks()  # whatever escapes below is printed scrubbed
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        settings = _settings(args)
    except (ValidationError, ConfigError) as exc:
        # Pydantic's message names the variable and the problem, never a SecretStr value; ours
        # name the variable and never quote a URL. Scrubbed all the same.
        print(f"paper-consumer: invalid configuration: {redact.scrub(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    settings.register_secrets()
    configure(settings.log_format, settings.log_level)
    handler: Callable[[argparse.Namespace, Settings], int] = args.handler
    log = get_logger(component="cli")
    try:
        return handler(args, settings)
    except PaperConsumerError as exc:
        message = redact.scrub(str(exc))
        log.error("command_failed", command=args.command, error=message)
        print(f"paper-consumer: {message}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # a driver error nobody translated: a log event, no raw traceback
        message = redact.scrub(f"{type(exc).__name__}: {exc}".strip().splitlines()[0])
        log.error("command_crashed", command=args.command, error=message, exc_info=exc)
        print(f"paper-consumer: unexpected error: {message}", file=sys.stderr)
        return EXIT_ERROR


def print_json(value: Any) -> None:
    print(json.dumps(value, default=str, indent=2))
