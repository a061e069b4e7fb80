"""Configuration: environment variables (pydantic-settings), overridden by CLI flags.

Our own settings use the ``PAPER_`` prefix and name their units (``batch_max_wait_ms``,
``claim_idle_s``). Connection settings also accept the names the trading bot's compose file
already uses (``DATABASE_URL``/``REDIS_URL``, ``POSTGRES_HOST``/``PORT``/``DB``/``USER``/
``PASSWORD``, ``REDIS_HOST``/``PORT``/``PASSWORD``/``DB``, and ``*_PASSWORD_FILE`` for secrets
mounted as files). Passwords are ``SecretStr`` so they never print; ``redact_url`` hides the one
inside a URL before it reaches a log line or an error message (``consumer/redact.py``).

``DATABASE_URL`` and ``REDIS_URL`` are checked when the settings are made: one that cannot be
parsed, or that libpq and urllib would read differently (an unescaped ``@`` in the password), is
a ``ConfigError`` naming the variable and never quoting the URL.
"""

from __future__ import annotations

import os
import re
import socket
from decimal import Decimal
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlsplit

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from consumer import redact
from consumer.errors import ConfigError

redact_url = redact.redact_url  # where stream.py and older callers import it from

LogFormat = Literal["auto", "json", "console"]


def _read_secret_file(path: str | None) -> SecretStr | None:
    if not path:
        return None
    try:
        return SecretStr(Path(path).read_text(encoding="utf-8").strip())
    except OSError as exc:
        # The path is not secret; its content is. Name the file, never what is inside.
        raise ConfigError(f"cannot read secret file {path!r}: {exc.strerror}") from None


_IN_URI = re.compile(r'\s*in URI: ".*"$', re.DOTALL)
_ESCAPES = (
    "percent-encode them in the user name and password: "
    "'@' as %40, '/' as %2F, '?' as %3F, '#' as %23"
)


def _check_user_info(variable: str, url: str) -> None:
    """Refuse a URL that libpq and urllib would cut in different places: libpq ends the user
    info at the FIRST '@' (an unescaped '@' in the password makes the rest of it a host name,
    printed in the next error), urllib at the last."""
    rest = url.split("://", 1)[1]
    ats = rest.count("@")
    if ats > 1:
        raise ConfigError(f"{variable} has more than one '@' (one ends the user info); {_ESCAPES}")
    if ats == 1 and any(mark in rest[: rest.index("@")] for mark in "/?#"):
        raise ConfigError(f"{variable} has a '/', '?' or '#' before its '@'; {_ESCAPES}")


def check_database_url(variable: str, url: str) -> None:
    """``ConfigError`` (naming ``variable``, never quoting the URL) unless libpq can parse
    ``url`` (a ``postgresql://`` URL or a ``key=value`` string) and reads it as urllib does."""
    from psycopg import ProgrammingError  # noqa: PLC0415 - libpq's parser, only when needed
    from psycopg.conninfo import conninfo_to_dict  # noqa: PLC0415

    if "://" in url:
        if url.split("://", 1)[0].lower() not in ("postgresql", "postgres"):
            raise ConfigError(f"{variable} must be a postgresql:// URL or a libpq key=value string")
        _check_user_info(variable, url)
    try:
        conninfo_to_dict(url)
    except ProgrammingError as exc:
        reason = _IN_URI.sub("", redact.scrub(str(exc).strip(), url))  # libpq quotes it whole
        raise ConfigError(f"{variable} is not a valid PostgreSQL URL: {reason}") from None


