"""Sharding as a user runs it: ``publish --shards``, ``run`` with PAPER_SHARDS, ``status``."""

from __future__ import annotations

import json

from consumer.shards import entry_symbol, shard_key, shard_of
from tests.acceptance.test_cli import cli, stream_env
from tests.support.pipeline import rows


def test_sharded_publish_run_and_status(db_url, redis_url, stream_names, redis_client):
    base = {**stream_env(redis_url, stream_names), "DATABASE_URL": db_url}
    sharded = {**base, "PAPER_SHARDS": "4", "PAPER_LEASE_TTL_S": "1"}
    names = [n for key, n in stream_names.items() if key != "dlq_stream"]
    keys = [shard_key(n, k) for n in [*names, stream_names["dlq_stream"]] for k in range(4)]
    try:
        published = cli(
            "publish", "--events", "300", "--seed", "5", "--shards", "4",
            "--symbols", "BTCUSDT,ETHUSDT,SOLUSDT,BNBUSDT,DOGEUSDT", env=base,
        )  # fmt: skip
        assert published.returncode == 0, published.stderr
        assert all(redis_client.xlen(n) == 0 for n in names)  # nothing on the plain streams
        for k in range(4):
            for name in names:
                for _, fields in redis_client.xrange(shard_key(name, k)):
                    symbol = entry_symbol(fields)
                    assert symbol is None or shard_of(symbol, 4) == k

        ran = cli("run", "--until-idle", env=sharded)
        assert ran.returncode == 0, ran.stderr
        logged = [json.loads(line)["event"] for line in ran.stderr.splitlines()]
        assert logged.count("shard_acquired") == 4
        assert logged[-1] == "shard_runner_stopped"
        assert rows(db_url, "SELECT count(*) AS n FROM paper_fills")[0]["n"] > 20

        shown = cli("status", "--format", "json", env=sharded)
        assert shown.returncode == 0, shown.stderr
        shards = json.loads(shown.stdout)["shards"]
        assert [s["shard"] for s in shards] == [0, 1, 2, 3]
        assert all(s["lag"] == 0 and s["pending"] == 0 for s in shards)
        assert all(s["owner"] is None and s["epoch"] == 1 for s in shards)  # released at exit
        text = cli("status", env=sharded)
        assert "shards (4)" in text.stdout
    finally:
        redis_client.delete(*keys)
