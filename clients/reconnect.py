"""Waiting for the server: a failed call in one line, and the pauses between attempts.

A party that cannot reach the server says so in one line naming who waits, for which
address, and why (:func:`describe_failure`): ``secagg client c1: waiting for server at
127.0.0.1:7443: connection refused; retrying in 2 s``. :class:`Backoff` spaces the
attempts (doubling, with jitter, up to
:data:`~secagg.constants.RECONNECT_MAX_DELAY_SECONDS`) and :class:`WaitReport` repeats
the line only when the reason changes or every
:data:`~secagg.constants.RECONNECT_REPORT_EVERY` attempts, so a long outage writes a
few lines, not thousands. :mod:`clients.connection` uses both.

Security
--------
Nothing here decides whom to trust: the reasons are read from gRPC's own status (what
the local TLS stack and socket report, or what the peer sent back), and are shown to
the operator only. A peer's text is cut to one line of bounded length, so a malicious
server cannot forge further log lines through it.
"""

from __future__ import annotations

import logging
import re
import secrets

import grpc

from secagg import constants as C
from secagg.rpc.errors import reason_of

#: What gRPC (its C core, then the OS) reports, mapped to the words an operator reads;
#: the first pattern found in the status details wins.
_CAUSES: tuple[tuple[str, str], ...] = (
    ("Connection refused", "connection refused"),
    ("Socket closed", "the peer closed the connection during the TLS handshake"),
    ("CERTIFICATE_VERIFY_FAILED", "TLS handshake failed: not the roster's server certificate"),
    ("WRONG_VERSION_NUMBER", "TLS handshake failed: the peer does not speak TLS"),
    ("Tls handshake failed", "TLS handshake failed"),
    ("Handshake", "TLS handshake failed"),
    ("errors resolving", "cannot resolve the host name"),
    ("No route to host", "no route to host"),
    ("Network is unreachable", "network unreachable"),
    ("timed out", "connection timed out"),
    ("Connection reset", "connection reset by peer"),
)
#: Longest peer-supplied text shown in a line.
_MAX_DETAIL = 200
_ONE_LINE = re.compile(r"\s+")
_JITTER = secrets.SystemRandom()  # not a secret; the OS source is simply the house rule


def describe_failure(exc: grpc.RpcError, *, timeout: float | None = None) -> str:
    """Why a call failed, in a few words on one line (``connection refused``, ...).

    ``timeout``: the deadline the call had, named when it was exceeded. A status the
    server sent (one with a secagg reason code, or any other text) is shown as
    ``REASON: text``.
    """
    code = exc.code() if isinstance(exc, grpc.Call) else None
    details = str(exc.details() or "") if isinstance(exc, grpc.Call) else str(exc)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        within = f" within {timeout:g} s" if timeout is not None else ""
        return f"no answer{within} (deadline exceeded)"
    reason = reason_of(exc)  # a rich status: the server's own refusal
    text = one_line(details) or "no details"
    if reason is not None:
        return f"{reason}: {text}"
    if code is not None and code != grpc.StatusCode.UNAVAILABLE:
        return f"{code.name}: {text}"
    for pattern, words in _CAUSES:  # the local TLS stack's and socket's words
        if pattern in details:
            return words
    return text


def one_line(text: str) -> str:
    """A peer's text as one bounded, printable line: whitespace runs become one space,
    other non-printable characters (escape sequences) ``?``, at most ``_MAX_DETAIL``
    characters. A peer cannot forge further log lines through it."""
    flat = _ONE_LINE.sub(" ", text).strip()
    return "".join(c if c.isprintable() else "?" for c in flat)[:_MAX_DETAIL]


def speaker(role: str | None, name: str) -> str:
    """How a party names itself in a line: ``secagg client c1``, ``secagg admin``."""
    return f"secagg {name}" if role in (None, name) else f"secagg {role} {name}"


class Backoff:
    """Pauses between attempts: doubling from ``first`` up to ``cap`` (default
    :data:`~secagg.constants.RECONNECT_FIRST_DELAY_SECONDS` and
    :data:`~secagg.constants.RECONNECT_MAX_DELAY_SECONDS`), each with jitter.

    A pause is drawn uniformly in ``[d/2, d]`` of the nominal delay ``d``, so parties
    that lost the server together do not all come back at the same instant.
    """

    def __init__(self, *, first: float | None = None, cap: float | None = None) -> None:
        self.first = C.RECONNECT_FIRST_DELAY_SECONDS if first is None else first
        self.cap = C.RECONNECT_MAX_DELAY_SECONDS if cap is None else cap
        self.nominal = self.first

    def next(self) -> float:
        """The next pause (seconds); the nominal delay doubles for the one after."""
        d = self.nominal
        self.nominal = min(self.nominal * 2, self.cap)
        return _JITTER.uniform(d / 2, d)

    def reset(self) -> None:
        """Start again from the first delay (after a success)."""
        self.nominal = self.first


class WaitReport:
    """Logs ``<who>: waiting for server at <where>: <why>; retrying in <n> s`` when the
    reason changes or every ``every`` attempts, and ``<who>: connected to server at
    <where>`` once the wait ends (only if a waiting line was written)."""

    def __init__(
        self,
        who: str,
        where: str,
        log: logging.Logger,
        *,
        every: int | None = None,
    ) -> None:
        self.who = who
        self.where = where
        self.log = log
        self.every = C.RECONNECT_REPORT_EVERY if every is None else every
        self.attempts = 0
        self.reported: str | None = None
        self.since_report = 0

    def failed(self, why: str, pause: float) -> None:
        """One more failed attempt; write the line if it is news."""
        self.attempts += 1
        self.since_report += 1
        if why == self.reported and self.since_report < self.every:
            return
        self.reported, self.since_report = why, 0
        self.log.warning(
            "%s: waiting for server at %s: %s; retrying in %s s",
            self.who,
            self.where,
            why,
            f"{pause:.1f}" if pause < 10 else f"{pause:.0f}",
        )

    def succeeded(self) -> None:
        """The server answered: say so if a waiting line was written."""
        if self.reported is not None:
            self.log.info(
                "%s: connected to server at %s after %d failed attempts",
                self.who,
                self.where,
                self.attempts,
            )
        self.attempts, self.reported, self.since_report = 0, None, 0
