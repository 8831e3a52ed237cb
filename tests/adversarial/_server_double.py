"""A malicious-server test double: a gRPC ``Aggregation`` service the test drives.

The double serves over real mTLS on 127.0.0.1 with the deployment's own server
certificate, so the REAL key-holder agent (:class:`clients.keyholder.KeyHolder`) and the
REAL training client (:class:`clients.client.TrainingClient`) talk to it exactly as to
the real server. It holds no policy of its own: the test decides what it answers (the
round's state, releases, blobs, the key bundle) and which
:class:`~secagg.proto.service_pb2.DecryptionTask` it hands out next, to any key holder
or to one by index; it records everything the parties submit (partials with their bytes,
refusals, locks, endorsements, uploads) and counts the calls made to it.

Served: ``GetPublicKey``, ``GetRound`` (also the key holder's heartbeat), ``GetRelease``
(NOT_FOUND unless the test set one), ``DownloadBlob`` (models), ``DownloadChunked``
(ciphertexts, aggregates, partials: a head, then chunks, exactly as the test put them,
lies included), ``GetAcceptedUploads`` (the list the test set for a round, from
``after``), ``GetDecryptionTask``, ``SubmitPartial`` (a head, then chunks),
``RefuseTask``, ``SubmitLock``, ``SubmitEndorsement`` and ``Upload`` (a head, then
chunks). Every wait is bounded; every download is counted by digest.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc
import numpy as np

from secagg import constants
from secagg.aggregate import EncryptedAggregate
from secagg.chunked import AggregateHead, PartialHead, VectorHead, checked_chunks, payload_chunks
from secagg.ciphertext import EncryptedVector
from secagg.params import Parameters
from secagg.proto import core_pb2
from secagg.proto import service_pb2 as pb
from secagg.proto import service_pb2_grpc as pb_grpc
from secagg.rpc.transport import identity, peer_name
from secagg.threshold import PartialDecryption

C = TypeVar("C", pb.Lock, pb.Endorsement)


@dataclass(frozen=True)
class Partial:
    """One partial decryption as the key holder submitted it: its header (with the head)
    and its chunks."""

    header: pb.PartialHeader
    chunks: tuple[bytes, ...]

    @property
    def blob(self) -> bytes:
        """Every byte sent (head, then chunks): equal for byte-identical partials."""
        return self.header.head + b"".join(self.chunks)

    def decryption(self, params: Parameters) -> PartialDecryption:
        """The partial as an in-memory :class:`PartialDecryption` (checked chunk by chunk)."""
        head = PartialHead.from_bytes(self.header.head, params)
        residues = np.concatenate([r for _, r in checked_chunks(head, self.chunks)])
        part = PartialDecryption(
            params,
            head.public_key_id,
            head.aggregate_digest,
            head.keyholder_index,
            head.threshold,
            head.quorum,
            residues,
        )
        assert part.digest == head.digest
        return part


@dataclass(frozen=True)
class ReceivedUpload:
    """One client upload as the client streamed it: its header (with the head) and chunks."""

    header: pb.UploadHeader
    chunks: tuple[bytes, ...]


def vector_parts(vector: EncryptedVector) -> list[bytes]:
    """What ``DownloadChunked`` streams for a ciphertext: its head, then its chunks."""
    return [VectorHead.of(vector).to_bytes(), *(bytes(c) for c in payload_chunks(vector))]


def aggregate_parts(aggregate: EncryptedAggregate) -> list[bytes]:
    """What ``DownloadChunked`` streams for an aggregate: its head, then its chunks."""
    chunks = (bytes(c) for c in payload_chunks(aggregate.vector))
    return [AggregateHead.of(aggregate).to_bytes(), *chunks]


def partial_parts(part: PartialDecryption) -> list[bytes]:
    """What ``DownloadChunked`` streams for a partial: its head, then its chunks."""
    return [PartialHead.of(part).to_bytes(), *(bytes(c) for c in payload_chunks(part))]


@dataclass
class Answers:
    """What the parties submitted (guarded by ``changed``).

    Partials and refusals by task id (a refused LOCK or ENDORSE task has task id 0);
    locks, endorsements and uploads in arrival order.
    """

    partials: dict[int, list[Partial]] = field(default_factory=dict)
    refusals: dict[int, list[pb.Refusal]] = field(default_factory=dict)
    locks: list[pb.Lock] = field(default_factory=list)
    endorsements: list[pb.Endorsement] = field(default_factory=list)
    uploads: list[ReceivedUpload] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)
    claimed: set[int] = field(default_factory=set)  # id() of task-0 refusals already waited for


class ServerDouble(pb_grpc.AggregationServicer):
    """The servicer: hands out queued tasks, serves blobs and releases, records answers.

    Key holders are addressed by index through their certificate's common name
    ``kh<index>`` (as :func:`~secagg.protocol.deployment.init_deployment` names them).
    """

    def __init__(self, bundle: pb.PublicKeyBundle) -> None:
        self.bundle = bundle
        self.round_info = pb.RoundInfo(round=1, state=pb.DECRYPTING)
        self.releases: dict[int, pb.Release] = {}
        self.blobs: dict[bytes, bytes] = {}
        self.chunked: dict[bytes, list[bytes]] = {}  # digest -> [head, chunk 0, ...]
        self.accepted: dict[int, pb.AcceptedUploads] = {}  # what GetAcceptedUploads lists
        self.downloads: Counter[bytes] = Counter()  # DownloadChunked calls by digest
        self.answers = Answers()
        self.calls: Counter[str] = Counter()
        self._tasks: list[pb.DecryptionTask] = []
        self._queues: dict[str, list[pb.DecryptionTask]] = {}
        self._lock = threading.Lock()
        self.timeout = 60.0  # seconds any wait_* waits for an answer

    # ------------------------------------------------------------ driven by the test
    def serve(self, *blobs: bytes) -> None:
        """Serve ``blobs`` by their SHA-256."""
        with self._lock:
            for blob in blobs:
                self.blobs[hashlib.sha256(blob).digest()] = blob

    def serve_chunked(self, digest: bytes, parts: Sequence[bytes]) -> None:
        """Serve ``parts`` (a head, then chunks: true or not) under ``digest``."""
        with self._lock:
            self.chunked[digest] = list(parts)

    def serve_vectors(self, *vectors: EncryptedVector) -> None:
        """Serve each ciphertext, honestly, under its digest."""
        for vector in vectors:
            self.serve_chunked(vector.digest, vector_parts(vector))

    def list_accepted(
        self,
        round_number: int,
        contributions: Sequence[pb.Contribution],
        *,
        public_key_id: bytes,
        collecting: bool = True,
    ) -> None:
        """Have ``GetAcceptedUploads`` list ``contributions`` for ``round_number`` (and
        ``GetRound`` say that round, collecting, with that many uploads)."""
        with self._lock:
            self.accepted[round_number] = pb.AcceptedUploads(
                round=round_number,
                contributions=contributions,
                public_key_id=public_key_id,
                collecting=collecting,
            )
            self.round_info = pb.RoundInfo(
                round=round_number,
                state=pb.COLLECTING if collecting else pb.DECRYPTING,
                accepted_uploads=len(contributions),
                public_key_id=public_key_id,
            )

    def give(self, task: pb.DecryptionTask, *blobs: bytes, to: int | None = None) -> None:
        """Queue ``task`` for the next key holder that polls (or only ``to``); serve ``blobs``."""
        self.serve(*blobs)
        with self._lock:
            queue = self._tasks if to is None else self._queues.setdefault(f"kh{to}", [])
            queue.append(task)

    def wait_answer(self, task_id: int, timeout: float = 60.0) -> Partial | pb.Refusal:
        """The first partial or refusal submitted for ``task_id`` (AssertionError on timeout)."""

        def find() -> Partial | pb.Refusal | None:
            if task_id in self.answers.partials:
                return self.answers.partials[task_id][0]
            if task_id in self.answers.refusals:
                return self.answers.refusals[task_id][0]
            return None

        found = self._wait(find, f"task {task_id}", timeout)
        assert isinstance(found, Partial | pb.Refusal)
        return found

    def wait_lock(self, keyholder: int, aggregate_digest: bytes) -> pb.Lock | pb.Refusal:
        """Key holder ``keyholder``'s lock on this aggregate, or its next task-0 refusal."""
        found = self._wait_certificate(self.answers.locks, keyholder, aggregate_digest)
        assert isinstance(found, pb.Lock | pb.Refusal)
        return found

    def wait_endorsement(
        self, keyholder: int, aggregate_digest: bytes
    ) -> pb.Endorsement | pb.Refusal:
        """Key holder ``keyholder``'s endorsement of this aggregate, or its next task-0 refusal."""
        found = self._wait_certificate(self.answers.endorsements, keyholder, aggregate_digest)
        assert isinstance(found, pb.Endorsement | pb.Refusal)
        return found

    def _wait_certificate(
        self, submitted: Sequence[C], keyholder: int, aggregate_digest: bytes
    ) -> object:
        return self._wait(
            lambda: self._certificate(submitted, keyholder, aggregate_digest),
            f"key holder {keyholder}'s answer to a LOCK or ENDORSE task",
            self.timeout,
        )

    def _certificate(
        self, submitted: Sequence[C], keyholder: int, aggregate_digest: bytes
    ) -> C | pb.Refusal | None:
        """The first matching lock/endorsement in ``submitted``, else an unclaimed task-0 refusal.

        A refusal of a LOCK or ENDORSE task names no aggregate: give a key holder one such
        task at a time and wait for its answer before the next.
        """
        for item in submitted:
            if item.keyholder == keyholder and item.aggregate_digest == aggregate_digest:
                return item
        for refusal in self.answers.refusals.get(0, []):
            if refusal.keyholder == keyholder and id(refusal) not in self.answers.claimed:
                self.answers.claimed.add(id(refusal))
                return refusal
        return None

    def _wait(self, find: Callable[[], object], what: str, timeout: float) -> object:
        """What ``find`` returns once it is not None (AssertionError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self.answers.changed:
            while True:
                found = find()
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no answer for {what} within {timeout} s")
                self.answers.changed.wait(left)

    def _record(self, add: Callable[[Answers], None]) -> pb.Ack:
        with self.answers.changed:
            add(self.answers)
            self.answers.changed.notify_all()
        return pb.Ack(status="recorded")

    # ------------------------------------------------------------ RPCs
    def GetPublicKey(self, request: pb.Empty, context: grpc.ServicerContext) -> pb.PublicKeyBundle:  # noqa: N802
        self.calls["GetPublicKey"] += 1
        return self.bundle

    def GetRound(self, request: pb.Empty, context: grpc.ServicerContext) -> pb.RoundInfo:  # noqa: N802
        self.calls["GetRound"] += 1
        return self.round_info

    def GetRelease(self, request: pb.ReleaseQuery, context: grpc.ServicerContext) -> pb.Release:  # noqa: N802
        self.calls["GetRelease"] += 1
        release = self.releases.get(request.round)
        if release is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "no release")
            raise AssertionError("unreachable")
        return release

    def DownloadBlob(  # noqa: N802
        self, request: pb.BlobRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.Chunk]:
        with self._lock:
            blob = self.blobs.get(request.sha256)
        if blob is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "no such blob")
        data = blob or b""
        for start in range(0, len(data), constants.CHUNK_BYTES):
            yield pb.Chunk(data=data[start : start + constants.CHUNK_BYTES])

    def DownloadChunked(  # noqa: N802
        self, request: pb.BlobRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.Chunk]:
        with self._lock:
            self.downloads[request.sha256] += 1
            parts = self.chunked.get(request.sha256)
        if parts is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "no such envelope")
        for part in parts or []:
            yield pb.Chunk(data=part)

    def GetAcceptedUploads(  # noqa: N802
        self, request: pb.UploadQuery, context: grpc.ServicerContext
    ) -> pb.AcceptedUploads:
        self.calls["GetAcceptedUploads"] += 1
        with self._lock:
            listed = self.accepted.get(request.round)
        if listed is None:
            return pb.AcceptedUploads(round=request.round)
        return pb.AcceptedUploads(
            round=listed.round,
            contributions=listed.contributions[request.after :],
            public_key_id=listed.public_key_id,
            collecting=listed.collecting,
        )

    def GetDecryptionTask(  # noqa: N802
        self, request: pb.Empty, context: grpc.ServicerContext
    ) -> pb.DecryptionTask:
        with self._lock:
            for queue in (self._queues.get(peer_name(context) or "", []), self._tasks):
                if queue:
                    return queue.pop(0)
            return pb.DecryptionTask(pending=False)

    def SubmitPartial(  # noqa: N802
        self, request_iterator: Iterator[pb.PartialRequest], context: grpc.ServicerContext
    ) -> pb.Ack:
        header = next(request_iterator).header
        sent = Partial(header, tuple(r.chunk.data for r in request_iterator))
        self._record(lambda a: a.partials.setdefault(header.task_id, []).append(sent))
        return pb.Ack(status="accepted")

    def RefuseTask(self, request: pb.Refusal, context: grpc.ServicerContext) -> pb.Ack:  # noqa: N802
        return self._record(lambda a: a.refusals.setdefault(request.task_id, []).append(request))

    def SubmitLock(self, request: pb.Lock, context: grpc.ServicerContext) -> pb.Ack:  # noqa: N802
        return self._record(lambda a: a.locks.append(request))

    def SubmitEndorsement(  # noqa: N802
        self, request: pb.Endorsement, context: grpc.ServicerContext
    ) -> pb.Ack:
        return self._record(lambda a: a.endorsements.append(request))

    def Upload(  # noqa: N802
        self, request_iterator: Iterator[pb.UploadRequest], context: grpc.ServicerContext
    ) -> pb.UploadReceipt:
        header = next(request_iterator).header
        received = ReceivedUpload(header, tuple(r.chunk.data for r in request_iterator))
        self._record(lambda a: a.uploads.append(received))
        head = core_pb2.EncryptedVector.FromString(header.head)  # the double checks nothing
        return pb.UploadReceipt(
            round=header.round,
            ciphertext_hash=head.digest,
            accepted_uploads=len(self.answers.uploads),
        )


def start_double(deployment: Path, double: ServerDouble) -> tuple[grpc.Server, str]:
    """Serve ``double`` over mTLS (the deployment's server certificate); (server, address)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pb_grpc.add_AggregationServicer_to_server(double, server)  # type: ignore[no-untyped-call]
    creds = identity(deployment, "server").server_credentials()
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    return server, f"127.0.0.1:{port}"
