"""The server's metrics (:mod:`server.metrics`): transitions counted once, phases timed in
order, bytes counted as they stream, the endpoint on loopback by default.

The rounds are the server's own :class:`~server.state.Round` values made by its pure
transition functions; the clock is stepped by the test. The end-to-end check (a real
server scraped during a round) is ``tests/integration/test_operability.py``.
"""

from __future__ import annotations

import socket
import urllib.request
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from server.metrics import SERVER_BUSY, ServerMetrics
from server.state import Round, after_release, closed, open_round, released

POLICY = SimpleNamespace(round_timeout_seconds=60.0, rounds=2)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _value(m: ServerMetrics, name: str, **labels: str) -> float:
    value = m.registry.get_sample_value(name, labels or None)
    return 0.0 if value is None else value


def _round_trip() -> tuple[Round, Round, Round, Round]:
    """Round 1 collecting, decrypting; then round 2 open; then FINISHED after round 2."""
    r1 = open_round(1, bytes(32), policy=POLICY, now=0)  # type: ignore[arg-type]
    d1 = closed(r1, aggregate_hash=b"a", aggregate_digest=b"a", count=2)
    r2 = after_release(released(d1, release=b"r", model_hash=b"m"), b"m", policy=POLICY, now=1)  # type: ignore[arg-type]
    d2 = closed(r2, aggregate_hash=b"b", aggregate_digest=b"b", count=2)
    return r1, d1, r2, d2


def test_each_transition_is_counted_once_and_each_phase_timed() -> None:
    clock = Clock()
    m = ServerMetrics(lambda: 3, clock=clock)
    r1, d1, r2, _ = _round_trip()
    m.observe(None)  # a fresh server: no round yet (the baseline)
    m.observe(r1)
    m.observe(r1)  # seen again: nothing new
    assert _value(m, "secagg_rounds_opened_total") == 1
    clock.now += 10
    m.entered(1, "closing")
    clock.now += 2
    m.observe(d1)
    m.observe(d1)
    assert _value(m, "secagg_rounds_closed_total") == 1
    clock.now += 5
    m.entered(1, "releasing")
    m.entered(1, "decrypting")  # a phase already passed: ignored
    clock.now += 1
    m.observe(r2)
    assert _value(m, "secagg_rounds_released_total") == 1
    assert _value(m, "secagg_rounds_opened_total") == 2
    assert _value(m, "secagg_round") == 2
    assert _value(m, "secagg_round_state", secagg_round_state="collecting") == 1
    for phase, seconds in (("collecting", 10), ("closing", 2), ("decrypting", 5), ("releasing", 1)):
        assert _value(m, "secagg_phase_seconds_count", phase=phase) == 1, phase
        assert _value(m, "secagg_phase_seconds_sum", phase=phase) == seconds, phase
    assert _value(m, "secagg_live_keyholders") == 3


def test_a_restarted_server_counts_nothing_it_did_not_see() -> None:
    m = ServerMetrics(lambda: 0, clock=Clock())
    _, d1, r2, _ = _round_trip()
    m.observe(d1)  # found decrypting at start: neither opened nor closed here
    assert _value(m, "secagg_rounds_opened_total") == 0
    assert _value(m, "secagg_rounds_closed_total") == 0
    m.observe(r2)  # ... but its release happened here
    assert _value(m, "secagg_rounds_released_total") == 1
    assert _value(m, "secagg_phase_seconds_count", phase="decrypting") == 0  # start unknown


def test_a_round_closed_and_released_between_two_observations_counts_both() -> None:
    m = ServerMetrics(lambda: 0, clock=Clock())
    r1, _, r2, _ = _round_trip()
    m.observe(None)
    m.observe(r1)
    m.observe(r2)
    assert _value(m, "secagg_rounds_closed_total") == 1
    assert _value(m, "secagg_rounds_released_total") == 1
    assert _value(m, "secagg_rounds_opened_total") == 2


def test_uploads_by_reason_and_bytes_as_they_stream() -> None:
    m = ServerMetrics(lambda: 0)
    m.upload_accepted()
    m.upload_rejected("REPLAY_DETECTED")
    m.upload_rejected("REPLAY_DETECTED")
    m.upload_rejected(SERVER_BUSY)
    chunks = m.counted("upload", iter([b"abc", b"defgh"]))
    assert _value(m, "secagg_bytes_received_total", stream="upload") == 0  # lazy
    assert list(chunks) == [b"abc", b"defgh"]
    assert _value(m, "secagg_bytes_received_total", stream="upload") == 8
    assert _value(m, "secagg_uploads_accepted_total") == 1
    assert _value(m, "secagg_uploads_rejected_total", reason="REPLAY_DETECTED") == 2
    assert _value(m, "secagg_uploads_rejected_total", reason=SERVER_BUSY) == 1


def test_two_servers_in_one_process_do_not_share_metrics() -> None:
    a, b = ServerMetrics(lambda: 0), ServerMetrics(lambda: 0)
    a.upload_accepted()
    assert _value(a, "secagg_uploads_accepted_total") == 1
    assert _value(b, "secagg_uploads_accepted_total") == 0


def test_the_endpoint_serves_the_text_format_and_stops() -> None:
    m = ServerMetrics(lambda: 2)
    m.upload_rejected("WRONG_ROUND")
    port = free_port()
    stop = m.serve(port, "127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
    finally:
        stop()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"secagg_uploads_rejected", "secagg_live_keyholders", "secagg_phase_seconds"} <= names
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
