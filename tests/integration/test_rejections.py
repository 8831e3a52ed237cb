"""Bad input is refused with a clear status, changes nothing, and the service keeps serving.

One deployment (4 clients, 3 key holders, t = 2, min_contributors = 2, 1 round) in round
1. The test speaks gRPC to the server with the library and the generated stubs, changing
one thing at a time in otherwise valid requests; after every rejection the round, its
accepted uploads, the stored nonces and the status are unchanged and GetRound answers.
At the end valid uploads (two from the test, two from real client processes) are still
accepted, and the released model is exactly their weighted mean: nothing refused was
counted, nothing accepted was lost.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
import pytest

import secagg
from secagg.proto import service_pb2 as pb
from secagg.proto import service_pb2_grpc as pb_grpc
from secagg.rpc.transport import identity

from ._harness import Deployment, Harness, max_error, upload_requests, weighted_mean
from ._uploads import Ciphertext

LENGTH = 20_000


def _state(dep: Deployment, *, blobs: bool = True) -> tuple[Any, ...]:
    info = dep.round_info()
    assert info is not None, "the server stopped answering GetRound"
    return (
        info.round,
        info.state,
        info.accepted_uploads,
        info.global_model_hash,
        info.status,
        sorted(tuple(r) for r in dep.db_rows("SELECT client_id, nonce FROM uploads")),
        sorted(tuple(r) for r in dep.db_rows("SELECT client_id, nonce FROM nonces")),
        sorted(p.name for p in (dep.data / "blobs").iterdir()) if blobs else None,
        dep.db_rows("SELECT round, state, release FROM rounds"),
    )


def _rejected(
    dep: Deployment, call: Callable[[], object], code: grpc.StatusCode, *fragments: str
) -> str:
    """``call`` fails with ``code`` and a message naming the problem; nothing changed."""
    before = _state(dep)
    with pytest.raises(grpc.RpcError) as info:
        call()
    error = info.value
    assert error.code() == code, f"expected {code}, got {error.code()}: {error.details()}"
    details = error.details() or ""
    for fragment in fragments:
        assert fragment in details, f"{fragment!r} not in {details!r}"
    assert _state(dep) == before
    dep.assert_running("server", "kh1", "kh2", "kh3")
    return details


def _foreign_channel(dep: Deployment, key_pem: bytes | None, cert_pem: bytes | None) -> Any:
    """A channel that trusts ``dep``'s CA and presents the given client certificate."""
    creds = grpc.ssl_channel_credentials(
        root_certificates=(dep.directory / "ca" / "ca.pem").read_bytes(),
        private_key=key_pem,
        certificate_chain=cert_pem,
    )
    return grpc.secure_channel(
        dep.address, creds, options=[("grpc.ssl_target_name_override", "localhost")]
    )


