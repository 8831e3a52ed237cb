"""A party's connection to the server: mTLS channel, deadlines, retries, chunked transfers.

The channel trusts the roster's server certificate only (:mod:`secagg.rpc.transport`).
When a call fails as ``UNAVAILABLE``, :meth:`Connection.call` asks
:meth:`~secagg.rpc.transport.Identity.check_server` whether the peer is the roster's
server before it retries: a peer that is not fails the party with
:class:`~secagg.errors.ServerNotAuthentic` at once, instead of retrying for minutes.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clients.reconnect import Backoff, WaitReport, describe_failure, speaker
from secagg import constants as C
from secagg.errors import SecAggError
from secagg.proto import service_pb2 as pb
from secagg.proto import service_pb2_grpc as pb_grpc
from secagg.protocol.certificates import verify_release
from secagg.rpc.errors import reason_of
from secagg.rpc.transport import Identity, join_chunks

T = TypeVar("T")
log = logging.getLogger("secagg.agent")
_RETRY = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


class Connection:
    """Stub plus retry policy; every call carries a deadline."""

    def __init__(
        self, me: Identity, address: str | None = None, *, stop: threading.Event | None = None
    ) -> None:
        self.me = me
        self.address = address
        self.stop = stop or threading.Event()
        self.channel = me.channel(address)
        self.stub = pb_grpc.AggregationStub(self.channel)  # type: ignore[no-untyped-call]
        self.health = health_pb2_grpc.HealthStub(self.channel)
        #: ``secagg client c1``: how this party names itself in its lines.
        self.who = speaker(me.roster.role_of(me.name), me.name)
        #: The server's address as dialled (the roster's, mapped through its ``[hosts]``).
        self.target = me.roster.server_target(address)
        self.connected = False  # a call got an answer since the last failure to connect

    def probe(self, *, timeout: float = C.CONNECT_TIMEOUT_SECONDS) -> None:
        """Check that the server answers within ``timeout`` s (connection, mTLS handshake
        and gRPC's health check; nothing of the protocol is sent).

        Raises
        ------
        grpc.RpcError
            ``UNAVAILABLE`` (refused, unreachable, handshake failed: the details say
            which) or ``DEADLINE_EXCEEDED`` (nothing answered in time). A server without
            the health service counts as answering.
        ServerNotAuthentic
            The peer completed no handshake because it is not the roster's server.
        """
        request = health_pb2.HealthCheckRequest()
        try:
            self.health.Check(request, timeout=timeout, wait_for_ready=False)
        except grpc.RpcError as exc:
            if not unreachable(exc):
                self.connected = True
                return  # it answered (UNIMPLEMENTED, NOT_FOUND, ...): reachable
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                self.me.check_server(self.address)
            raise
        self.connected = True

    def failure_line(self, exc: grpc.RpcError, *, timeout: float | None = None) -> str:
        """The one line that says a call failed, where and why: ``secagg admin: cannot
        reach server at ADDRESS: connection refused`` when the server cannot be reached,
        ``secagg admin: the server at ADDRESS refused: REASON: text`` otherwise."""
        why = describe_failure(exc, timeout=timeout)
        if unreachable(exc):
            return f"{self.who}: cannot reach server at {self.target}: {why}"
        return f"{self.who}: the server at {self.target} refused: {why}"

    def exit_status(self, exc: grpc.RpcError) -> int:
        """A command's exit status after ``exc``: server unreachable, or 1."""
        return C.EXIT_SERVER_UNREACHABLE if unreachable(exc) else 1

    def call(
        self,
        fn: Callable[..., T],
        request: Any,
        *,
        timeout: float = C.RPC_TIMEOUT_SECONDS,
        retry_for: float = 120.0,
    ) -> T:
        """Call a unary RPC, retrying transient failures (server restarts) for ``retry_for`` s.

        Until the server has answered (first call, or after a failure to connect) the call
        is preceded by :meth:`probe`, whose deadline doubles on every failed attempt (from
        :data:`~secagg.constants.CONNECT_TIMEOUT_SECONDS` up to ``timeout``). Failed
        attempts are reported in one line (:class:`clients.reconnect.WaitReport`) and
        spaced by :class:`clients.reconnect.Backoff`.

        Raises
        ------
        grpc.RpcError
            A failure that is not transient, one still there after ``retry_for`` s, or
            the last one when the connection was stopped while waiting.
        ServerNotAuthentic
            The call could not connect and the peer at the server's address is not the
            roster's server (its certificate failed the pinned handshake).
        """
        give_up = time.monotonic() + retry_for
        down = Backoff()  # nothing answers: pauses grow to RECONNECT_MAX_DELAY_SECONDS
        busy = Backoff(cap=C.RETRY_ANSWERED_MAX_DELAY_SECONDS)  # it answered "not now"
        report = WaitReport(self.who, self.target, log)
        connect_timeout = min(C.CONNECT_TIMEOUT_SECONDS, timeout)
        while True:
            probing = not self.connected
            try:
                if probing:
                    self.probe(timeout=connect_timeout)
                    probing = False
                result = fn(request, timeout=timeout)
            except grpc.RpcError as exc:
                if not unreachable(exc):
                    self.connected = True  # the server answered, with a refusal
                    report.succeeded()
                    raise
                self.connected = False
                if exc.code() == grpc.StatusCode.UNAVAILABLE and not probing:
                    self.me.check_server(self.address)  # (the probe checked it already)
                if time.monotonic() > give_up:
                    raise
                pause = (down if probing else busy).next()
                # the probe's deadline grows: left out, so that the reason stays the same
                why = describe_failure(exc, timeout=None if probing else timeout)
                report.failed(why, pause)
                if self.stop.wait(pause):
                    raise
                if probing:
                    connect_timeout = min(connect_timeout * 2, timeout)
                continue
            report.succeeded()
            return result

    def download(self, sha256: bytes, *, size: int | None = None) -> bytes | bytearray:
        """Fetch a blob by content hash and verify it.

        With ``size`` (when the caller knows it, e.g. a model of the deployment's length),
        the blob is received into one buffer of that size: no second copy of a blob of
        gigabytes (:meth:`_receive_into`).
        """

        def fetch(_: Any, timeout: float) -> bytes | bytearray:
            parts = self.stub.DownloadBlob(pb.BlobRequest(sha256=sha256), timeout=timeout)
            data = b"".join(p.data for p in parts) if size is None else _receive_into(parts, size)
            if hashlib.sha256(data).digest() != sha256:
                raise ValueError("downloaded blob does not match its hash")
            return data

        return self.call(fetch, None, timeout=self.me.roster.policy.transfer_timeout_seconds)

    def download_chunked(self, digest: bytes) -> Iterator[bytes]:
        """Stream a chunked envelope by its digest: the head's bytes, then each chunk's.

        Nothing is checked here: parse the head (e.g.
        :meth:`secagg.chunked.VectorHead.from_bytes`), compare its digest with the one
        you trust, then check each chunk with :func:`secagg.chunked.checked_chunks`. A
        failed stream raises ``grpc.RpcError``; restart it from the beginning.
        """
        parts = self.stub.DownloadChunked(
            pb.BlobRequest(sha256=digest), timeout=self.me.roster.policy.transfer_timeout_seconds
        )
        for part in parts:
            yield part.data

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()


def unreachable(exc: grpc.RpcError) -> bool:
    """Whether a call failed because the server could not be reached (or did not answer)."""
    return exc.code() in _RETRY


def failed_with(exc: grpc.RpcError, *errors: type[SecAggError], fallback: grpc.StatusCode) -> bool:
    """Whether a call failed with one of ``errors``, judged by the reason code it carries.

    A server that sends no rich status (no reason code) is judged by the status code
    ``fallback`` instead.
    """
    reason = reason_of(exc)
    if reason is not None:
        return reason in {error.reason for error in errors}
    return bool(exc.code() == fallback)


def _receive_into(parts: Iterable[pb.Chunk], size: int) -> bytearray:
    """The streamed chunks in one buffer of exactly ``size`` bytes; ValueError otherwise."""
    buf = bytearray(size)
    view = memoryview(buf)
    at = 0
    for part in parts:
        end = at + len(part.data)
        if end > size:
            raise ValueError(f"the blob is longer than the {size} bytes expected")
        view[at:end] = part.data
        at = end
    if at != size:
        raise ValueError(f"the blob has {at} bytes, {size} expected")
    return buf


def upload_stream(header: pb.UploadHeader, payloads: Iterable[bytes]) -> Iterator[pb.UploadRequest]:
    """Header (with the ciphertext's head) first, then one message per chunk."""
    yield pb.UploadRequest(header=header)
    for c in payloads:
        yield pb.UploadRequest(chunk=pb.Chunk(data=c))


def partial_stream(
    header: pb.PartialHeader, payloads: Iterable[bytes]
) -> Iterator[pb.PartialRequest]:
    """Header (with the partial's head) first, then one message per chunk."""
    yield pb.PartialRequest(header=header)
    for c in payloads:
        yield pb.PartialRequest(chunk=pb.Chunk(data=c))


__all__ = [
    "Connection",
    "failed_with",
    "unreachable",
    "join_chunks",
    "partial_stream",
    "upload_stream",
    "verify_release",
]
