"""The migration runner: apply, roll back, list and verify the plain-SQL migrations in ``sql/``.

Contract:
- Migrations are ``sql/migrations/NNN_<name>.sql`` with a ``NNN_<name>_rollback.sql`` twin. Each
  file is framed by a ``BEGIN;`` line and a ``COMMIT;`` line so ``psql -f`` runs it atomically; the
  runner strips that frame and runs the body *and* the ledger row in one transaction of its own.
- The ledger ``paper_schema_migrations`` (created by 001) records version, name, sha256 checksum,
  applied_at and duration. An applied file that changed afterwards stops every command with
  ``MigrationChangedError`` naming the file.
- ``pg_advisory_lock`` serialises runners: two concurrent ``upgrade`` calls apply each migration
  exactly once (the second waits, then finds nothing pending).
- ``verify`` checks that every object the worker relies on exists in the live schema.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from consumer.errors import MigrationChangedError, MigrationError, SchemaNotReadyError
from consumer.logs import get_logger

LEDGER_TABLE = "paper_schema_migrations"
# Any constant works as long as every runner uses the same one: "paper-consumer-migrate".
ADVISORY_LOCK_KEY = 0x7061706572_6D69

_FILE_RE = re.compile(r"^(?P<version>\d{3})_(?P<name>[a-z0-9_]+?)(?P<rollback>_rollback)?\.sql$")

# What `verify` expects: (catalog kind, name). Kept next to the runner so the worker's start-up
# check and `migrate verify` agree.
EXPECTED_TABLES = (
    LEDGER_TABLE,
    "paper_consumer_offsets",
    "paper_event_ledger",
    "paper_orders",
    "paper_fills",
    "paper_positions",
    "paper_pnl_snapshots",
    "paper_trading_stats",
    "paper_round_trips",
    "paper_fill_pnl",
    "paper_pnl_clock",
    "paper_stats_sums",
    "paper_shard_leases",
    "paper_shard_members",
    "paper_symbol_clocks",
    "paper_pnl_snapshot_parts",
)
EXPECTED_VIEWS = ("v_paper_recent_orders", "v_paper_active_positions", "v_paper_daily_summary")
EXPECTED_FUNCTIONS = ("get_paper_total_pnl", "get_paper_fill_rate")

log = get_logger(component="migrations")


@dataclass(frozen=True)
class Migration:
    """One numbered migration and its rollback, read from the package's ``sql/migrations``."""

    version: int
    name: str
    up_sql: str
    down_sql: str
    filename: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.up_sql.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class AppliedMigration:
    version: int
    name: str
    checksum: str
    applied_at: datetime
    duration_ms: int


@dataclass(frozen=True)
class Status:
    applied: list[AppliedMigration]
    pending: list[Migration]


def load_migrations() -> list[Migration]:
    """All migrations shipped with the package, in version order, each with its rollback."""
    folder = importlib.resources.files("consumer.sql") / "migrations"
    ups: dict[int, tuple[str, str, str]] = {}
    downs: dict[int, str] = {}
    for entry in folder.iterdir():
        match = _FILE_RE.match(entry.name)
        if match is None:
            continue
        version = int(match["version"])
        text = entry.read_text(encoding="utf-8")
        if match["rollback"]:
            downs[version] = text
        else:
            ups[version] = (match["name"], text, entry.name)
    migrations = []
    for version in sorted(ups):
        name, text, filename = ups[version]
        if version not in downs:
            raise MigrationError(f"{filename} has no rollback file ({filename[:-4]}_rollback.sql)")
        migrations.append(Migration(version, name, text, downs[version], filename))
    return migrations


def strip_transaction_frame(text: str, filename: str) -> str:
    """Return the body of a migration file without its ``BEGIN;`` / ``COMMIT;`` frame."""
    lines = text.splitlines()
    code = [i for i, line in enumerate(lines) if line.strip() and not line.strip().startswith("--")]
    if not code or lines[code[0]].strip().upper() != "BEGIN;":
        raise MigrationError(f"{filename}: the first statement must be a line 'BEGIN;'")
    if lines[code[-1]].strip().upper() != "COMMIT;":
        raise MigrationError(f"{filename}: the last statement must be a line 'COMMIT;'")
    return "\n".join(lines[code[0] + 1 : code[-1]])


