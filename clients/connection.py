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

    def call(
        self,
        fn: Callable[..., T],
        request: Any,
        *,
        timeout: float = C.RPC_TIMEOUT_SECONDS,
        retry_for: float = 120.0,
    ) -> T:
        """Call a unary RPC, retrying transient failures (server restarts) for ``retry_for`` s.

        Raises
        ------
        ServerNotAuthentic
            The call could not connect and the peer at the server's address is not the
            roster's server (its certificate failed the pinned handshake).
        """
        give_up = time.monotonic() + retry_for
        delay = 0.2
        while True:
            try:
                return fn(request, timeout=timeout)
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.UNAVAILABLE:
                    self.me.check_server(self.address)
                if exc.code() not in _RETRY or time.monotonic() > give_up:
                    raise
                if self.stop.wait(delay):
                    raise
                delay = min(delay * 2, 2.0)

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
    "join_chunks",
    "partial_stream",
    "upload_stream",
    "verify_release",
]
