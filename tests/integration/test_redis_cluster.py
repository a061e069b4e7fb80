"""The consumer against a real three-master Redis Cluster (``PAPER_REDIS_CLUSTER=true``).

A publisher sends 4 shards' events to the cluster; two ``run --until-idle`` processes with
PAPER_SHARDS=4 share the shards; every paper table (P&L snapshots aside, as for any sharded
run: docs/scaling.md) must equal what ONE unsharded worker on a single-node Redis makes of the
same events. The shards' keys live on different nodes (asserted), so the XREADGROUP over a
shard's streams and the MULTI that dead-letters and acknowledges really go to several nodes.
Unsharded default stream names span slots: ``run`` refuses them with a clear error; one hash
tag over every name makes an unsharded worker work.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import SecretStr

from consumer import replay
from consumer.errors import ConfigError, RedisUnavailableError
from consumer.leases import ShardRunner
from consumer.publisher import Publisher
from consumer.settings import Settings
from consumer.shards import all_shard_streams, shard_settings
from consumer.stream import RedisStream, connect, slot_of
from tests.acceptance.test_cli import REPO, cli
from tests.support.cluster import Cluster
from tests.support.pipeline import (
    dead_letters,
    publish,
    rows,
    run_until_idle,
    snapshot,
    worker_env,
)

SHARDS, WORKERS, EVENTS = 4, 2, 1200
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT", "LTCUSDT")


def _publisher(client: Any, settings: Settings, shards: int) -> Publisher:
    return Publisher.for_settings(
        client,
        settings,
        seed=11,
        symbols=SYMBOLS,
        malformed_ratio=0.02,
        start=datetime(2099, 6, 1, tzinfo=UTC),
        run_id="cluster4",
        shards=shards,
    )


def _env(settings: Settings, name: str) -> dict[str, str]:
    return worker_env(
        settings, name, PAPER_REDIS_CLUSTER="true", PAPER_LEASE_TTL_S="2", PAPER_LOG_LEVEL="info"
    )


def _names(prefix: str) -> dict[str, str]:
    return {
        "orders_stream": f"{prefix}.orders",
        "fills_stream": f"{prefix}.fills",
        "marks_stream": f"{prefix}.market_data",
        "dlq_stream": f"{prefix}.dlq",
    }


def _nodes_holding(cluster: Cluster, pattern: str) -> dict[int, list[str]]:
    held: dict[int, list[str]] = {}
    for port in cluster.ports:
        with cluster.node(port) as node:
            keys = sorted(str(k) for k in node.keys(pattern))
        if keys:
            held[port] = keys
    return held


def _run_workers(settings: Settings, folder: Path) -> None:
    """``WORKERS`` processes of ``run --until-idle`` on the cluster, all exiting 0."""
    logs = [folder / f"w{i + 1}.log" for i in range(WORKERS)]
    procs = []
    for i, log in enumerate(logs):
        with log.open("wb") as out:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "consumer", "run", "--until-idle"],
                    env=_env(settings, f"w{i + 1}"),
                    cwd=REPO,
                    stdout=subprocess.DEVNULL,
                    stderr=out,
                )
            )
    codes = [proc.wait(120) for proc in procs]
    assert codes == [0] * WORKERS, [log.read_text()[-2000:] for log in logs]
    acquired = [
        json.loads(line)["shard"]
        for log in logs
        for line in log.read_text().splitlines()
        if '"shard_acquired"' in line
    ]
    assert set(acquired) == set(range(SHARDS))


def _dead_letters_per_shard(cluster: Cluster, settings: Settings) -> dict[int, int]:
    """Each shard's dead letters, checked to come from that shard's own streams."""
    client = redis.RedisCluster.from_url(cluster.url, decode_responses=True)
    try:
        per_shard = {}
        for k in range(SHARDS):
            part = shard_settings(settings, k)
            letters = dead_letters(client, part.dlq_stream)  # type: ignore[arg-type]
            assert all(letter["source_stream"] in part.streams() for letter in letters)
            per_shard[k] = len(letters)
    finally:
        client.close()
    return per_shard


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_two_sharded_workers_on_a_cluster_match_one_worker_on_one_node(
    redis_cluster: Cluster, settings: Settings, make_database: Any, tmp_path: Path
) -> None:
    prefix = f"c{uuid.uuid4().hex[:10]}"
    on_cluster = settings.model_copy(
        update={
            **_names(prefix),
            "redis_url": SecretStr(redis_cluster.url),
            "redis_cluster": True,
            "shards": SHARDS,
        }
    )
    client = connect(redis_cluster.url, cluster=True)
    try:
        stats = _publisher(client, on_cluster, SHARDS).publish(EVENTS)
    finally:
        client.close()
    assert stats.malformed > 0

    # The shards' keys are spread over the nodes; each shard's keys share one slot.
    held = _nodes_holding(redis_cluster, f"{prefix}.*")
    assert len(held) >= 2, held
    for k in range(SHARDS):
        part = shard_settings(on_cluster, k)
        assert len({slot_of(n) for n in [*part.streams(), part.dlq_stream]}) == 1
    streams = all_shard_streams(on_cluster)
    assert replay.redis_total(redis_cluster.url, streams, cluster=True) == EVENTS

    _run_workers(on_cluster, tmp_path)
    epochs = rows(on_cluster.database_dsn(), "SELECT shard, epoch FROM paper_shard_leases")
    assert sorted(r["shard"] for r in epochs) == list(range(SHARDS))

    # Malformed entries landed in their own shard's dead-letter stream, on the cluster.
    per_shard = _dead_letters_per_shard(redis_cluster, on_cluster)
    assert sum(per_shard.values()) == stats.malformed

    shown = cli("status", "--format", "json", env=_env(on_cluster, "observer"))
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert [s["shard"] for s in status["shards"]] == list(range(SHARDS))
    assert all(s["lag"] == 0 and s["pending"] == 0 for s in status["shards"])
    assert [s["dead_letters"] for s in status["shards"]] == [per_shard[k] for k in range(SHARDS)]

    reference = settings.model_copy(update={"database_url": SecretStr(make_database())})
    single = redis.Redis.from_url(reference.redis_dsn())
    try:
        _publisher(single, reference, 0).publish(EVENTS)
    finally:
        single.close()
    run_until_idle(reference)
    mine, theirs = snapshot(on_cluster.database_dsn()), snapshot(reference.database_dsn())
    mine.pop("snapshots"), theirs.pop("snapshots")
    assert len(theirs["fills"]) > 100
    for table in theirs:
        assert mine[table] == theirs[table], table


def test_unsharded_default_names_are_refused_on_a_cluster(
    redis_cluster: Cluster, settings: Settings
) -> None:
    on_cluster = settings.model_copy(
        update={
            "redis_url": SecretStr(redis_cluster.url),
            "redis_cluster": True,
            "orders_stream": "stream.orders",
            "fills_stream": "stream.fills",
            "marks_stream": "stream.market_data",
            "dlq_stream": "stream.paper_dlq",
        }
    )
    with pytest.raises(ConfigError, match=r"PAPER_SHARDS>=1") as refused:
        ShardRunner(on_cluster).run(until_idle=True)
    assert "stream.orders (slot" in str(refused.value)
    stream = RedisStream.from_settings(on_cluster)
    try:
        with pytest.raises(ConfigError, match="hash slot"):
            stream.ensure_groups()
    finally:
        stream.close()
    with redis.RedisCluster.from_url(redis_cluster.url) as client:
        assert client.exists("stream.orders", "stream.fills") == 0  # nothing was created

    ran = cli("run", "--until-idle", env=_env(on_cluster.model_copy(update={"shards": 0}), "w"))
    assert ran.returncode == 1
    assert "PAPER_SHARDS>=1" in ran.stderr


def test_one_hash_tag_lets_an_unsharded_worker_run_on_a_cluster(
    redis_cluster: Cluster, settings: Settings
) -> None:
    """Every name tagged ``{…}``: one slot, so the plain worker reads, dead-letters (MULTI:
    XADD to the dead-letter stream + XACK) and acknowledges on the cluster."""
    tag = "{" + uuid.uuid4().hex[:8] + "}"
    on_cluster = settings.model_copy(
        update={**_names(tag), "redis_url": SecretStr(redis_cluster.url), "redis_cluster": True}
    )
    client = redis.RedisCluster.from_url(redis_cluster.url, decode_responses=True)
    try:
        publish(client, on_cluster.fills_stream, {"nonsense": "1"})  # type: ignore[arg-type]
        run_until_idle(on_cluster)
        letters = dead_letters(client, on_cluster.dlq_stream)  # type: ignore[arg-type]
        assert [letter["source_stream"] for letter in letters] == [on_cluster.fills_stream]
        assert client.xpending(on_cluster.fills_stream, on_cluster.group)["pending"] == 0
    finally:
        client.delete(*_names(tag).values())
        client.close()


def test_a_dead_consumers_entries_are_claimed_on_a_cluster(
    redis_cluster: Cluster, settings: Settings, db_url: str
) -> None:
    """Claims on a cluster (XPENDING IDLE + XCLAIM JUSTID, then a drain of our own pending
    list): another consumer read every entry and died; one of them was trimmed meanwhile.
    The worker commits the others in stream order and dead-letters the trimmed one."""
    tag = "{" + uuid.uuid4().hex[:8] + "}"
    on_cluster = settings.model_copy(
        update={
            **_names(tag),
            "redis_url": SecretStr(redis_cluster.url),
            "redis_cluster": True,
            "claim_idle_s": 0.2,
        }
    )
    client = redis.RedisCluster.from_url(redis_cluster.url, decode_responses=True)
    try:
        fill = {"order_id": "o-1", "symbol": "BTCUSDT", "side": "BUY", "quantity": "1"}
        ids = [
            publish(client, on_cluster.fills_stream, {**fill, "fill_id": f"f-{n}", "price": p})  # type: ignore[arg-type]
            for n, p in enumerate(["100", "110", "90", "120"])
        ]
        client.xgroup_create(on_cluster.fills_stream, on_cluster.group, id="0")
        client.xreadgroup(on_cluster.group, "dead", {on_cluster.fills_stream: ">"})
        client.xdel(on_cluster.fills_stream, ids[0])  # trimmed while "dead" held it
        worker = run_until_idle(on_cluster)
        assert worker.totals.fills == 3
        (letter,) = dead_letters(client, on_cluster.dlq_stream)  # type: ignore[arg-type]
        assert letter["source_id"] == ids[0]
        assert "trimmed" in letter["error"]
        got = rows(db_url, "SELECT fill_id FROM paper_fills ORDER BY filled_at, fill_id")
        assert [r["fill_id"] for r in got] == ["f-1", "f-2", "f-3"]
        assert client.xpending(on_cluster.fills_stream, on_cluster.group)["pending"] == 0
    finally:
        client.delete(*_names(tag).values())
        client.close()


def test_a_cluster_setting_against_a_plain_server_or_nothing_says_which(redis_url: str) -> None:
    """A single-node server (or database other than 0) under PAPER_REDIS_CLUSTER is a
    configuration error; no node reachable is the usual outage, raised on first use (the
    worker backs off and retries it) rather than when the stream object is built."""
    plain = RedisStream(
        redis_url, streams=["{t}.a"], group="g", consumer="c", dlq_stream="{t}.d", cluster=True
    )
    try:
        with pytest.raises(ConfigError, match="cannot serve as a Redis Cluster node"):
            plain.ping()
    finally:
        plain.close()
    with pytest.raises(ConfigError, match="PAPER_REDIS_CLUSTER"):
        connect(redis_url, cluster=True)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nowhere = RedisStream(
        f"redis://127.0.0.1:{port}/0",
        streams=["{t}.a"],
        group="g",
        consumer="c",
        dlq_stream="{t}.d",
        cluster=True,
    )
    try:
        with pytest.raises(RedisUnavailableError, match="unreachable"):
            nowhere.ping()
    finally:
        nowhere.close()
