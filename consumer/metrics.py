"""Prometheus metrics and the health endpoints: ``/metrics``, ``/healthz``, ``/readyz``.

``Metrics`` is the worker's ``Observer`` (see ``observer.py``): the loop reports batches,
retries, outages and heartbeats; this module turns them into counters and histograms, each in
its own ``CollectorRegistry`` (several workers in one test process do not collide). What the
loop cannot see cheaply per entry (consumer-group lag, pending entries, the dead-letter stream's
length, whether both servers answer) is refreshed every ``metrics_refresh_s`` by ``Prober``, a
daemon thread, never per entry.

- ``/healthz``: 200 while the loop is alive (it turned, or retried an outage, within
  ``health_stale_s``); 503 otherwise. A container restarts on this one.
- ``/readyz``: 200 only when the schema was verified at start and the last word about each server
  (from the worker or the prober, whichever spoke last) is "reachable"; else 503 with a short
  reason (``postgres: unreachable``) that never carries a driver message, a URL or a password.

Labels are configuration (stream names) or closed sets (type, outcome, server): never entry ids,
reasons or any free text.

Entries Redis lost before the group read them (``losses.py``) count in
``stream_gaps_total{stream}`` (each gap once) and ``stream_entries_lost_total{stream}`` (the
entries, where Redis can count them).

Lag on Redis < 7: ``XINFO GROUPS`` has no ``lag`` there, so ``RedisStream.group_state`` reports 0
when the group was delivered the stream's last entry and None otherwise; None leaves the gauge
at NaN (unknown) rather than a guess.
"""

from __future__ import annotations

import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.exposition import generate_latest

from consumer.errors import ConfigError, PaperConsumerError
from consumer.events import FillEvent, MarkEvent, OrderEvent
from consumer.logs import get_logger
from consumer.observer import Observer, Server

if TYPE_CHECKING:
    from consumer.fold import BatchResult
    from consumer.records import ParsedEntry, RawEntry
    from consumer.settings import Settings
    from consumer.stream import RedisStream

NAMESPACE = "paper_consumer"
# How a conflicting fill's or order's dead-letter reason starts (``fold.Fold``).
CONFLICT_REASON = "conflicts with stored "
SERVERS: tuple[Server, ...] = ("postgres", "redis")
BATCH_SIZE_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000)
BATCH_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

log = get_logger(component="metrics")

# No `*_created` series: they double the scrape for a timestamp no panel or alert uses.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream


def _kind(entry: ParsedEntry | None) -> str:
    if entry is None:
        return "invalid"
    event = entry.event
    if isinstance(event, OrderEvent):
        return "order"
    if isinstance(event, FillEvent):
        return "fill"
    return "mark" if isinstance(event, MarkEvent) else "invalid"


