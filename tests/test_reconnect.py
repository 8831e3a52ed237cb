"""Waiting for the server (:mod:`clients.reconnect`): a failed call in one line, pauses
that double with jitter up to a cap, and a waiting line repeated only when it says
something new.

The failed calls are the statuses gRPC really reports (the texts below were taken from
grpcio 1.85 against a closed port, a socket that closes at once, a plain-HTTP peer and a
peer with another certificate), and a rich status as the server sends it.
"""

from __future__ import annotations

import logging

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from test_client_uploader import Refused as Failed  # a failed call as grpc raises it

from clients.reconnect import Backoff, WaitReport, describe_failure, one_line, speaker
from secagg.errors import QuorumNotMet
from secagg.rpc.errors import DOMAIN, INVALID_REASON, reason_of, to_status

LAST = "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:45931: "


U = grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(
    ("details", "words"),
    [
        (LAST + "Failed to connect to remote host: Connection refused", "connection refused"),
        (
            LAST.replace("UNKNOWN", "UNAVAILABLE") + "Handshake read failed (Socket closed)",
            "the peer closed the connection during the TLS handshake",
        ),
        (
            LAST + "Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:100000f7:"
            "SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER: Invalid certificate",
            "TLS handshake failed: the peer does not speak TLS",
        ),
        (
            LAST + "Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:"
            "SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: self signed certificate",
            "TLS handshake failed: not the roster's server certificate",
        ),
        (
            "errors resolving nosuchhost.invalid:443: [field:hostname lookup error]",
            "cannot resolve the host name",
        ),
        ("key ceremony in progress", "key ceremony in progress"),  # the server's own words
    ],
)
def test_what_grpc_reports_reads_as_a_few_words(details: str, words: str) -> None:
    assert describe_failure(Failed(U, details)) == words


def test_a_deadline_names_the_time_waited() -> None:
    late = Failed(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
    assert describe_failure(late, timeout=1.5) == "no answer within 1.5 s (deadline exceeded)"
    assert describe_failure(late) == "no answer (deadline exceeded)"


def test_a_rich_status_shows_its_reason_code() -> None:
    status = to_status(QuorumNotMet("2 of 3 key holders live"))
    failed = Failed(status.code, status.details, status.trailing_metadata)
    assert describe_failure(failed) == "QUORUM_NOT_MET: QuorumNotMet: 2 of 3 key holders live"
    denied = Failed(grpc.StatusCode.PERMISSION_DENIED, "'x' may not call this method")
    assert describe_failure(denied) == "PERMISSION_DENIED: 'x' may not call this method"


def test_a_peers_text_stays_on_one_bounded_line() -> None:
    forged = "busy\n2026-12-04 10:00:00 server INFO round 9: released" + "x" * 1000
    line = describe_failure(Failed(U, forged))
    assert "\n" not in line and len(line) <= 200


def _status_call(reason: str, *, code: int, message: str) -> Failed:
    """A failed call whose rich status a (malicious) server wrote by hand."""
    info = error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN)
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=code, message=message, details=[detail])
    trailer = ("grpc-status-details-bin", status.SerializeToString())
    return Failed(grpc.StatusCode.FAILED_PRECONDITION, message, [trailer])


def test_a_forged_reason_code_cannot_add_a_log_line() -> None:
    forged = "WRONG_ROUND\n2026-12-04 10:00:00 kh1 INFO round 9: released\x1b[2J"
    call = _status_call(forged, code=grpc.StatusCode.FAILED_PRECONDITION.value[0], message="x")
    assert reason_of(call) == INVALID_REASON
    line = describe_failure(call)
    assert line == "INVALID_REASON: x"


def test_a_status_that_contradicts_the_call_is_no_traceback() -> None:
    """grpc_status raises ValueError when the status' code differs from the call's."""
    call = _status_call("WRONG_ROUND", code=grpc.StatusCode.INTERNAL.value[0], message="y")
    assert reason_of(call) is None
    assert describe_failure(call) == "FAILED_PRECONDITION: y"


def test_control_characters_of_a_peer_are_not_printed() -> None:
    assert one_line("a\x1b[31mred\x00\tb") == "a?[31mred? b"


def test_parties_name_themselves() -> None:
    assert speaker("client", "c1") == "secagg client c1"
    assert speaker("keyholder", "kh2") == "secagg keyholder kh2"
    assert speaker("admin", "admin") == "secagg admin"


def test_pauses_double_with_jitter_up_to_the_cap() -> None:
    backoff = Backoff(first=1.0, cap=8.0)
    nominal = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    pauses = [backoff.next() for _ in nominal]
    for pause, d in zip(pauses, nominal, strict=True):
        assert d / 2 <= pause <= d
    backoff.reset()
    assert backoff.next() <= 1.0


def test_the_waiting_line_is_repeated_only_when_it_says_something_new(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("test.reconnect")
    report = WaitReport("secagg client c1", "127.0.0.1:7443", log, every=4)
    with caplog.at_level(logging.INFO, "test.reconnect"):
        for _ in range(5):
            report.failed("connection refused", 2.0)
        report.failed("key ceremony in progress", 12.0)
        report.succeeded()
    assert caplog.messages == [
        "secagg client c1: waiting for server at 127.0.0.1:7443: connection refused; "
        "retrying in 2.0 s",
        "secagg client c1: waiting for server at 127.0.0.1:7443: connection refused; "
        "retrying in 2.0 s",  # the 5th attempt: every 4
        "secagg client c1: waiting for server at 127.0.0.1:7443: key ceremony in progress; "
        "retrying in 12 s",
        "secagg client c1: connected to server at 127.0.0.1:7443 after 6 failed attempts",
    ]