def check_redis_url(variable: str, url: str) -> None:
    """``ConfigError`` (naming ``variable``, never quoting the URL) unless ``url`` is a
    ``redis://``, ``rediss://`` or ``unix://`` URL that parses, port included."""
    if "://" not in url or url.split("://", 1)[0].lower() not in ("redis", "rediss", "unix"):
        raise ConfigError(f"{variable} must be a redis://, rediss:// or unix:// URL")
    _check_user_info(variable, url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        reason = redact.scrub(str(exc), url)
        raise ConfigError(f"{variable} is not a valid Redis URL: {reason}") from None
    try:
        _ = parts.port
    except ValueError:  # this one quotes the port, which may be a piece of a password
        raise ConfigError(f"{variable} has a port that is not a number from 0 to 65535") from None


def _variable(name: str) -> str:
    """The variable a URL came from: ``name`` (which wins when both are set) or PAPER_<name>."""
    prefixed = f"PAPER_{name}"
    return prefixed if prefixed in os.environ and name not in os.environ else name


class Settings(BaseSettings):
    """Everything the worker and the CLI can be told. See README "Configuration"."""

    model_config = SettingsConfigDict(env_prefix="PAPER_", extra="ignore", populate_by_name=True)

    # --- PostgreSQL -------------------------------------------------------------------------
    database_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "PAPER_DATABASE_URL")
    )
    postgres_host: str | None = Field(default=None, validation_alias="POSTGRES_HOST")
    postgres_port: int = Field(default=5432, validation_alias="POSTGRES_PORT")
    postgres_db: str = Field(default="claire_de_binare", validation_alias="POSTGRES_DB")
    postgres_user: str = Field(default="claire_user", validation_alias="POSTGRES_USER")
    postgres_password: SecretStr | None = Field(default=None, validation_alias="POSTGRES_PASSWORD")
    postgres_password_file: str | None = Field(
        default=None, validation_alias="POSTGRES_PASSWORD_FILE"
    )
    postgres_sslmode: str | None = Field(default=None, validation_alias="POSTGRES_SSLMODE")

    # --- Redis ------------------------------------------------------------------------------
    redis_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "PAPER_REDIS_URL")
    )
    redis_host: str = Field(default="127.0.0.1", validation_alias="REDIS_HOST")
    redis_port: int = Field(default=6379, validation_alias="REDIS_PORT")
    redis_db: int = Field(default=0, validation_alias="REDIS_DB")
    redis_password: SecretStr | None = Field(default=None, validation_alias="REDIS_PASSWORD")
    redis_password_file: str | None = Field(default=None, validation_alias="REDIS_PASSWORD_FILE")
    # A Redis Cluster: the URL names one node (database 0), redis-py finds the others. Needs
    # PAPER_SHARDS >= 1 (or hash-tagged stream names): see docs/scaling.md.
    redis_cluster: bool = False

    # --- Streams ----------------------------------------------------------------------------
    orders_stream: str = "stream.orders"
    fills_stream: str = "stream.fills"
    marks_stream: str | None = "stream.market_data"
    dlq_stream: str = "stream.paper_dlq"
    group: str = "paper-consumer"
    consumer_name: str = Field(default_factory=socket.gethostname)
    group_start_id: str = "0"
    # The bot appends every execution result to stream.fills AND to stream.order_results (an
    # audit copy). Off by default: subscribe to one of the two. Reading both is harmless (a
    # result read twice derives no second fill) but doubles the work.
    results_stream: str | None = None

    # --- Batching and delivery --------------------------------------------------------------
    # Adaptive batch size (consumer/batch_size.py, issue 20): the limit starts at
    # batch_min_entries, doubles after each batch whose reads came back full (a backlog) up to
    # batch_max_entries, and halves back after one that did not; batch_max_bytes (field names
    # and values, estimated from the last batch) and batch_max_duration_ms (at most lease_ttl_s
    # / 5: a batch holds its lease row until COMMIT, and the renewal waits) bound it too.
    # batch_min_entries above batch_max_entries means batch_max_entries: a fixed size. A read
    # asks each stream for at least one entry, so a batch holds at most max(limit, number of
    # streams) entries.
    batch_max_entries: int = Field(default=20_000, ge=1, le=100_000)
    batch_min_entries: int = Field(default=1000, ge=1, le=100_000)
    batch_max_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    batch_max_duration_ms: int = Field(default=1000, ge=1)
    # 0: a batch is what has arrived by the time the worker reads (up to batch_max_entries).
    # Batches still grow with the load — entries pile up while the previous batch commits — so
    # waiting for more only adds latency (bench/latency.py: p99 33 ms at 0 against 40-43 ms at
    # 5, docs/benchmarks.md); a backlog fills each batch at once either way.
    batch_max_wait_ms: int = Field(default=0, ge=0)
    block_ms: int = Field(default=1000, ge=1)
    claim_idle_s: float = Field(default=60.0, gt=0)
    claim_interval_s: float = Field(default=10.0, gt=0)
    max_deliveries: int = Field(default=5, ge=1)
    # Overlap the commit of a batch with reading and parsing the next (consumer/worker.py): a
    # committer thread writes, commits and acks batch N while the next is read and parsed; one
    # batch in flight, acked after its commit, in read order. Off by default: measured no
    # faster on a backlog and p99 33.7 ms against 16.0 at 1,000 ev/s (docs/benchmarks.md).
    pipeline_commits: bool = False

    # --- Sharding (consumer/shards.py, consumer/leases.py; docs/scaling.md) ------------------
    # 0: the plain streams, as always. N: the streams `<name>.{0}` .. `<name>.{N-1}`, each
    # owned by one worker at a time through a lease that expires lease_ttl_s after its last
    # renewal (renewed every lease_ttl_s / 3): a dead worker's shards move within that time.
    shards: int = Field(default=0, ge=0, le=1024)
    lease_ttl_s: float = Field(default=10.0, ge=0.5)

    # --- Resilience -------------------------------------------------------------------------
    retry_initial_ms: int = Field(default=100, ge=1)
    retry_max_ms: int = Field(default=10_000, ge=1)
    shutdown_grace_s: float = Field(default=30.0, gt=0)

    # --- Metrics and health (HTTP: /metrics, /healthz, /readyz) ------------------------------
    metrics_port: int = Field(default=9108, ge=0, le=65535)  # 0 disables the endpoint
    # All interfaces: in a container the scraper and the health probe come from outside.
    metrics_host: str = "0.0.0.0"  # noqa: S104 - see above; set 127.0.0.1 on a shared host
    metrics_refresh_s: float = Field(default=5.0, gt=0)  # lag/pending/readiness probe period
    health_stale_s: float = Field(default=60.0, gt=0)  # /healthz fails when the loop stalls

    # --- P&L ------------------------------------------------------------------------------
    start_balance_usdt: Decimal | None = Field(default=None, ge=0)
    # Fee of a fill derived from a bot result that reports no fee_amount, as a fraction of the
    # notional (0.001 = 0.1 %): PAPER_BOT_DEFAULT_FEE_RATE.
    bot_default_fee_rate: Decimal = Field(default=Decimal(0), ge=0, lt=1)

    # --- Logs -------------------------------------------------------------------------------
    log_format: LogFormat = "auto"
    log_level: str = "info"

    @model_validator(mode="after")
    def _secrets_from_files(self) -> Settings:
        if self.postgres_password is None:
            self.postgres_password = _read_secret_file(self.postgres_password_file)
        if self.redis_password is None:
            self.redis_password = _read_secret_file(self.redis_password_file)
        return self

    @model_validator(mode="after")
    def _urls_parse(self) -> Settings:
        if self.database_url is not None:
            check_database_url(_variable("DATABASE_URL"), self.database_url.get_secret_value())
        if self.redis_url is not None:
            check_redis_url(_variable("REDIS_URL"), self.redis_url.get_secret_value())
        return self

    def register_secrets(self) -> None:
        """Tell ``redact`` every secret these settings hold (the URLs, the passwords), so that
        no log line, message or traceback of this process can print one."""
        for url in (self.database_url, self.redis_url):
            if url is not None:
                redact.remember_url(url.get_secret_value())
        for password in (self.postgres_password, self.redis_password):
            if password is not None:
                redact.remember(password.get_secret_value())

    # --- Derived connection strings (contain secrets: never log them, use redact_url) -------
    def database_dsn(self) -> str:
        """The PostgreSQL connection string: DATABASE_URL, else one built from POSTGRES_*."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        if self.postgres_host is None:
            raise ConfigError(
                "no database configured: set DATABASE_URL (postgresql://user:pass@host:5432/db) "
                "or POSTGRES_HOST/POSTGRES_PORT/POSTGRES_DB/POSTGRES_USER/POSTGRES_PASSWORD"
            )
        password = self.postgres_password.get_secret_value() if self.postgres_password else ""
        auth = quote(self.postgres_user, safe="")
        if password:
            auth += ":" + quote(password, safe="")
        database = quote(self.postgres_db, safe="")
        query: list[str] = []
        if self.postgres_host.startswith("/"):  # a unix-socket directory, as libpq accepts
            dsn = f"postgresql://{auth}@/{database}"
            query += [f"host={quote(self.postgres_host)}", f"port={self.postgres_port}"]
        else:
            dsn = f"postgresql://{auth}@{self.postgres_host}:{self.postgres_port}/{database}"
        if self.postgres_sslmode:
            query.append(f"sslmode={quote(self.postgres_sslmode)}")
        return dsn + ("?" + "&".join(query) if query else "")

    def redis_dsn(self) -> str:
        """The Redis URL: REDIS_URL, else one built from REDIS_HOST/PORT/DB/PASSWORD."""
        if self.redis_url is not None:
            return self.redis_url.get_secret_value()
        auth = ""
        if self.redis_password is not None:
            auth = ":" + quote(self.redis_password.get_secret_value(), safe="") + "@"
        return f"redis://{auth}{self.redis_host}:{self.redis_port}/{self.redis_db}"

    def streams(self) -> list[str]:
        """Every stream the worker subscribes to, in a fixed order."""
        names = [self.orders_stream, self.fills_stream]
        if self.results_stream:
            names.append(self.results_stream)
        if self.marks_stream:
            names.append(self.marks_stream)
        return names

    def child_environ(self) -> dict[str, str]:
        """The variables that give a ``paper-consumer run`` child process these settings'
        servers, streams, group, consumer name and shards (what benchmarks and tests start
        workers with). They hold the connection strings' secrets: for a child's environment,
        never for a log."""
        return {
            "DATABASE_URL": self.database_dsn(),
            "REDIS_URL": self.redis_dsn(),
            "PAPER_REDIS_CLUSTER": "true" if self.redis_cluster else "false",
            "PAPER_ORDERS_STREAM": self.orders_stream,
            "PAPER_FILLS_STREAM": self.fills_stream,
            "PAPER_RESULTS_STREAM": self.results_stream or "",
            "PAPER_MARKS_STREAM": self.marks_stream or "",
            "PAPER_DLQ_STREAM": self.dlq_stream,
            "PAPER_GROUP": self.group,
            "PAPER_CONSUMER_NAME": self.consumer_name,
            "PAPER_SHARDS": str(self.shards),
        }
