"""The gRPC servicer: authenticates the peer, maps RPCs to the round manager, maps errors.

Every RPC first resolves the caller's role from its certificate and the roster: the
CA-verified certificate must name its party (common name among its DNS names) and carry
``clientAuth`` only (:func:`secagg.rpc.transport.peer_name`); a certificate that does not,
or a caller in the wrong role, gets PERMISSION_DENIED. Library errors cross the wire
as rich statuses (:func:`secagg.rpc.errors.abort_with`): the status code comes from the
error's class, the details carry its machine-readable reason, and the message keeps
``"ClassName: text"`` so people see *why* (e.g. ``ReplayDetected: ...``).

Uploads and partials stream in as a header carrying the envelope's head, then one message
per chunk; each chunk is checked and written to disk as it arrives (O(chunk) memory per
stream). At most :func:`max_upload_streams` uploads stream at once (a memory budget of a
few chunks each, and never every worker thread); one more is refused with
RESOURCE_EXHAUSTED and the client retries later. ``DownloadChunked`` serves a stored
envelope as its head, then its chunks, read one at a time from its file.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import NoReturn, Protocol, TypeVar

import grpc

from secagg import constants as C
from secagg.errors import AuditWriteFailed, PermissionDenied, SecAggError
from secagg.params import Parameters
from secagg.proto import service_pb2 as pb
from secagg.proto import service_pb2_grpc as pb_grpc
from secagg.protocol.stored_chunks import open_stored
from secagg.rpc.errors import abort_with
from secagg.rpc.transport import chunks, peer_name
from server.metrics import SERVER_BUSY
from server.rounds import RoundManager

log = logging.getLogger("secagg.server")
T = TypeVar("T")


def max_upload_streams(params: Parameters) -> int:
    """How many uploads may stream at once: the memory budget over a stream's buffers,
    at least 1, and never more than the workers not reserved for heartbeats."""
    chunk = C.CHUNK_CIPHERTEXTS * 2 * len(params.data_primes) * params.poly_modulus_degree * 8
    by_memory = C.UPLOAD_MEMORY_BUDGET_BYTES // (chunk * C.UPLOAD_STREAM_BUFFERS)
    return max(1, min(C.SERVER_WORKERS - C.SERVER_RESERVED_WORKERS, by_memory))


H = TypeVar("H", covariant=True)


class _StreamedRequest(Protocol[H]):
    """One message of an Upload or SubmitPartial stream: a header, then chunks."""

    @property
    def header(self) -> H: ...

    @property
    def chunk(self) -> pb.Chunk: ...

    def WhichOneof(self, oneof_group: str) -> str | None: ...


def _abort(context: grpc.ServicerContext, exc: SecAggError) -> NoReturn:
    """Abort with the rich status of ``exc`` (see :mod:`secagg.rpc.errors`)."""
    abort_with(context, exc)
    raise AssertionError("unreachable") from exc


class AggregationService(pb_grpc.AggregationServicer):
    """Implements ``secagg.service.v1.Aggregation``."""

    def __init__(self, rounds: RoundManager, *, upload_streams: int | None = None) -> None:
        self.rounds = rounds
        self.roster = rounds.roster
        limit = max_upload_streams(rounds.ctx.params) if upload_streams is None else upload_streams
        self.upload_streams = limit
        self._upload_slots = threading.BoundedSemaphore(limit)

    # ------------------------------------------------------------- helpers
    def _caller(self, context: grpc.ServicerContext, *roles: str) -> str:
        name = peer_name(context)
        role = self.roster.role_of(name) if name else None
        if role not in roles:
            _abort(context, PermissionDenied(f"{name!r} may not call this method"))
        assert name is not None
        return name

    def _keyholder_index(self, name: str) -> int:
        return next(k.index for k in self.roster.keyholders if k.name == name)

    def _guard(self, context: grpc.ServicerContext, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except SecAggError as exc:
            log.warning("refused %s: %s", peer_name(context), exc)
            _abort(context, exc)

    @staticmethod
    def _stream_header(requests: Iterator[_StreamedRequest[H]], context: grpc.ServicerContext) -> H:
        """The header that must open a client stream (INVALID_ARGUMENT otherwise)."""
        first = next(requests, None)
        if first is None or first.WhichOneof("part") != "header":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message must be the header")
        assert first is not None
        return first.header

    @staticmethod
    def _payloads(requests: Iterator[_StreamedRequest[H]]) -> Iterator[bytes]:
        """The chunks that follow a stream's header, as they arrive (checked by the caller
        against the head; a second header counts as a malformed chunk)."""
        for message in requests:
            yield message.chunk.data if message.WhichOneof("part") == "chunk" else b""

    # ------------------------------------------------------------- ceremony
    def PostCeremonyMessage(
        self, request: pb.CeremonyMessage, context: grpc.ServicerContext
    ) -> pb.Ack:
        index = self._keyholder_index(self._caller(context, "keyholder"))
        self.rounds.seen(index)
        self._guard(context, lambda: self.rounds.post_ceremony_message(index, request))
        return pb.Ack(status="stored")

    def GetCeremonyMessages(
        self, request: pb.CeremonyQuery, context: grpc.ServicerContext
    ) -> pb.CeremonyMessages:
        index = self._keyholder_index(self._caller(context, "keyholder"))
        self.rounds.seen(index)
        found = self.rounds.epochs.messages(request.kind, index, request.epoch)
        return pb.CeremonyMessages(messages=found)

    def GetPublicKey(self, request: pb.Empty, context: grpc.ServicerContext) -> pb.PublicKeyBundle:
        self._caller(context, "client", "keyholder", "admin")
        bundle = self.rounds.epochs.bundle()  # the current round's key
        if bundle is None:
            context.abort(grpc.StatusCode.UNAVAILABLE, "key ceremony in progress")
        assert bundle is not None
        return bundle

    # ------------------------------------------------------------- rounds
    def GetRound(self, request: pb.Empty, context: grpc.ServicerContext) -> pb.RoundInfo:
        name = self._caller(context, "client", "keyholder", "admin")
        if self.roster.role_of(name) == "keyholder":
            self.rounds.seen(self._keyholder_index(name))  # heartbeat while working
        self.rounds.event()
        return self.rounds.round_info()

    def DownloadBlob(
        self, request: pb.BlobRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.Chunk]:
        self._caller(context, "client", "keyholder", "admin")
        try:
            data = self.rounds.blobs.get(request.sha256)
        except (FileNotFoundError, ValueError, OSError):
            context.abort(grpc.StatusCode.NOT_FOUND, "no such blob")
        yield from chunks(data)

    def DownloadChunked(
        self, request: pb.BlobRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.Chunk]:
        # ciphertexts, aggregates and partials are the key holders' (and the operator's):
        # clients fetch models only (DownloadBlob)
        self._caller(context, "keyholder", "admin")
        digest = bytes(request.sha256)
        try:
            path = self.rounds.blobs.path(digest)
            file, head = open_stored(path, self.rounds.ctx.params, digest)
        except (FileNotFoundError, ValueError, OSError, SecAggError):
            context.abort(grpc.StatusCode.NOT_FOUND, "no such chunked envelope")
        with file:
            yield pb.Chunk(data=file.head_bytes)
            for index in range(head.chunk_count):
                yield pb.Chunk(data=file.chunk(head, index))

    def Upload(
        self, request_iterator: Iterator[pb.UploadRequest], context: grpc.ServicerContext
    ) -> pb.UploadReceipt:
        client = self._caller(context, "client")
        if not self._upload_slots.acquire(blocking=False):
            log.info("refused upload from %s: %d uploads streaming", client, self.upload_streams)
            self.rounds.metrics.upload_rejected(SERVER_BUSY)
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the server receives {self.upload_streams} uploads at once, its limit; "
                "retry shortly",
            )
        try:
            header = self._stream_header(request_iterator, context)
            try:
                upload = self.rounds.precheck_upload(client, header)
                payloads = self.rounds.metrics.counted("upload", self._payloads(request_iterator))
                return self.rounds.accept_upload(upload, payloads)
            except SecAggError as exc:
                if not isinstance(exc, AuditWriteFailed):
                    self.rounds.log_rejection(client, header, f"{type(exc).__name__}: {exc}")
                log.warning("refused upload from %s: %s", client, exc)
                self.rounds.metrics.upload_rejected(exc.reason)
                _abort(context, exc)
        finally:
            self._upload_slots.release()

    def GetRelease(self, request: pb.ReleaseQuery, context: grpc.ServicerContext) -> pb.Release:
        self._caller(context, "client", "keyholder", "admin")
        rel = self.rounds.release(request.round)
        if rel is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"round {request.round} has no release")
        assert rel is not None
        return rel

    def Withdraw(self, request: pb.Withdrawal, context: grpc.ServicerContext) -> pb.Ack:
        client = self._caller(context, "client")
        self._guard(context, lambda: self.rounds.withdraw(client, request))
        return pb.Ack(status="withdrawn")

    # ------------------------------------------------------------- decryption
    def GetDecryptionTask(
        self, request: pb.Empty, context: grpc.ServicerContext
    ) -> pb.DecryptionTask:
        index = self._keyholder_index(self._caller(context, "keyholder"))
        return self._guard(context, lambda: self.rounds.task_for(index))

    def GetAcceptedUploads(
        self, request: pb.UploadQuery, context: grpc.ServicerContext
    ) -> pb.AcceptedUploads:
        index = self._keyholder_index(self._caller(context, "keyholder"))
        self.rounds.seen(index)
        return self.rounds.accepted_uploads(request.round, request.after)

    def SubmitPartial(
        self, request_iterator: Iterator[pb.PartialRequest], context: grpc.ServicerContext
    ) -> pb.Ack:
        index = self._keyholder_index(self._caller(context, "keyholder"))
        header = self._stream_header(request_iterator, context)
        payloads = self.rounds.metrics.counted("partial", self._payloads(request_iterator))
        status = self._guard(context, lambda: self.rounds.submit_partial(index, header, payloads))
        return pb.Ack(status=status)

    def SubmitLock(self, request: pb.Lock, context: grpc.ServicerContext) -> pb.Ack:
        index = self._keyholder_index(self._caller(context, "keyholder"))
        self._guard(context, lambda: self.rounds.submit_lock(index, request))
        return pb.Ack(status="locked")

    def SubmitEndorsement(self, request: pb.Endorsement, context: grpc.ServicerContext) -> pb.Ack:
        index = self._keyholder_index(self._caller(context, "keyholder"))
        self._guard(context, lambda: self.rounds.submit_endorsement(index, request))
        return pb.Ack(status="endorsed")

    def RefuseTask(self, request: pb.Refusal, context: grpc.ServicerContext) -> pb.Ack:
        index = self._keyholder_index(self._caller(context, "keyholder"))
        self._guard(context, lambda: self.rounds.refuse(index, request))
        return pb.Ack(status="recorded")

    # ------------------------------------------------------------- operator
    def AdminRequestDecryption(
        self, request: pb.AdminDecryptionRequest, context: grpc.ServicerContext
    ) -> pb.AdminDecryptionResult:
        self._caller(context, "admin")
        task_id = self._guard(
            context, lambda: self.rounds.admin_task(request.round, list(request.client_ids))
        )
        deadline = time.monotonic() + min(context.time_remaining() or 30.0, 30.0) - 1.0
        while time.monotonic() < deadline:
            refusals, completed, released = self.rounds.admin_result(task_id)
            if completed or len(refusals) >= 1:
                break
            time.sleep(C.POLL_SECONDS)
        refusals, completed, released = self.rounds.admin_result(task_id)
        return pb.AdminDecryptionResult(refusals=refusals, released=released and completed)

    def AdminRotateKey(
        self, request: pb.Empty, context: grpc.ServicerContext
    ) -> pb.AdminRotateKeyResult:
        self._caller(context, "admin")
        epoch = self._guard(context, self.rounds.epochs.rotate)
        return pb.AdminRotateKeyResult(epoch=epoch)
