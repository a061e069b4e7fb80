"""The worker's observation seam: what it reports, to whom it may concern.

``Worker`` calls an ``Observer`` at a few well-defined points of its loop; the default does
nothing, so the loop carries no metrics code and no prometheus import. ``metrics.Metrics`` is the
Prometheus implementation (counters, histograms, health state). Contract for implementers:

- every method must return quickly, never raise and never block on I/O (the worker is
  mid-batch); with pipelined commits (``pipeline_commits``) ``batch_committed``, ``retry`` and
  ``server_state`` are also called on the worker's committer thread, so an implementation must
  be thread-safe (``metrics.Metrics`` is: prometheus_client's metrics are, the rest is locked or
  written by one thread only);
- nothing passed here is secret, but entry ids and reasons are free text: an implementation must
  not turn them into metric labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from consumer.fold import BatchResult
    from consumer.records import ParsedEntry, RawEntry

Server = str
"""``"postgres"`` or ``"redis"``."""


class Observer:
    """No-op base: subclass and override what you need."""

    def heartbeat(self) -> None:
        """The loop turned once (also called while it waits out an outage)."""

    def batch_committed(
        self,
        batch: Sequence[RawEntry],
        parsed: Sequence[ParsedEntry],
        dead: Sequence[tuple[RawEntry, str]],
        results: Sequence[BatchResult],
        duration_s: float,
    ) -> None:
        """A batch was committed and acknowledged.

        ``batch`` is every entry read; ``parsed`` those that passed validation; ``dead`` those
        dead-lettered (invalid, poison, or rejected by PostgreSQL), with the reason; the rest of
        ``parsed`` was committed (``results`` count the duplicate fills among them).
        """

    def retry(self, server: Server) -> None:
        """A call to ``server`` failed because it is unreachable and will be retried."""

    def server_state(self, server: Server, *, available: bool) -> None:
        """``server`` became unreachable (``available=False``) or reachable again."""

    def stream_data_lost(self, stream: str, lost: int | None) -> None:
        """Entries of ``stream`` were removed in Redis before the group read them (once per
        gap; ``lost``: how many, None when Redis cannot tell; see ``losses.py``)."""
