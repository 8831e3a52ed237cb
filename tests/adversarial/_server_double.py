"""A malicious-server test double: a gRPC ``Aggregation`` service the test drives.

The double serves over real mTLS on 127.0.0.1 with the deployment's own server
certificate, so the REAL key-holder agent (:class:`clients.keyholder.KeyHolder`) talks
to it exactly as to the real server. It holds no policy of its own: the test decides
what it answers (the round's state, blobs, the key bundle) and which
:class:`~secagg.proto.service_pb2.DecryptionTask` it hands out next, and it records
everything the key holder submits (partials with their bytes, refusals).

Only the RPCs a key holder uses after its ceremony are served: ``GetPublicKey``,
``GetRound`` (also its heartbeat), ``GetRelease`` (always NOT_FOUND), ``DownloadBlob``,
``GetDecryptionTask``, ``SubmitPartial`` and ``RefuseTask``. Every wait is bounded.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from secagg.proto import service_pb2 as pb
from secagg.proto import service_pb2_grpc as pb_grpc
from secagg.rpc.transport import chunks, identity, join_chunks


@dataclass(frozen=True)
class Partial:
    """One partial decryption as the key holder submitted it."""

    header: pb.PartialHeader
    blob: bytes


@dataclass
class Answers:
    """What the key holders submitted, by task id (guarded by ``changed``)."""

    partials: dict[int, list[Partial]] = field(default_factory=dict)
    refusals: dict[int, list[pb.Refusal]] = field(default_factory=dict)
    changed: threading.Condition = field(default_factory=threading.Condition)


class ServerDouble(pb_grpc.AggregationServicer):
    """The servicer: hands out queued tasks, serves blobs, records answers."""

    def __init__(self, bundle: pb.PublicKeyBundle) -> None:
        self.bundle = bundle
        self.round_info = pb.RoundInfo(round=1, state=pb.DECRYPTING)
        self.blobs: dict[bytes, bytes] = {}
        self.answers = Answers()
        self._tasks: list[pb.DecryptionTask] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------ driven by the test
    def give(self, task: pb.DecryptionTask, *blobs: bytes) -> None:
        """Queue ``task`` for the next key holder that polls; serve ``blobs`` by SHA-256."""
        with self._lock:
            for blob in blobs:
                self.blobs[hashlib.sha256(blob).digest()] = blob
            self._tasks.append(task)

    def wait_answer(self, task_id: int, timeout: float = 60.0) -> Partial | pb.Refusal:
        """The first partial or refusal submitted for ``task_id`` (AssertionError on timeout)."""
        deadline = time.monotonic() + timeout
        with self.answers.changed:
            while True:
                if task_id in self.answers.partials:
                    return self.answers.partials[task_id][0]
                if task_id in self.answers.refusals:
                    return self.answers.refusals[task_id][0]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no answer to task {task_id} within {timeout} s")
                self.answers.changed.wait(left)

    # ------------------------------------------------------------ RPCs
    def GetPublicKey(self, request: pb.Empty, context: grpc.ServicerContext) -> pb.PublicKeyBundle:  # noqa: N802
        return self.bundle

    def GetRound(self, request: pb.Empty, context: grpc.ServicerContext) -> pb.RoundInfo:  # noqa: N802
        return self.round_info

    def GetRelease(self, request: pb.ReleaseQuery, context: grpc.ServicerContext) -> pb.Release:  # noqa: N802
        context.abort(grpc.StatusCode.NOT_FOUND, "no release")
        raise AssertionError("unreachable")

    def DownloadBlob(  # noqa: N802
        self, request: pb.BlobRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.Chunk]:
        with self._lock:
            blob = self.blobs.get(request.sha256)
        if blob is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "no such blob")
        yield from chunks(blob or b"")

    def GetDecryptionTask(  # noqa: N802
        self, request: pb.Empty, context: grpc.ServicerContext
    ) -> pb.DecryptionTask:
        with self._lock:
            return self._tasks.pop(0) if self._tasks else pb.DecryptionTask(pending=False)

    def SubmitPartial(  # noqa: N802
        self, request_iterator: Iterator[pb.PartialRequest], context: grpc.ServicerContext
    ) -> pb.Ack:
        header = next(request_iterator).header
        blob = join_chunks(
            (r.chunk for r in request_iterator),
            expected_size=header.blob.total_size,
            sha256=header.blob.sha256,
        )
        with self.answers.changed:
            self.answers.partials.setdefault(header.task_id, []).append(Partial(header, blob))
            self.answers.changed.notify_all()
        return pb.Ack(status="accepted")

    def RefuseTask(self, request: pb.Refusal, context: grpc.ServicerContext) -> pb.Ack:  # noqa: N802
        with self.answers.changed:
            self.answers.refusals.setdefault(request.task_id, []).append(request)
            self.answers.changed.notify_all()
        return pb.Ack(status="recorded")


def start_double(deployment: Path, double: ServerDouble) -> tuple[grpc.Server, str]:
    """Serve ``double`` over mTLS (the deployment's server certificate); (server, address)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_AggregationServicer_to_server(double, server)  # type: ignore[no-untyped-call]
    creds = identity(deployment, "server").server_credentials()
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    return server, f"127.0.0.1:{port}"
