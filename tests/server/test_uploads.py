"""The upload effect in-process, with the real cryptography at a small model length.

Every guard has a negative test that checks the upload is refused with the precise
error and that nothing accepted changed (round, uploads, nonces, blobs, audit log).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import secagg
from secagg.chunked import VectorHead
from secagg.errors import (
    DuplicateCiphertext,
    DuplicateUpload,
    InvalidCiphertext,
    MixedGlobalModels,
    PermissionDenied,
    PolicyViolation,
    ReplayDetected,
    SecAggError,
    SignatureInvalid,
    SizeLimitExceeded,
    WeightBudgetExceeded,
    WrongRound,
)
from secagg.proto import service_pb2 as pb
from secagg.protocol.statements import Signed, WithdrawalStatement
from server.store import Store

from .conftest import LENGTH, Server, make_server


def send(
    server: Server, client: str, header: pb.UploadHeader, chunks: list[bytes]
) -> pb.UploadReceipt:
    """What the service does: precheck the header, then receive the chunks and accept."""
    upload = server.manager.precheck_upload(client, header)
    return server.manager.accept_upload(upload, iter(chunks))


def snapshot(server: Server) -> tuple[Any, ...]:
    info = server.info()
    store = server.ctx.store
    return (
        info.round,
        info.state,
        info.accepted_uploads,
        info.status,
        [(u.statement.client_id, u.statement.nonce) for u in store.uploads(1)],
        sorted(p.name for p in server.ctx.blobs.root.iterdir()),
        server.ctx.audit.size,
    )


def refused(
    server: Server,
    call: Callable[[], object],
    error: type[SecAggError],
    fragment: str | None = None,
) -> None:
    before = snapshot(server)
    with pytest.raises(error, match=fragment):
        call()
    assert snapshot(server) == before


def test_round_one_opens_collecting(server: Server) -> None:
    info = server.info()
    assert info.round == 1 and info.state == pb.COLLECTING and info.status == "collecting"
    assert info.model_length == LENGTH and info.status_reason == ""
    assert server.audit_types() == ["roster", "public_key", "round_open"]


def test_a_valid_upload_is_accepted_once(server: Server) -> None:
    header, blob, _ = server.world.upload("c1", server.info(), weight=17)
    receipt = send(server, "c1", header, blob)
    assert receipt.round == 1 and receipt.accepted_uploads == 1
    assert server.ctx.blobs.has(receipt.ciphertext_hash)
    [upload] = server.ctx.store.uploads(1)
    assert upload.statement.weight == 17 and upload.signed.signature == header.signature
    assert server.audit_types()[-1] == "upload"
    # replay of the identical request
    refused(server, lambda: send(server, "c1", header, blob), ReplayDetected)
    # the same client again with a fresh nonce
    again, blob2, _ = server.world.upload("c1", server.info())
    refused(server, lambda: send(server, "c1", again, blob2), DuplicateUpload, "already has")


def test_a_copied_ciphertext_is_refused(server: Server) -> None:
    """A colluding client signs the victim's ciphertext as its own upload."""
    header, blob, _ = server.world.upload("c1", server.info())
    send(server, "c1", header, blob)
    copy, _, _ = server.world.upload("c2", server.info(), head=header.head)
    refused(
        server,
        lambda: send(server, "c2", copy, blob),
        DuplicateCiphertext,
        "already uploaded in round 1 by c1",
    )
    assert DuplicateCiphertext.reason == "DUPLICATE_CIPHERTEXT"


def test_wrong_round_and_wrong_model(server: Server) -> None:
    info = server.info()
    header, blob, _ = server.world.upload("c2", info, round=2)
    refused(
        server, lambda: send(server, "c2", header, blob), WrongRound, "round 2 is not collecting"
    )
    header, blob, _ = server.world.upload("c2", info, global_model_hash=bytes(32))
    refused(
        server, lambda: send(server, "c2", header, blob), MixedGlobalModels, "another global model"
    )


def test_bad_signatures(server: Server) -> None:
    header, blob, _ = server.world.upload("c2", server.info())
    flipped = pb.UploadHeader()
    flipped.CopyFrom(header)
    flipped.signature = bytes([header.signature[0] ^ 1]) + header.signature[1:]
    refused(server, lambda: send(server, "c2", flipped, blob), SignatureInvalid, "by c2")
    heavier = pb.UploadHeader()
    heavier.CopyFrom(header)
    heavier.weight = 1000
    refused(server, lambda: send(server, "c2", heavier, blob), SignatureInvalid)
    as_c3, blob3, _ = server.world.upload("c3", server.info())
    refused(
        server,
        lambda: send(server, "c2", as_c3, blob3),
        PermissionDenied,
        "does not match the authenticated certificate",
    )


def test_weight_and_size_guards(server: Server, store: Store, tmp_path: Path) -> None:
    info = server.info()
    header, blob, _ = server.world.upload("c2", info, weight=0)
    refused(server, lambda: send(server, "c2", header, blob), WeightBudgetExceeded)
    header, blob, _ = server.world.upload("c2", info)
    size = VectorHead.from_bytes(header.head, server.world.roster.params).payload_bytes
    small = make_server(server.world.with_policy(max_upload_bytes=size - 1), store, tmp_path)
    refused(
        small,
        lambda: send(small, "c2", header, blob),
        SizeLimitExceeded,
        f"upload of {size} bytes exceeds the cap of {size - 1} bytes",
    )


def test_ciphertext_guards(server: Server, other_keys: secagg.KeySet) -> None:
    info = server.info()
    vector = np.linspace(-1, 1, LENGTH)
    alien = secagg.encrypt(other_keys.public_key, vector)
    header, blob, _ = server.world.upload("c2", info, ciphertext=alien)
    refused(server, lambda: send(server, "c2", header, blob), InvalidCiphertext, "joint public key")
    short = secagg.encrypt(server.world.keys.public_key, vector[:10])
    header, blob, _ = server.world.upload("c2", info, ciphertext=short)
    refused(server, lambda: send(server, "c2", header, blob), InvalidCiphertext, "vector length 10")
    junk = bytes(range(256)) * 4
    header, blob, _ = server.world.upload("c2", info, head=junk)
    refused(server, lambda: send(server, "c2", header, blob), InvalidCiphertext)


def test_a_withdrawn_client_is_refused(server: Server) -> None:
    statement = WithdrawalStatement("test-deployment", "c4", 1, "budget spent")
    signed = Signed.create(statement, server.world.client_keys["c4"])
    server.manager.withdraw("c4", statement.to_proto(signed.signature))
    server.manager.withdraw("c4", statement.to_proto(signed.signature))  # recorded once
    assert server.audit_types().count("withdrawal") == 1
    header, blob, _ = server.world.upload("c4", server.info())
    refused(server, lambda: send(server, "c4", header, blob), PolicyViolation, "withdrawn")
    forged = statement.to_proto(bytes(64))
    with pytest.raises(SignatureInvalid):
        server.manager.withdraw("c4", forged)