def test_rejections(harness: Harness) -> None:
    dep = harness.create(rounds=1, min_contributors=2, model_length=LENGTH, round_timeout=300)
    other = harness.create(name="other", rounds=1, model_length=LENGTH)  # another CA, no server
    info = harness.start_deployment(dep)
    key = dep.public_key()
    rng = np.random.default_rng(7)
    vectors = {name: rng.uniform(-1.0, 1.0, LENGTH) for name in ("c1", "c2")}
    weights = {"c1": 17, "c2": 9, "c3": 40, "c4": 3}

    # (a) TLS: a client certificate of another deployment's CA, or none at all
    foreign = identity(other.directory, "c1")
    header, blob = dep.build_upload("c1", info, vectors["c1"], weight=weights["c1"], key=key)
    foreign_key = (foreign.directory / "tls.key").read_bytes()
    foreign_cert = (foreign.directory / "tls.pem").read_bytes()
    attempts = {
        "another deployment's identity": foreign.channel(dep.address),
        "another CA's client certificate": _foreign_channel(dep, foreign_key, foreign_cert),
        "no client certificate": _foreign_channel(dep, None, None),
    }
    for what, channel in attempts.items():
        stub = pb_grpc.AggregationStub(channel)  # type: ignore[no-untyped-call]
        _rejected(
            dep, lambda s=stub: s.GetRound(pb.Empty(), timeout=5), grpc.StatusCode.UNAVAILABLE
        )
        _rejected(
            dep,
            lambda s=stub: s.Upload(upload_requests(header, blob), timeout=5),
            grpc.StatusCode.UNAVAILABLE,
        )
        channel.close()
        print(f"(a) {what}: refused at the handshake")
    # control: the same construction with this deployment's own c1 certificate is served,
    # so the refusals above are the server checking the client certificate
    own = identity(dep.directory, "c1").directory
    control = _foreign_channel(dep, (own / "tls.key").read_bytes(), (own / "tls.pem").read_bytes())
    assert pb_grpc.AggregationStub(control).GetRound(pb.Empty(), timeout=5).round == 1  # type: ignore[no-untyped-call]
    control.close()
    # roster roles: a key holder's or the operator's certificate may not upload
    for party in ("kh1", "admin"):
        _rejected(
            dep,
            lambda p=party: dep.upload("c1", header, blob, stub=dep.stub(p)),
            grpc.StatusCode.PERMISSION_DENIED,
            "may not call this method",
        )

    # (b) a valid upload is accepted; the identical request again is a replay
    receipt = dep.upload("c1", header, blob)
    assert receipt.accepted_uploads == 1 and receipt.round == 1
    assert receipt.ciphertext_hash == blob.digest
    _rejected(
        dep,
        lambda: dep.upload("c1", header, blob),
        grpc.StatusCode.ALREADY_EXISTS,
        "ReplayDetected",
    )

    # (c) the same client again, fresh nonce and signature, other data
    dup_header, dup_blob = dep.build_upload("c1", info, vectors["c2"], weight=50, key=key)
    _rejected(
        dep,
        lambda: dep.upload("c1", dup_header, dup_blob),
        grpc.StatusCode.ALREADY_EXISTS,
        "DuplicateUpload",
    )

    # everything below is tried as c2, which uploads validly at the end
    good_header, good_blob = dep.build_upload(
        "c2", info, vectors["c2"], weight=weights["c2"], key=key
    )

    def send(h: pb.UploadHeader, b: Ciphertext) -> Callable[[], object]:
        return lambda: dep.upload("c2", h, b)

    def variant(**overrides: Any) -> pb.UploadHeader:
        overrides.setdefault("weight", weights["c2"])
        h, _ = dep.build_upload("c2", info, blob=good_blob, **overrides)
        return h

    # (d) signed (validly) over another global model than the round's
    other_model = hashlib.sha256(b"some other model").digest()
    _rejected(
        dep,
        send(variant(global_model_hash=other_model), good_blob),
        grpc.StatusCode.FAILED_PRECONDITION,
        "another global model",
    )
    # ... or for another round
    _rejected(
        dep,
        send(variant(round=2), good_blob),
        grpc.StatusCode.FAILED_PRECONDITION,
        "round 2 is not collecting",
    )

    # (e) a stream longer or shorter than its head (the signed digest covers every chunk)
    _rejected(
        dep,
        send(good_header, good_blob.with_chunks([*good_blob.chunks, good_blob.chunks[-1]])),
        grpc.StatusCode.INVALID_ARGUMENT,
        "more than",
    )
    _rejected(
        dep,
        send(good_header, good_blob.with_chunks(good_blob.chunks[:-1])),
        grpc.StatusCode.INVALID_ARGUMENT,
        "truncated",
    )
    _rejected(  # ... or a chunk of another vector in its place
        dep,
        send(good_header, good_blob.with_chunks(dup_blob.chunks)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "does not match its digest",
    )

    # (f) not a ciphertext: random bytes with a correct header, hash and signature
    junk = Ciphertext.raw(os.urandom(2000), [os.urandom(1000)])
    junk_header, _ = dep.build_upload("c2", info, blob=junk, weight=weights["c2"])
    _rejected(dep, send(junk_header, junk), grpc.StatusCode.INVALID_ARGUMENT, "InvalidCiphertext")
    assert not (dep.data / "blobs" / junk.digest.hex()).exists()
    # ... a well-formed ciphertext under another joint public key
    stranger = secagg.dealerless_keygen(n=3, t=2, params=dep.roster.params).public_key
    alien = dep.encrypt(vectors["c2"], key=stranger)
    alien_header, _ = dep.build_upload("c2", info, blob=alien, weight=weights["c2"])
    _rejected(
        dep,
        send(alien_header, alien),
        grpc.StatusCode.INVALID_ARGUMENT,
        "InvalidCiphertext",
        "joint public key",
    )
    # ... a ciphertext of the wrong length
    short = dep.encrypt(vectors["c2"][:100], key=key)
    short_header, _ = dep.build_upload("c2", info, blob=short, weight=weights["c2"])
    _rejected(
        dep,
        send(short_header, short),
        grpc.StatusCode.INVALID_ARGUMENT,
        "InvalidCiphertext",
        "vector length 100",
    )
    # ... a weight outside the budget
    _rejected(
        dep,
        send(variant(weight=0), good_blob),
        grpc.StatusCode.INVALID_ARGUMENT,
        "WeightBudgetExceeded",
    )

    # (g) bad signatures: one flipped bit; another client's key; another claimed sender
    flipped = pb.UploadHeader()
    flipped.CopyFrom(good_header)
    flipped.signature = bytes([good_header.signature[0] ^ 1]) + good_header.signature[1:]
    _rejected(
        dep,
        send(flipped, good_blob),
        grpc.StatusCode.UNAUTHENTICATED,
        "SignatureInvalid",
        "invalid signature by c2",
    )
    by_c3, _ = dep.build_upload("c3", info, blob=good_blob, weight=weights["c2"])
    by_c3.client_id = "c2"  # signed with c3's key
    _rejected(dep, send(by_c3, good_blob), grpc.StatusCode.UNAUTHENTICATED, "invalid signature")
    as_c3, _ = dep.build_upload("c3", info, blob=good_blob, weight=weights["c2"])
    _rejected(  # c3's valid upload sent over c2's connection
        dep,
        send(as_c3, good_blob),
        grpc.StatusCode.PERMISSION_DENIED,
        "does not match the authenticated certificate",
    )
    # a modified field after signing (weight) is caught by the signature too
    heavier = pb.UploadHeader()
    heavier.CopyFrom(good_header)
    heavier.weight = 1000
    _rejected(dep, send(heavier, good_blob), grpc.StatusCode.UNAUTHENTICATED, "invalid signature")

    # (h) an operator asks for a decryption of a single upload: the key holders refuse
    # (the server stores the requested aggregate as a blob; no other state changes)
    before = _state(dep, blobs=False)
    result = dep.admin_request_decryption(1, ["c1"])
    assert result["released"] is False, result
    assert result["refusals"], result
    for refusal in result["refusals"]:
        assert "1 contributor(s); the policy requires at least 2" in refusal["reason"], result
    assert _state(dep, blobs=False) == before
    assert dep.get_release(1) is None

    # the service still serves: valid uploads are accepted (c2 after all its failures)
    receipt = dep.upload("c2", good_header, good_blob)
    assert receipt.accepted_uploads == 2
    for name, seed in (("c3", 3), ("c4", 4)):
        dep.client(name, seed=seed, weight=weights[name])
    rel = dep.wait_release(1, timeout=60, alive=("server", "kh1", "kh2", "kh3"))
    dep.verify_release(rel)
    updates = [vectors["c1"], vectors["c2"], *(dep.recorded_update(c, 1) for c in ("c3", "c4"))]
    expected = weighted_mean(updates, [weights[c] for c in ("c1", "c2", "c3", "c4")])
    err = max_error(dep.model_of(rel), expected)
    assert err < 1e-6, f"released model differs from the FedAvg of the accepted uploads: {err}"
    rows = dep.db_rows("SELECT client_id, weight FROM uploads WHERE round=1 ORDER BY client_id")
    assert [(c, int(w)) for c, w in rows] == sorted(weights.items())
    for name in ("c3", "c4"):
        assert dep.wait_exit(name, timeout=60) == 0

    # (i) after the release: the same decryption of round 1 again gets only the stored
    # partials back (byte for byte, no fresh noise: the key holders' own record, not the
    # server's release), and nothing new is released
    dep.wait_round(lambda i: i.state == pb.FINISHED, timeout=30, what="FINISHED")
    rounds_before = dep.db_rows("SELECT * FROM rounds")
    partials_before = dep.db_rows("SELECT partial_digest FROM partials")
    result = dep.admin_request_decryption(1, ["c1", "c2", "c3", "c4"])
    assert result["refusals"] == [], result
    resent = [
        i for i in (1, 2, 3) if "resending the stored partial" in dep.procs[f"kh{i}"].output()
    ]
    assert len(resent) >= 2, resent
    digests = dep.db_rows("SELECT partial_digest FROM partials")
    assert {bytes(d) for (d,) in digests} == {bytes(d) for (d,) in partials_before}
    assert dep.db_rows("SELECT * FROM rounds") == rounds_before
    again = dep.get_release(1)
    assert again is not None and again.SerializeToString() == rel.SerializeToString()
    dep.assert_running("server", "kh1", "kh2", "kh3")
