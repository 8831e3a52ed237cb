"""A malicious client against the streaming upload path of the in-process service.

The attacker drives :class:`server.service.AggregationService` with hand-made streams
(the real round manager, stores and cryptography behind it; only the mTLS peer lookup is
stood in for): a header carrying the ciphertext's head, then chunks that are corrupted,
reordered, duplicated, missing, truncated, one too many, from another vector, or cut off
by a dropped stream. Each must be refused with the library's error and leave no state:
no row, no file in the blob store, no change to the round's running aggregate; the
service keeps serving and a retry afterwards is accepted. Over the stream limit, an
upload gets RESOURCE_EXHAUSTED; heartbeats never wait for a fold or a close.

The vectors are 9 ciphertexts long, so they stream as 2 chunks (8 + 1 ciphertexts).
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

import secagg
from secagg import constants as C
from secagg.chunked import VectorHead
from secagg.proto import service_pb2 as pb
from secagg.protocol.model_blob import encode_model
from server.service import AggregationService, max_upload_streams
from server.store import Store

from .conftest import Server, World, make_server

LONG = 9 * 8192  # 9 ciphertexts: two chunks


class Aborted(Exception):
    """What a gRPC abort raises inside the handler."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code = code


class Caller:
    """Stands for the ServicerContext of an authenticated caller."""

    def __init__(self, name: str) -> None:
        self.name = name

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)

    def abort_with_status(self, status: grpc.Status) -> None:
        raise Aborted(status.code, status.details)


class Dropped(Exception):
    """The client's stream broke off (what gRPC raises in the request iterator)."""


@pytest.fixture(scope="module")
def long_world(world: World) -> World:
    policy = dataclasses.replace(world.roster.policy, model_length=LONG)
    initial = hashlib.sha256(encode_model(1, np.zeros(LONG))).digest()
    roster = dataclasses.replace(world.roster, policy=policy, initial_model_hash=initial)
    return dataclasses.replace(world, roster=roster)


@pytest.fixture
def server(long_world: World, store: Store, tmp_path: Path) -> Server:
    made = make_server(long_world, store, tmp_path)
    made.manager.initial_model = np.zeros(LONG)
    return made


@pytest.fixture
def service(server: Server, monkeypatch: pytest.MonkeyPatch) -> AggregationService:
    monkeypatch.setattr("server.service.peer_name", lambda context: context.name)
    return AggregationService(server.manager, upload_streams=1)


def encrypted(world: World, seed: int) -> secagg.EncryptedVector:
    values = np.random.default_rng(seed).uniform(-1.0, 1.0, LONG)
    return secagg.encrypt(world.keys.public_key, values)


def signed_upload(
    server: Server, client: str, seed: int = 1, **kw: Any
) -> tuple[pb.UploadHeader, list[bytes]]:
    world = server.world
    vector = encrypted(world, seed)
    header, chunks, _ = world.upload(client, server.info(), ciphertext=vector, **kw)
    assert len(chunks) == 2
    return header, chunks


def stream(header: pb.UploadHeader, chunks: Iterable[bytes]) -> Iterator[pb.UploadRequest]:
    yield pb.UploadRequest(header=header)
    for c in chunks:
        yield pb.UploadRequest(chunk=pb.Chunk(data=c))


def upload(service: AggregationService, client: str, requests: Iterator[Any]) -> pb.UploadReceipt:
    return service.Upload(requests, Caller(client))  # type: ignore[arg-type]


def state(server: Server) -> tuple[Any, ...]:
    """Everything a refused upload must leave alone."""
    folds = server.manager.uploads.folds
    acc = server.ctx.work_dir / "accumulator-round-1"
    return (
        [u.statement.client_id for u in server.ctx.store.uploads(1)],
        sorted(p.name for p in server.ctx.blobs.root.iterdir()),
        sorted(folds._folded),
        hashlib.sha256(acc.read_bytes()).hexdigest() if acc.exists() else None,
        server.info().accepted_uploads,
    )


def refused_without_trace(
    server: Server, service: AggregationService, requests: Iterator[Any], code: grpc.StatusCode
) -> None:
    before = state(server)
    with pytest.raises(Aborted) as caught:
        upload(service, "c2", requests)
    assert caught.value.code == code, caught.value
    assert state(server) == before
    info = service.GetRound(pb.Empty(), Caller("c3"))  # type: ignore[arg-type]
    assert info.state == pb.COLLECTING  # still serving


@pytest.fixture
def one_accepted(server: Server, service: AggregationService) -> Server:
    """c1's upload is in, so the running aggregate is not empty."""
    header, chunks = signed_upload(server, "c1", seed=11)
    assert upload(service, "c1", stream(header, chunks)).accepted_uploads == 1
    return server


def _flip(chunk: bytes) -> bytes:
    return bytes([chunk[0] ^ 1]) + chunk[1:]


BAD = grpc.StatusCode.INVALID_ARGUMENT
STREAMS = {
    "malformed": lambda c: [_flip(c[0]), c[1]],
    "reordered": lambda c: [c[1], c[0]],
    "duplicated": lambda c: [c[0], c[0]],
    "missing": lambda c: [c[0]],
    "none": lambda c: [],
    "truncated": lambda c: [c[0], c[1][:-1]],
    "extra": lambda c: [c[0], c[1], c[1]],
}


@pytest.mark.parametrize("kind", sorted(STREAMS))
def test_bad_chunks_are_refused_without_trace_and_a_retry_is_accepted(
    one_accepted: Server, service: AggregationService, kind: str
) -> None:
    server = one_accepted
    header, chunks = signed_upload(server, "c2")
    refused_without_trace(server, service, stream(header, STREAMS[kind](chunks)), BAD)
    receipt = upload(service, "c2", stream(header, chunks))  # the same upload, intact
    assert receipt.accepted_uploads == 2
    assert server.ctx.blobs.path(receipt.ciphertext_hash).is_file()


