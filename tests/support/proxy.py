"""A small threaded TCP proxy whose link can be cut and restored, for outage tests.

``TcpProxy`` listens on 127.0.0.1 (an ephemeral port) and forwards every connection to a target
that is either ``(host, port)`` or a Unix socket path (the embedded servers listen only on Unix
sockets). ``cut()`` closes every live connection and refuses new ones (they are accepted and
closed at once, so clients see the server go away); ``restore()`` forwards again;
``drop_next_reply()`` loses one server reply in flight and closes that connection. Real bytes to
real servers: only the network between them fails.
"""

from __future__ import annotations

import contextlib
import glob
import os
import select
import socket
import threading
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

from psycopg.conninfo import conninfo_to_dict, make_conninfo

Target = tuple[str, int] | str


class TcpProxy:
    """Forward 127.0.0.1:<port> to ``target``; see the module docstring."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._live: set[socket.socket] = set()
        self._refusing = False
        self._closed = threading.Event()
        self._drop_marker: bytes | None = None
        self.reply_dropped = threading.Event()
        self.accepted = 0
        self.refused = 0
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(
            target=self._accept_loop, name="proxy-accept", daemon=True
        )

    # -- control ---------------------------------------------------------------------------

    def start(self) -> TcpProxy:
        self._acceptor.start()
        return self

    def cut(self) -> None:
        """Close every live connection and refuse new ones until ``restore()``."""
        with self._lock:
            self._refusing = True
            live, self._live = self._live, set()
        for sock in live:
            _close(sock)

    def restore(self) -> None:
        with self._lock:
            self._refusing = False

    def drop_next_reply(self, containing: bytes) -> None:
        """Lose the next server reply that contains ``containing`` and close that connection:
        the server has executed the command, the client never hears the answer."""
        with self._lock:
            self._drop_marker = containing
            self.reply_dropped.clear()

    def close(self) -> None:
        self._closed.set()
        self.cut()
        self._acceptor.join(timeout=5)
        _close(self._listener)
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- forwarding ------------------------------------------------------------------------

    def _connect_upstream(self) -> socket.socket:
        if isinstance(self.target, str):
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.settimeout(5)
            upstream.connect(self.target)
        else:
            upstream = socket.create_connection(self.target, timeout=5)
        upstream.settimeout(None)
        return upstream

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                refusing = self._refusing
            if refusing:
                self.refused += 1
                _close(client)
                continue
            try:
                upstream = self._connect_upstream()
            except OSError:
                _close(client)
                continue
            client.settimeout(None)
            with self._lock:
                if self._refusing:  # cut while we were connecting
                    _close(client)
                    _close(upstream)
                    continue
                self._live.update((client, upstream))
                self.accepted += 1
            thread = threading.Thread(
                target=self._pump, args=(client, upstream), name="proxy-pump", daemon=True
            )
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
            thread.start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        """Copy bytes both ways until either side closes (or ``cut()`` closes both)."""
        peers = {client: upstream, upstream: client}
        try:
            while not self._closed.is_set():
                try:
                    ready, _, _ = select.select(list(peers), [], [], 0.2)
                except (OSError, ValueError):  # a socket was closed by cut()
                    return
                for sock in ready:
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    if sock is upstream and self._take_drop(data):
                        return
                    try:
                        peers[sock].sendall(data)
                    except OSError:
                        return
        finally:
            with self._lock:
                self._live.discard(client)
                self._live.discard(upstream)
            _close(client)
            _close(upstream)

    def _take_drop(self, data: bytes) -> bool:
        with self._lock:
            if self._drop_marker is None or self._drop_marker not in data:
                return False
            self._drop_marker = None
        self.reply_dropped.set()
        return True


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


# -- targets and URLs for the two servers ---------------------------------------------------


def postgres_target(conninfo: str) -> Target:
    """Where ``conninfo`` connects: (host, port), or the path of the server's Unix socket."""
    params = conninfo_to_dict(conninfo)
    host = str(params.get("host") or "/tmp")  # noqa: S108 - libpq's default socket folder
    port = params.get("port")
    if host.startswith("/"):
        if port:
            return os.path.join(host, f".s.PGSQL.{port}")
        sockets = sorted(glob.glob(os.path.join(host, ".s.PGSQL.*")))
        sockets = [s for s in sockets if not s.endswith(".lock")]
        return sockets[0] if sockets else os.path.join(host, ".s.PGSQL.5432")
    return (host, int(port or 5432))


def postgres_via(conninfo: str, proxy: TcpProxy) -> str:
    """``conninfo`` (same database, user, password) reaching the server through ``proxy``."""
    params = conninfo_to_dict(conninfo)
    params.pop("hostaddr", None)
    params.update(host="127.0.0.1", port=str(proxy.port))
    return make_conninfo(**params)  # type: ignore[arg-type]


def redis_target(url: str) -> Target:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return (parts.hostname or "127.0.0.1", parts.port or 6379)


def redis_db(url: str) -> int:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return int(parse_qs(parts.query).get("db", ["0"])[0])
    path = parts.path.strip("/")
    return int(path) if path else int(parse_qs(parts.query).get("db", ["0"])[0])


def redis_via(url: str, proxy: TcpProxy) -> str:
    """A ``redis://`` URL to the same database through ``proxy`` (password kept)."""
    parts = urlsplit(url)
    auth = ""
    if parts.password is not None:
        auth = f"{parts.username or ''}:{parts.password}@"
    return f"redis://{auth}127.0.0.1:{proxy.port}/{redis_db(url)}"