class Metrics(Observer):
    """Counters, histograms and gauges of one worker, plus its health state."""

    def __init__(
        self,
        *,
        health_stale_s: float = 60.0,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._clock = clock
        self._stale_s = health_stale_s
        self._lock = threading.Lock()
        self._last_beat: float | None = None
        self._servers: dict[str, bool | None] = dict.fromkeys(SERVERS)
        self._schema_verified = False
        self._newest_event_s = float("-inf")
        r = self.registry
        self.entries = Counter(
            "entries",
            "Stream entries processed, by stream, event type and outcome",
            ["stream", "type", "outcome"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.dead_letters = Counter(
            "dead_letters",
            "Entries dead-lettered, by source stream",
            ["stream"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.conflicting_duplicates = Counter(
            "conflicting_duplicates",
            "Entries dead-lettered because a stored fill or order has their id and other values",
            ["stream"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.retries = Counter(
            "retries",
            "Calls retried because the server was unreachable",
            ["server"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.batch_size = Histogram(
            "batch_size_entries",
            "Entries per committed batch",
            namespace=NAMESPACE,
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self.batch_duration = Histogram(
            "batch_duration_seconds",
            "Time to validate, write, commit and acknowledge one batch",
            namespace=NAMESPACE,
            buckets=BATCH_SECONDS_BUCKETS,
            registry=r,
        )
        self.last_event_time = Gauge(
            "last_committed_event_timestamp_seconds",
            "Event time (Unix seconds) of the newest entry committed",
            namespace=NAMESPACE,
            registry=r,
        )
        self.lag = Gauge(
            "group_lag_entries",
            "Entries not yet delivered to the consumer group (NaN: Redis cannot tell)",
            ["stream"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.pending = Gauge(
            "group_pending_entries",
            "Entries delivered to the group and not yet acknowledged",
            ["stream"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.stream_length = Gauge(
            "stream_length_entries",
            "XLEN of each stream",
            ["stream"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.dlq_length = Gauge(
            "dead_letter_stream_length_entries",
            "XLEN of the dead-letter stream",
            namespace=NAMESPACE,
            registry=r,
        )
        self.stream_gaps = Counter(
            "stream_gaps",
            "Gaps found in a stream: entries trimmed, deleted, or gone with the stream or the "
            "group before the group read them",
            ["stream"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.stream_entries_lost = Counter(
            "stream_entries_lost",
            "Entries known lost in those gaps (a gap Redis cannot count adds nothing)",
            ["stream"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.up = Gauge(
            "server_up",
            "1 when the server answered the last call or probe, else 0",
            ["server"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.ready = Gauge("ready", "1 when /readyz answers 200", namespace=NAMESPACE, registry=r)

    # -- Observer ---------------------------------------------------------------------------------

    def heartbeat(self) -> None:
        self._last_beat = self._clock()

    def batch_committed(
        self,
        batch: Sequence[RawEntry],
        parsed: Sequence[ParsedEntry],
        dead: Sequence[tuple[RawEntry, str]],
        results: Sequence[BatchResult],
        duration_s: float,
    ) -> None:
        self.heartbeat()
        by_key = {item.key: item for item in parsed}
        dead_reasons = {entry.key: reason for entry, reason in dead}
        dead_keys = dead_reasons.keys()
        # Duplicate fills are counted per batch by the store; they are fill entries that were
        # committed without effect, so that many fill entries are labelled "duplicate".
        duplicates = sum(result.fills_duplicate for result in results)
        tally: Tally[tuple[str, str, str]] = Tally()
        newest: datetime | None = None
        for entry in batch:
            item = by_key.get(entry.key)
            kind = _kind(item)
            if entry.key in dead_keys:
                outcome = "dead_lettered"
                self.dead_letters.labels(entry.key.stream).inc()
                if dead_reasons[entry.key].startswith(CONFLICT_REASON):
                    self.conflicting_duplicates.labels(entry.key.stream).inc()
            elif kind == "fill" and duplicates > 0:
                outcome, duplicates = "duplicate", duplicates - 1
            else:
                outcome = "committed"
            if item is not None and outcome != "dead_lettered":
                moment = item.event.timestamp
                newest = moment if newest is None or moment > newest else newest
            tally[(entry.key.stream, kind, outcome)] += 1
        for (stream, kind, outcome), count in tally.items():
            self.entries.labels(stream, kind, outcome).inc(count)
        self.batch_size.observe(len(batch))
        self.batch_duration.observe(duration_s)
        if newest is not None and newest.timestamp() > self._newest_event_s:
            self._newest_event_s = newest.timestamp()
            self.last_event_time.set(self._newest_event_s)

    def retry(self, server: Server) -> None:
        self.heartbeat()  # waiting out an outage is being alive
        self.retries.labels(server).inc()

    def server_state(self, server: Server, *, available: bool) -> None:
        with self._lock:
            self._servers[server] = available
        self.up.labels(server).set(1 if available else 0)
        self._update_ready()

    def stream_data_lost(self, stream: str, lost: int | None) -> None:
        self.stream_gaps.labels(stream).inc()
        self.stream_entries_lost.labels(stream).inc(lost or 0)

    # -- health -----------------------------------------------------------------------------------

    def schema_verified(self) -> None:
        """The start-up check (``migrations.verify``) passed."""
        self._schema_verified = True
        self._update_ready()

    def liveness(self) -> tuple[bool, str]:
        beat = self._last_beat
        if beat is None:
            return False, "worker loop not started"
        age = self._clock() - beat
        if age > self._stale_s:
            return False, f"worker loop stalled for {age:.0f} s (limit {self._stale_s:g} s)"
        return True, "ok"

    def readiness(self) -> tuple[bool, str]:
        if not self._schema_verified:
            return False, "schema not verified"
        with self._lock:
            servers = dict(self._servers)
        for server in SERVERS:
            state = servers[server]
            if state is None:
                return False, f"{server}: not checked yet"
            if not state:
                return False, f"{server}: unreachable"
        return True, "ok"

    def _update_ready(self) -> None:
        self.ready.set(1 if self.readiness()[0] else 0)

    # -- periodic refresh -------------------------------------------------------------------------

    def refresh(self, stream: RedisStream, ping_database: Callable[[], None]) -> None:
        """Probe both servers and refresh the group gauges (called by ``Prober``)."""
        try:
            states = stream.group_state()
            dlq_length, _ = stream.dead_letters(0)
        except PaperConsumerError:
            self.server_state("redis", available=False)
        else:
            self.server_state("redis", available=True)
            for state in states:
                name = state["stream"]
                self.stream_length.labels(name).set(state["length"])
                self.pending.labels(name).set(state["pending"])
                lag = state["lag"]
                self.lag.labels(name).set(float("nan") if lag is None else lag)
            self.dlq_length.set(dlq_length)
        try:
            ping_database()
        except PaperConsumerError:
            self.server_state("postgres", available=False)
        else:
            self.server_state("postgres", available=True)


class Prober(threading.Thread):
    """Calls ``Metrics.refresh`` now and then every ``interval_s`` until ``stop()``."""

    def __init__(
        self,
        metrics: Metrics,
        stream: RedisStream,
        ping_database: Callable[[], None],
        interval_s: float,
    ) -> None:
        super().__init__(name="paper-consumer-prober", daemon=True)
        self._metrics = metrics
        self._stream = stream
        self._ping = ping_database
        self._interval_s = interval_s
        self._stop_event = threading.Event()

    def run(self) -> None:
        while True:
            try:
                self._metrics.refresh(self._stream, self._ping)
            except Exception as exc:  # a probe bug must not kill the probe
                log.warning("metrics_refresh_failed", error_type=type(exc).__name__)
            if self._stop_event.wait(self._interval_s):
                return

    def stop(self) -> None:
        self._stop_event.set()


# -- HTTP ---------------------------------------------------------------------------------------


def _handler(metrics: Metrics) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/readyz"):
                ok, reason = metrics.liveness() if path == "/healthz" else metrics.readiness()
                self._send(200 if ok else 503, (reason + "\n").encode(), "text/plain")
            else:
                self._send(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Scrapes and probes every few seconds would drown the worker's own log."""

    return Handler


class MetricsServer:
    """The HTTP endpoint in a daemon thread. ``port=0`` takes a free port (see ``port``)."""

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        try:
            self._httpd = ThreadingHTTPServer((host, port), _handler(metrics))
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror} "
                "(set PAPER_METRICS_PORT to a free port, or 0 to disable)"
            ) from None
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="paper-consumer-metrics", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


@dataclass
class Monitoring:
    """Everything ``run`` starts for observability; ``close()`` stops it."""

    metrics: Metrics
    server: MetricsServer
    prober: Prober

    def close(self) -> None:
        self.prober.stop()
        self.server.close()
        self.prober.join(timeout=15)


def start_monitoring(
    settings: Settings,
    stream: RedisStream,
    ping_database: Callable[[], None],
    *,
    port: int | None = None,
    schema_verified: bool = True,
) -> Monitoring:
    """Start the endpoint on ``settings.metrics_host``/``port`` (default
    ``settings.metrics_port``) and the prober; the worker takes ``.metrics`` as its observer."""
    metrics = Metrics(health_stale_s=settings.health_stale_s)
    if schema_verified:
        metrics.schema_verified()
    server = MetricsServer(
        metrics, settings.metrics_host, settings.metrics_port if port is None else port
    ).start()
    prober = Prober(metrics, stream, ping_database, settings.metrics_refresh_s)
    prober.start()
    log.info("metrics_serving", host=settings.metrics_host, port=server.port)
    return Monitoring(metrics, server, prober)
