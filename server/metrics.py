"""Prometheus metrics of the server: rounds, uploads, bytes, phase durations, key holders.

``secagg serve --metrics-port N`` serves them over HTTP at ``/metrics`` (bound to
:data:`~secagg.constants.DEFAULT_METRICS_HOST` unless ``--metrics-host`` says otherwise);
without it they are still kept (a few counters) but not served. Each server has its own
:class:`~prometheus_client.CollectorRegistry`, so nothing else in the process (or a second
server in a test) mixes in.

========================================== ===============================================
``secagg_rounds_opened_total``             rounds opened (round 1 after the ceremony, then
                                           each round opened by the previous release)
``secagg_rounds_closed_total``             rounds closed (aggregate fixed, decryption asked)
``secagg_rounds_released_total``           rounds whose model was released
``secagg_round``, ``secagg_round_state``   the current round and its state
``secagg_uploads_accepted_total``          uploads accepted
``secagg_uploads_rejected_total{reason}``  uploads refused, by the error's reason code
                                           (``REPLAY_DETECTED``, ...; ``SERVER_BUSY`` for
                                           one refused because the stream limit was hit)
``secagg_bytes_received_total{stream}``    chunk bytes received (``upload``, ``partial``)
``secagg_phase_seconds{phase}``            time a round spent in each phase (histogram):
                                           ``collecting`` (open until the close is
                                           decided), ``closing`` (the aggregate completed
                                           and committed), ``decrypting`` (locks and
                                           partial decryptions), ``releasing`` (combining
                                           the partials, endorsements, the release)
``secagg_live_keyholders``                 key holders that polled within the liveness
                                           window
``secagg_decryption_budget_remaining``     coefficients the most-used key holder may still
                                           decrypt under the current key, as the server
                                           counts them
========================================== ===============================================

Security
--------
The endpoint is plain, unauthenticated HTTP: bind it to loopback (the default) or a
monitoring network. It shows what the audit log shows and less: counts, timings, reason
codes. No label carries a client or key holder name, or any text a peer chose (reasons
are the codes of secagg's own error classes), so the label sets stay bounded. The
budget figure is the server's own count (:mod:`server.epochs`); key holders enforce
their budget themselves and may stop earlier.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from threading import Lock

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram
from prometheus_client.exposition import start_http_server

from server.epochs import KeyEpochs
from server.state import Round, RoundState

#: The phases of a round, in order (see the module docstring).
PHASES = ("collecting", "closing", "decrypting", "releasing")
#: Histogram buckets of phase durations (seconds): a second to a day.
_PHASE_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
#: The reason label of an upload refused because the server was receiving its maximum.
SERVER_BUSY = "SERVER_BUSY"


class ServerMetrics:
    """The server's metrics and the hooks that move them (thread-safe)."""

    def __init__(
        self, live_keyholders: Callable[[], int], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.registry = CollectorRegistry()
        self.clock = clock
        r = self.registry
        self.opened = Counter("secagg_rounds_opened", "Rounds opened", registry=r)
        self.closed = Counter("secagg_rounds_closed", "Rounds closed", registry=r)
        self.released = Counter("secagg_rounds_released", "Rounds released", registry=r)
        self.round = Gauge("secagg_round", "The current round's number", registry=r)
        self.state = Enum(
            "secagg_round_state",
            "The current round's state",
            states=[s.name.lower() for s in RoundState],
            registry=r,
        )
        self.accepted = Counter("secagg_uploads_accepted", "Uploads accepted", registry=r)
        self.rejected = Counter(
            "secagg_uploads_rejected", "Uploads refused, by reason code", ["reason"], registry=r
        )
        self.received = Counter(
            "secagg_bytes_received", "Chunk bytes received, by stream", ["stream"], registry=r
        )
        self.phase_seconds = Histogram(
            "secagg_phase_seconds",
            "Seconds a round spent in each phase",
            ["phase"],
            buckets=_PHASE_BUCKETS,
            registry=r,
        )
        self.live = Gauge("secagg_live_keyholders", "Key holders seen recently", registry=r)
        self.live.set_function(live_keyholders)
        self.budget = Gauge(
            "secagg_decryption_budget_remaining",
            "Coefficients the most-used key holder may still decrypt under the current key",
            registry=r,
        )
        self._lock = Lock()
        self._last: tuple[int, RoundState | None] | None = None  # the last round seen
        self._phase: tuple[int, str, float] | None = None  # round, phase, since

    # ------------------------------------------------------------ rounds
    def observe(self, cur: Round | None) -> None:
        """Count the transitions since the last observation of the current round.

        The first observation after a start is the baseline: a round found open or
        closed then was not opened or closed by this process (counters start at zero).
        """
        seen = (cur.number, cur.state) if cur is not None else (0, None)
        with self._lock:
            last, self._last = self._last, seen
            if cur is not None:
                self.round.set(cur.number)
                self.state.state(cur.state.name.lower())
            if last is None or last == seen:
                return
            (was, was_state), (now, state) = last, seen
            if now > was and was > 0:
                if was_state is RoundState.COLLECTING:
                    self.closed.inc()  # closed and released between two observations
                self.released.inc()
                self._end(was)
            if state is RoundState.COLLECTING and now > was:
                self.opened.inc()
                self._enter(now, "collecting")
            elif state is RoundState.DECRYPTING and (was, was_state) == (
                now,
                RoundState.COLLECTING,
            ):
                self.closed.inc()
                self._enter(now, "decrypting")

    def entered(self, round_number: int, phase: str) -> None:
        """A round entered ``phase`` (``closing`` or ``releasing``; the others are seen by
        :meth:`observe`). A phase already passed is ignored."""
        with self._lock:
            self._enter(round_number, phase)

    def _enter(self, round_number: int, phase: str) -> None:
        now = self.clock()
        current = self._phase
        if current is not None and current[0] == round_number:
            if PHASES.index(phase) <= PHASES.index(current[1]):
                return
            self.phase_seconds.labels(current[1]).observe(now - current[2])
        self._phase = (round_number, phase, now)

    def _end(self, round_number: int) -> None:
        current = self._phase
        if current is not None and current[0] == round_number:
            self.phase_seconds.labels(current[1]).observe(self.clock() - current[2])
            self._phase = None

    # ------------------------------------------------------------ uploads, bytes, budget
    def upload_accepted(self) -> None:
        """An upload was committed."""
        self.accepted.inc()

    def upload_rejected(self, reason: str) -> None:
        """An upload was refused with a secagg reason code (or :data:`SERVER_BUSY`)."""
        self.rejected.labels(reason).inc()

    def counted(self, stream: str, payloads: Iterable[bytes]) -> Iterator[bytes]:
        """``payloads`` unchanged, their bytes added to ``bytes_received{stream}``."""
        counter = self.received.labels(stream)
        for data in payloads:
            counter.inc(len(data))
            yield data

    def track_budget(self, epochs: KeyEpochs) -> None:
        """Set the budget gauge from the partials the server accepted under the current key
        (call with the round lock held)."""
        spent = epochs.spent(epochs.current_epoch())
        self.budget.set(epochs.ctx.params.decryption_budget - max(spent.values(), default=0))

    # ------------------------------------------------------------ the endpoint
    def serve(self, port: int, host: str) -> Callable[[], None]:
        """Serve ``/metrics`` on ``host:port`` (a daemon thread); returns the stopper."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

        return stop