@contextmanager
def _locked_connection(dsn: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    try:
        conn = psycopg.connect(dsn, autocommit=True)
    except psycopg.OperationalError as exc:
        raise MigrationError(f"cannot connect to PostgreSQL: {_first_line(exc)}") from None
    with conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        try:
            yield conn
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _ledger_exists(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (LEDGER_TABLE,)).fetchone()
    return bool(row and row[0])


def _applied(conn: psycopg.Connection[tuple[object, ...]]) -> list[AppliedMigration]:
    if not _ledger_exists(conn):
        return []
    rows = conn.execute(
        sql.SQL(
            "SELECT version, name, checksum, applied_at, duration_ms FROM {} ORDER BY version"
        ).format(sql.Identifier(LEDGER_TABLE))
    ).fetchall()
    return [AppliedMigration(*row) for row in rows]  # type: ignore[arg-type]


def _check_unchanged(applied: list[AppliedMigration], known: list[Migration]) -> None:
    by_version = {m.version: m for m in known}
    for row in applied:
        migration = by_version.get(row.version)
        if migration is None:
            raise MigrationError(
                f"the database has migration {row.version:03d}_{row.name} applied, but this "
                "version of paper-consumer does not ship it (is the worker older than the schema?)"
            )
        if migration.checksum != row.checksum.strip():
            raise MigrationChangedError(
                f"{migration.filename} was changed after it was applied (checksum "
                f"{row.checksum.strip()[:12]}… in the database, {migration.checksum[:12]}… on "
                "disk). Applied migrations are append-only: restore the file and put the change "
                "in a new migration."
            )


def status(dsn: str) -> Status:
    """Applied and pending migrations; raises ``MigrationChangedError`` on an edited file."""
    known = load_migrations()
    with _locked_connection(dsn) as conn:
        applied = _applied(conn)
    _check_unchanged(applied, known)
    done = {a.version for a in applied}
    return Status(applied, [m for m in known if m.version not in done])


def upgrade(dsn: str, *, to: int | None = None) -> list[Migration]:
    """Apply every pending migration (up to version ``to``), each in its own transaction.

    Returns the migrations applied by this call (empty when already up to date).
    """
    known = load_migrations()
    applied_now: list[Migration] = []
    with _locked_connection(dsn) as conn:
        applied = _applied(conn)
        _check_unchanged(applied, known)
        done = {a.version for a in applied}
        for migration in known:
            if migration.version in done or (to is not None and migration.version > to):
                continue
            _apply_one(conn, migration)
            applied_now.append(migration)
    return applied_now


def _apply_one(conn: psycopg.Connection[tuple[object, ...]], migration: Migration) -> None:
    body = strip_transaction_frame(migration.up_sql, migration.filename)
    started = time.perf_counter()
    try:
        with conn.transaction():
            conn.execute(body.encode("utf-8"))
            duration_ms = round((time.perf_counter() - started) * 1000)
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (version, name, checksum, duration_ms) VALUES (%s, %s, %s, %s)"
                ).format(sql.Identifier(LEDGER_TABLE)),
                (migration.version, migration.name, migration.checksum, duration_ms),
            )
    except psycopg.Error as exc:
        raise MigrationError(
            f"{migration.filename} failed and was rolled back: {_first_line(exc)}"
        ) from None
    log.info(
        "migration_applied", version=migration.version, name=migration.name, duration_ms=duration_ms
    )


def downgrade(dsn: str, *, to: int = 0) -> list[Migration]:
    """Roll back applied migrations above version ``to``, newest first, each atomically."""
    known = {m.version: m for m in load_migrations()}
    rolled_back: list[Migration] = []
    with _locked_connection(dsn) as conn:
        applied = _applied(conn)
        _check_unchanged(applied, list(known.values()))
        for row in reversed(applied):
            if row.version <= to:
                break
            migration = known[row.version]
            body = strip_transaction_frame(migration.down_sql, migration.filename)
            try:
                with conn.transaction():
                    # Forget the version first: the rollback of 001 drops the ledger itself.
                    conn.execute(
                        sql.SQL("DELETE FROM {} WHERE version = %s").format(
                            sql.Identifier(LEDGER_TABLE)
                        ),
                        (migration.version,),
                    )
                    conn.execute(body.encode("utf-8"))
            except psycopg.Error as exc:
                raise MigrationError(
                    f"rollback of {migration.filename} failed and was undone: {_first_line(exc)}"
                ) from None
            log.info("migration_rolled_back", version=migration.version, name=migration.name)
            rolled_back.append(migration)
    return rolled_back


def missing_objects(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    """Names of expected tables, views and functions absent from the connection's schema."""
    missing: list[str] = []
    for table in EXPECTED_TABLES:
        row = conn.execute(
            "SELECT 1 FROM pg_catalog.pg_tables WHERE tablename = %s "
            "AND schemaname = ANY(current_schemas(false))",
            (table,),
        ).fetchone()
        if row is None:
            missing.append(f"table {table}")
    for view in EXPECTED_VIEWS:
        row = conn.execute(
            "SELECT 1 FROM pg_catalog.pg_views WHERE viewname = %s "
            "AND schemaname = ANY(current_schemas(false))",
            (view,),
        ).fetchone()
        if row is None:
            missing.append(f"view {view}")
    for function in EXPECTED_FUNCTIONS:
        row = conn.execute(
            "SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n "
            "ON n.oid = p.pronamespace WHERE p.proname = %s "
            "AND n.nspname = ANY(current_schemas(false))",
            (function,),
        ).fetchone()
        if row is None:
            missing.append(f"function {function}()")
    return missing


def verify(dsn: str) -> None:
    """Raise ``SchemaNotReadyError`` unless every migration is applied and every object exists."""
    current = status(dsn)
    if current.pending:
        names = ", ".join(m.filename for m in current.pending)
        raise SchemaNotReadyError(
            f"the database schema is not up to date: pending {names}. "
            "Run `paper-consumer migrate up` (or start the worker with --migrate)."
        )
    try:
        with psycopg.connect(dsn) as conn:
            missing = missing_objects(conn)
    except psycopg.OperationalError as exc:
        raise MigrationError(f"cannot connect to PostgreSQL: {_first_line(exc)}") from None
    if missing:
        raise SchemaNotReadyError(
            "the ledger says every migration is applied, but the schema lacks: "
            + ", ".join(missing)
            + ". Someone changed the schema by hand; roll back and re-apply, or restore it."
        )
