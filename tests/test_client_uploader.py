"""Sending a stored upload (:func:`clients.uploader.send_upload`): every attempt streams the
signed header and the chunks from chunk 0; a busy server (RESOURCE_EXHAUSTED) is asked
again with a pause and a log line, up to the round timeout; an upload over the size cap is
not retried; "already held" counts as done.

The transport is a stand-in (a stub whose ``Upload`` consumes the stream and answers what
the test says); the stored upload, its chunk file and the sending code are the real ones.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import secagg
from clients.pending_upload import PendingUpload, StoredUpload
from clients.uploader import send_upload
from secagg import constants as C
from secagg.errors import ReplayDetected, SecAggError, SizeLimitExceeded
from secagg.proto import service_pb2 as pb
from secagg.protocol.statements import Signed, UploadStatement
from secagg.rpc.errors import to_status

LENGTH = C.CHUNK_CIPHERTEXTS * 8192 + 10  # two chunks


class Refused(grpc.RpcError, grpc.Call):  # type: ignore[misc]
    """A failed call as grpc raises it: a status code, details, rich-status trailers."""

    def __init__(self, code: grpc.StatusCode, details: str, trailers: Any = ()) -> None:
        self._code, self._details, self._trailers = code, details, tuple(trailers)

    @classmethod
    def rich(cls, exc: SecAggError) -> Refused:
        status = to_status(exc)
        return cls(status.code, status.details, status.trailing_metadata)

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> Any:
        return self._trailers

    def initial_metadata(self) -> Any:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float | None:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Any) -> bool:
        return False


class Server:
    """The stub and connection stand-in: records each attempt's stream, answers in turn."""

    def __init__(self, *answers: Refused | pb.UploadReceipt) -> None:
        self.answers = list(answers)
        self.attempts: list[list[pb.UploadRequest]] = []
        self.stop = threading.Event()
        self.stub = self

    def Upload(self, requests: Iterator[pb.UploadRequest], timeout: float) -> pb.UploadReceipt:  # noqa: N802
        self.attempts.append(list(requests))
        answer = self.answers.pop(0)
        if isinstance(answer, Refused):
            raise answer
        return answer

    def call(self, fn: Any, request: Any, *, timeout: float) -> Any:
        return fn(request, timeout=timeout)


@pytest.fixture
def stored(keys32: secagg.KeySet, tmp_path: Path) -> StoredUpload:
    pending = PendingUpload(tmp_path, roster=None)  # type: ignore[arg-type]  # not loaded here
    values = np.random.default_rng(1).uniform(-1, 1, LENGTH)  # test data, not a secret
    head = pending.write_ciphertext(keys32.public_key, values)
    statement = UploadStatement(
        deployment_id="d",
        round=1,
        client_id="c1",
        nonce=os.urandom(C.UPLOAD_NONCE_BYTES),
        global_model_hash=bytes(32),
        ciphertext_hash=head.digest,
        weight=10,
    )
    return pending.upload(Signed.create(statement, Ed25519PrivateKey.generate()), head)


@pytest.fixture(autouse=True)
def short_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(C, "UPLOAD_BUSY_FIRST_DELAY_SECONDS", 0.01)
    monkeypatch.setattr(C, "UPLOAD_BUSY_MAX_DELAY_SECONDS", 0.02)


def _policy(round_timeout: float = 60.0) -> Any:
    return SimpleNamespace(round_timeout_seconds=round_timeout, transfer_timeout_seconds=30.0)


def _busy() -> Refused:
    return Refused(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many concurrent uploads")


def test_each_attempt_streams_the_header_then_every_chunk_from_the_file(
    stored: StoredUpload,
) -> None:
    server = Server(pb.UploadReceipt(round=1, accepted_uploads=1))
    send_upload(server, stored, policy=_policy(), name="c1")  # type: ignore[arg-type]
    [attempt] = server.attempts
    assert attempt[0].header == stored.header() and attempt[0].header.head
    assert [r.chunk.data for r in attempt[1:]] == list(stored.chunks())
    assert len(attempt) == 1 + stored.head.chunk_count == 3


def test_a_busy_server_is_asked_again_with_a_log_line(
    stored: StoredUpload, caplog: pytest.LogCaptureFixture
) -> None:
    server = Server(_busy(), _busy(), pb.UploadReceipt(round=1, accepted_uploads=1))
    with caplog.at_level(logging.INFO, logger="secagg.client"):
        send_upload(server, stored, policy=_policy(), name="c1")  # type: ignore[arg-type]
    assert len(server.attempts) == 3
    assert all(attempt == server.attempts[0] for attempt in server.attempts)  # from chunk 0
    assert caplog.text.count("the server is busy") == 2
    assert "round 1 uploaded" in caplog.text


def test_a_server_busy_past_the_round_timeout_fails_the_upload(stored: StoredUpload) -> None:
    server = Server(*[_busy()] * 100)
    with pytest.raises(grpc.RpcError) as failed:
        send_upload(server, stored, policy=_policy(round_timeout=0.05), name="c1")  # type: ignore[arg-type]
    assert failed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert 1 < len(server.attempts) < 100


def test_an_upload_over_the_size_cap_is_not_retried(stored: StoredUpload) -> None:
    server = Server(Refused.rich(SizeLimitExceeded("upload exceeds the cap")))
    with pytest.raises(grpc.RpcError):
        send_upload(server, stored, policy=_policy(), name="c1")  # type: ignore[arg-type]
    assert len(server.attempts) == 1


def test_an_upload_the_server_already_holds_counts_as_sent(stored: StoredUpload) -> None:
    server = Server(Refused.rich(ReplayDetected("nonce already used")))
    send_upload(server, stored, policy=_policy(), name="c1")  # type: ignore[arg-type]
    assert len(server.attempts) == 1
