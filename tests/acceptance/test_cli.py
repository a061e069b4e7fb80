"""The whole CLI as a user runs it: ``python -m consumer …`` in a subprocess, real servers.

Connection settings reach the subprocess only through its environment, as in production; the
test's own PAPER_*/DATABASE_URL/REDIS_URL variables are removed first so nothing leaks in.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.support.pipeline import clean_environ, rows

REPO = Path(__file__).resolve().parents[2]


def cli(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    clean = clean_environ()
    return subprocess.run(
        [sys.executable, "-m", "consumer", *args],
        env={**clean, **(env or {})},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def stream_env(redis_url: str, stream_names: Mapping[str, str]) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "PAPER_ORDERS_STREAM": stream_names["orders_stream"],
        "PAPER_FILLS_STREAM": stream_names["fills_stream"],
        "PAPER_MARKS_STREAM": stream_names["marks_stream"],
        "PAPER_DLQ_STREAM": stream_names["dlq_stream"],
        "PAPER_CONSUMER_NAME": "acceptance",
        "PAPER_BLOCK_MS": "100",
        "PAPER_METRICS_PORT": "0",  # no endpoint: tests must not bind a fixed port
    }


def counts(line: str) -> dict[str, int]:
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)\b", line)}


SECRETS = ("s3cr3t-db-pw", "r3dis-pw", "pg-pw-var")


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["run", "--help"],
        ["migrate", "--help"],
        ["publish", "--help"],
        ["demo", "--help"],
    ],
)
def test_help_exits_0_and_shows_no_secret(args):
    env = {
        "DATABASE_URL": f"postgresql://owner:{SECRETS[0]}@db.example:5432/claire",
        "REDIS_URL": f"redis://:{SECRETS[1]}@redis.example:6379/0",
        "POSTGRES_PASSWORD": SECRETS[2],
    }
    result = cli(*args, env=env)

    assert result.returncode == 0, result.stderr
    assert "usage: paper-consumer" in result.stdout
    for secret in SECRETS:
        assert secret not in result.stdout + result.stderr


def test_migrate_up_status_verify_down(empty_db_url):
    env = {"DATABASE_URL": empty_db_url}

    up = cli("migrate", "up", env=env)
    assert up.returncode == 0, up.stderr
    assert re.findall(r"^applied (\S+)$", up.stdout, re.M) == [
        "001_initial_schema.sql",
        "002_core_tables.sql",
        "003_paper_trading_schema.sql",
        "004_round_trips_and_pnl.sql",
        "005_incremental_stats.sql",
        "006_shard_leases.sql",
        "007_symbol_clocks.sql",
        "008_fills_kept.sql",
    ]
    assert cli("migrate", "up", env=env).stdout.strip() == "already up to date"

    status = cli("migrate", "status", env=env)
    assert status.returncode == 0, status.stderr
    assert [line.split()[:2] for line in status.stdout.splitlines()] == [
        ["applied", "001_initial_schema"],
        ["applied", "002_core_tables"],
        ["applied", "003_paper_trading_schema"],
        ["applied", "004_round_trips_and_pnl"],
        ["applied", "005_incremental_stats"],
        ["applied", "006_shard_leases"],
        ["applied", "007_symbol_clocks"],
        ["applied", "008_fills_kept"],
    ]

    verify = cli("migrate", "verify", env=env)
    assert verify.returncode == 0, verify.stderr
    assert verify.stdout.startswith("schema verified")

    refused = cli("migrate", "down", env=env)
    assert refused.returncode == 2
    assert "--to" in refused.stderr

    down = cli("migrate", "down", "--to", "0", env=env)
    assert down.returncode == 0, down.stderr
    assert len(re.findall(r"^rolled back ", down.stdout, re.M)) == 8
    after = cli("migrate", "status", env=env)
    assert [line.split()[0] for line in after.stdout.splitlines()] == ["pending"] * 8
    assert cli("migrate", "verify", env=env).returncode == 1


def test_publish_then_run_until_idle_stores_every_valid_event(db_url, redis_url, stream_names):
    env = {**stream_env(redis_url, stream_names), "DATABASE_URL": db_url}

    published = cli(
        "publish", "--events", "200", "--seed", "11", "--malformed-ratio", "0.05", env=env
    )
    assert published.returncode == 0, published.stderr
    (line,) = published.stdout.splitlines()
    stats = counts(line)
    assert stats["events"] == 200
    assert stats["fills"] > 0
    assert stats["malformed"] > 0
    assert redis_url.split("@")[-1].split("/")[0] in line  # names where it published

    run = cli("--log-format", "json", "run", "--until-idle", env=env)
    assert run.returncode == 0, run.stderr

    (fills,) = rows(db_url, "SELECT count(*) AS n FROM paper_fills")
    (orders,) = rows(db_url, "SELECT count(*) AS n FROM paper_orders")
    assert fills["n"] == stats["fills"]
    assert orders["n"] == stats["new_orders"]
    import redis  # noqa: PLC0415 - only this test talks to Redis directly

    client = redis.Redis.from_url(redis_url)
    try:
        assert client.xlen(stream_names["dlq_stream"]) == stats["malformed"]
    finally:
        client.close()


def test_publish_refuses_bad_flags_and_reports_an_unreachable_redis():
    bad = cli("publish", "--symbols", "BTC-USD")
    assert bad.returncode == 2
    assert "--symbols" in bad.stderr

    down = cli("publish", "--events", "5", env={"REDIS_URL": "redis://:hidden-pw@127.0.0.1:1/0"})
    assert down.returncode == 1
    assert "cannot publish to redis://:***@127.0.0.1:1/0" in down.stderr
    assert "hidden-pw" not in down.stdout + down.stderr


@pytest.fixture
def demo_dir() -> Iterator[Path]:
    # Not tmp_path (0700, private to root): embedded PostgreSQL started by root runs as its own
    # unprivileged user, which must reach the data folder (see conftest.py).
    folder = Path(tempfile.mkdtemp(prefix="paper-demo-"))
    folder.chmod(0o755)
    yield folder / "data"
    shutil.rmtree(folder, ignore_errors=True)


def committed_fills(stdout: str) -> int:
    match = re.search(r"^committed\s+(\d+) orders, (\d+) fills", stdout, re.M)
    assert match, stdout
    return int(match[2])


@pytest.mark.slow
def test_demo_runs_reports_and_resumes(demo_dir):
    first = cli("demo", "--events", "300", "--seed", "1", "--data-dir", str(demo_dir), timeout=90)
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.splitlines()[0] == (
        "paper-consumer demo: publishing 300 events, then the summary"
        " (Ctrl-C stops it early and then prints the summary)"
    )
    assert re.search(r"^total P&L\s+-?[\d,]+\.\d\d USDT$", first.stdout, re.M), first.stdout
    assert "published   300 events" in first.stdout
    fills_after_first = committed_fills(first.stdout)
    assert fills_after_first > 0
    assert (demo_dir / "demo.log").stat().st_size > 0  # the worker logged there, not on screen
    assert '"event": "batch_committed"' not in first.stdout + first.stderr

    second = cli("demo", "--events", "100", "--data-dir", str(demo_dir), timeout=90)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "total P&L" in second.stdout
    assert committed_fills(second.stdout) > fills_after_first