def test_chunks_of_another_vector_under_a_signed_head_are_refused(
    one_accepted: Server, service: AggregationService
) -> None:
    server = one_accepted
    header, _ = signed_upload(server, "c2", seed=2)
    _, others = signed_upload(server, "c2", seed=3)
    refused_without_trace(server, service, stream(header, others), BAD)


def test_a_head_that_is_not_the_signed_one_is_refused(
    one_accepted: Server, service: AggregationService
) -> None:
    """The client signed one vector's digest; the header carries another vector's head."""
    server = one_accepted
    signed_for = VectorHead.of(encrypted(server.world, 4)).digest
    header, chunks = signed_upload(server, "c2", seed=5, ciphertext_hash=signed_for)
    refused_without_trace(server, service, stream(header, chunks), grpc.StatusCode.UNAUTHENTICATED)


def test_a_second_header_in_the_stream_is_a_bad_chunk(
    one_accepted: Server, service: AggregationService
) -> None:
    server = one_accepted
    header, chunks = signed_upload(server, "c2")
    requests = [pb.UploadRequest(header=header), pb.UploadRequest(header=header)]
    requests += [pb.UploadRequest(chunk=pb.Chunk(data=c)) for c in chunks]
    refused_without_trace(server, service, iter(requests), BAD)


def test_a_dropped_stream_leaves_nothing_and_the_retry_is_accepted(
    one_accepted: Server, service: AggregationService
) -> None:
    server = one_accepted
    header, chunks = signed_upload(server, "c2")

    def dropping() -> Iterator[pb.UploadRequest]:
        yield pb.UploadRequest(header=header)
        yield pb.UploadRequest(chunk=pb.Chunk(data=chunks[0]))
        raise Dropped("connection reset")

    before = state(server)
    with pytest.raises(Dropped):
        upload(service, "c2", dropping())
    assert state(server) == before
    assert not list(server.ctx.blobs.root.glob("*.staged-*"))
    assert upload(service, "c2", stream(header, chunks)).accepted_uploads == 2


def test_uploads_over_the_stream_limit_get_resource_exhausted(
    server: Server, service: AggregationService
) -> None:
    header1, chunks1 = signed_upload(server, "c1", seed=6)
    header2, chunks2 = signed_upload(server, "c2", seed=7)
    started, go_on = threading.Event(), threading.Event()

    def slow() -> Iterator[pb.UploadRequest]:
        yield pb.UploadRequest(header=header1)
        started.set()
        assert go_on.wait(10)
        for c in chunks1:
            yield pb.UploadRequest(chunk=pb.Chunk(data=c))

    receipts: list[pb.UploadReceipt] = []
    first = threading.Thread(target=lambda: receipts.append(upload(service, "c1", slow())))
    first.start()
    assert started.wait(10)
    try:
        refused_without_trace(
            server, service, stream(header2, chunks2), grpc.StatusCode.RESOURCE_EXHAUSTED
        )
    finally:
        go_on.set()
        first.join(10)
    assert receipts and receipts[0].accepted_uploads == 1
    assert upload(service, "c2", stream(header2, chunks2)).accepted_uploads == 2  # slot freed


def test_the_stream_limit_follows_the_memory_budget() -> None:
    params = secagg.Parameters.default()
    limit = max_upload_streams(params)
    chunk = C.CHUNK_CIPHERTEXTS * 2 * len(params.data_primes) * params.poly_modulus_degree * 8
    assert 1 <= limit <= C.SERVER_WORKERS - C.SERVER_RESERVED_WORKERS
    assert limit * chunk * C.UPLOAD_STREAM_BUFFERS <= C.UPLOAD_MEMORY_BUDGET_BYTES


def test_heartbeats_do_not_wait_for_a_fold_or_a_close(
    server: Server, service: AggregationService
) -> None:
    """A close in progress (its folds not done) holds only the fold lock: key holders
    poll and clients ask for the round meanwhile."""
    manager = server.manager
    manager.inline_close = False  # the closing tick is run by the test, in a thread
    for i, client in enumerate(("c1", "c2", "c3", "c4")):
        header, chunks = signed_upload(server, client, seed=20 + i)
        upload(service, client, stream(header, chunks))
    closing = threading.Thread(target=manager.tick)
    with manager.uploads.folds.lock:  # a fold that takes long
        closing.start()
        polled: list[object] = []
        poll = threading.Thread(
            target=lambda: polled.extend([manager.task_for(1), manager.round_info()])
        )
        poll.start()
        poll.join(5)
        assert len(polled) == 2, "a heartbeat waited for the fold"
        assert server.info().state == pb.COLLECTING
    closing.join(30)
    assert server.info().state == pb.DECRYPTING


def test_a_client_cannot_fetch_another_clients_ciphertext(
    server: Server, service: AggregationService
) -> None:
    """Ciphertexts, aggregates and partials are for key holders (and the operator): a
    client that learned a digest gets nothing, a key holder gets the head first."""
    header, chunks = signed_upload(server, "c1", seed=5)
    receipt = upload(service, "c1", stream(header, chunks))
    request = pb.BlobRequest(sha256=receipt.ciphertext_hash)
    with pytest.raises(Aborted) as caught:
        list(service.DownloadChunked(request, Caller("c2")))  # type: ignore[arg-type]
    assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED
    served = list(service.DownloadChunked(request, Caller("kh1")))  # type: ignore[arg-type]
    assert served[0].data == header.head and [c.data for c in served[1:]] == chunks
