"""A party's connection to the server: mTLS channel, deadlines, retries, chunked transfers."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from secagg import constants as C
from secagg.protocol.roster import Roster
from secagg.proto import service_pb2 as pb
from secagg.proto import service_pb2_grpc as pb_grpc
from secagg.protocol.signing import release_digest, verify
from secagg.rpc.transport import Identity, chunks, join_chunks

T = TypeVar("T")
log = logging.getLogger("secagg.agent")
_RETRY = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


class Connection:
    """Stub plus retry policy; every call carries a deadline."""

    def __init__(
        self, me: Identity, address: str | None = None, *, stop: threading.Event | None = None
    ) -> None:
        self.me = me
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
        """Call a unary RPC, retrying transient failures (server restarts) for ``retry_for`` s."""
        give_up = time.monotonic() + retry_for
        delay = 0.2
        while True:
            try:
                return fn(request, timeout=timeout)
            except grpc.RpcError as exc:
                if exc.code() not in _RETRY or time.monotonic() > give_up:
                    raise
                if self.stop.wait(delay):
                    raise
                delay = min(delay * 2, 2.0)

    def download(self, sha256: bytes) -> bytes:
        """Fetch a blob by content hash and verify it."""

        def fetch(_: Any, timeout: float) -> bytes:
            parts = self.stub.DownloadBlob(pb.BlobRequest(sha256=sha256), timeout=timeout)
            data = b"".join(p.data for p in parts)
            if hashlib.sha256(data).digest() != sha256:
                raise ValueError("downloaded blob does not match its hash")
            return data

        return self.call(fetch, None, timeout=C.TRANSFER_TIMEOUT_SECONDS)

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()


def verify_release(release: pb.Release, roster: Roster) -> None:
    """Check the server's signature on a release; raises SignatureInvalid."""
    verify(
        roster.server.signing_public_key,
        release.server_signature,
        release_digest(
            deployment_id=roster.deployment_id,
            round_number=release.round,
            model_hash=release.model_hash,
            aggregate_digest=release.aggregate_digest,
            quorum=list(release.quorum),
            partial_digests=list(release.partial_digests),
        ),
        who="server",
    )


def blob_header(data: bytes) -> pb.BlobHeader:
    """Size and hash of a blob about to be streamed."""
    return pb.BlobHeader(total_size=len(data), sha256=hashlib.sha256(data).digest())


def upload_stream(header: pb.UploadHeader, data: bytes) -> Iterator[pb.UploadRequest]:
    """Header first, then the chunks."""
    yield pb.UploadRequest(header=header)
    for c in chunks(data):
        yield pb.UploadRequest(chunk=c)


def partial_stream(header: pb.PartialHeader, data: bytes) -> Iterator[pb.PartialRequest]:
    """Header first, then the chunks."""
    yield pb.PartialRequest(header=header)
    for c in chunks(data):
        yield pb.PartialRequest(chunk=c)


__all__ = [
    "Connection",
    "blob_header",
    "join_chunks",
    "partial_stream",
    "upload_stream",
    "verify_release",
]
