"""Codecs of the key-ceremony message bodies (``CeremonyMessage.body``).

=================  ===================================================================
kind               body
=================  ===================================================================
EXCHANGE_KEY       this ceremony's 32-byte X25519 public key (fresh per key epoch)
SEED_COMMIT        32-byte commitment to the key holder's seed share
SEED_REVEAL        the 32-byte seed share
KEY_CONTRIBUTION   ``b_i`` residues, [key-level prime][coefficient], 60-bit packed
ENCRYPTED_SHARE    a ``SealedShare`` whose plaintext is ``f_i(j)``, [data prime][coefficient],
                   60-bit packed
ENDORSEMENT        the 32-byte id of the joint public key
KEY_COMMIT         ``H(b_i) || H(share for 1) || ... || H(share for n)``, 32 bytes each
                   (:func:`contribution_hash`, :func:`share_hash`)
TRANSCRIPT         :func:`transcript_hash` of every EXCHANGE_KEY, SEED_COMMIT, SEED_REVEAL,
                   KEY_COMMIT and KEY_CONTRIBUTION the sender used
TEST_CIPHERTEXT    a :class:`~secagg.keycheck.KeyProbe`: ``c0`` heads, then ``c1``, packed
TEST_PARTIAL       the sender's partials of every probe (:func:`secagg.keycheck.probe_partials`)
=================  ===================================================================

``H(b_i)`` is taken over the SHA-256 of the body (the digest each message's signature
covers and the audit log keeps), so ``secagg audit verify`` can check every logged
contribution against its logged commitment without the body.

Commitments and share contexts bind the key epoch (like every message's signature,
:class:`~secagg.protocol.statements.CeremonyStatement`): nothing of one epoch's ceremony
fits another's.

Every body except a sealed share has one size per deployment (:func:`body_size`): the
server refuses any other.

The server (to check sizes and compute the joint public key) and the key holders (to
build and read messages) both use these functions; nobody packs bodies by hand.
Decoders check sizes and raise :class:`~secagg.errors.InvalidKeyMaterial`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from google.protobuf.message import DecodeError

from secagg import constants as C
from secagg._internal.envelope import require_reduced
from secagg._internal.modarith import U64, pack60, packed_size, unpack60
from secagg.errors import InvalidKeyMaterial
from secagg.keycheck import VALUES, KeyProbe, quorums_per_keyholder
from secagg.params import Parameters
from secagg.proto import service_pb2 as pb

#: Upper bound on a sealed share's serialized size.
MAX_SEALED_SHARE_BYTES = 1024 * 1024


def key_contribution_size(params: Parameters) -> int:
    """Bytes of a KEY_CONTRIBUTION body."""
    return packed_size(len(params.coeff_modulus) * params.poly_modulus_degree)


def encode_key_contribution(b_i: U64) -> bytes:
    """A key holder's public-key contribution ``b_i`` as a message body."""
    return pack60(np.ascontiguousarray(b_i).reshape(-1))


def decode_key_contribution(body: bytes, params: Parameters) -> U64:
    """``b_i`` from a body, shape (key-level primes, N); raises InvalidKeyMaterial."""
    k, n = len(params.coeff_modulus), params.poly_modulus_degree
    if len(body) != key_contribution_size(params):
        raise InvalidKeyMaterial("public-key contribution has the wrong size")
    out = unpack60(body, k * n).reshape(k, n)
    require_reduced(out, params.coeff_modulus, InvalidKeyMaterial, "contribution not reduced")
    return out


def share_plaintext_size(params: Parameters) -> int:
    """Bytes of a Shamir share's plaintext (inside the sealed box)."""
    return len(params.data_primes) * params.poly_modulus_degree * 60 // 8


def encode_share(piece: U64) -> bytes:
    """A Shamir share ``f_i(j)`` as the plaintext to seal."""
    return pack60(np.ascontiguousarray(piece).reshape(-1))


def decode_share(plain: bytes, params: Parameters, *, sender: int) -> U64:
    """``f_i(j)`` from an opened sealed share, shape (data primes, N)."""
    width = len(params.data_primes) * params.poly_modulus_degree
    if len(plain) != share_plaintext_size(params):
        raise InvalidKeyMaterial(f"share from key holder {sender} has the wrong size")
    out = unpack60(plain, width).reshape(len(params.data_primes), params.poly_modulus_degree)
    require_reduced(
        out, params.data_primes, InvalidKeyMaterial, f"share from key holder {sender} not reduced"
    )
    return out


def encode_sealed(ephemeral_public_key: bytes, nonce: bytes, ciphertext: bytes) -> bytes:
    """An ENCRYPTED_SHARE body."""
    return pb.SealedShare(
        ephemeral_public_key=ephemeral_public_key, nonce=nonce, ciphertext=ciphertext
    ).SerializeToString()


def decode_sealed(body: bytes) -> tuple[bytes, bytes, bytes]:
    """(ephemeral public key, nonce, ciphertext) of an ENCRYPTED_SHARE body."""
    if len(body) > MAX_SEALED_SHARE_BYTES:
        raise InvalidKeyMaterial("sealed share too large")
    sealed = pb.SealedShare()
    try:
        sealed.ParseFromString(body)
    except DecodeError:
        raise InvalidKeyMaterial("sealed share is not a SealedShare message") from None
    return sealed.ephemeral_public_key, sealed.nonce, sealed.ciphertext


def share_context(
    deployment_id: str,
    sender: int,
    recipient: int,
    public_key_id: bytes,
    *,
    epoch: int = 1,
    transcript: bytes = b"",
) -> bytes:
    """Associated data binding a sealed share to its route, key epoch, joint public key
    and the ceremony transcript every key holder agreed on (:func:`transcript_hash`)."""
    route = f"{deployment_id}/e{epoch}/{sender}->{recipient}".encode()
    return route + public_key_id + transcript


# --------------------------------------------------------------------- exchange keys
def encode_exchange_key(public_key: X25519PublicKey) -> bytes:
    """An EXCHANGE_KEY body: the raw 32-byte X25519 public key shares are sealed to."""
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def decode_exchange_key(body: bytes, *, sender: int) -> X25519PublicKey:
    """A key holder's ceremony exchange key; raises InvalidKeyMaterial.

    A key of small order (every agreement with it gives the all-zero secret) is refused.
    """
    if len(body) != C.EXCHANGE_KEY_BYTES:
        raise InvalidKeyMaterial(f"exchange key of key holder {sender} has the wrong size")
    key = X25519PublicKey.from_public_bytes(body)
    try:
        X25519PrivateKey.generate().exchange(key)
    except ValueError:
        raise InvalidKeyMaterial(f"exchange key of key holder {sender} has small order") from None
    return key


# --------------------------------------------------------------------- transcript
#: The phases a TRANSCRIPT covers, in hashing order: everything the shares depend on.
TRANSCRIPT_KINDS = (
    pb.EXCHANGE_KEY,
    pb.SEED_COMMIT,
    pb.SEED_REVEAL,
    pb.KEY_COMMIT,
    pb.KEY_CONTRIBUTION,
)


def transcript_hash(
    deployment_id: str, *, epoch: int, digests: Mapping[int, Mapping[int, bytes]]
) -> bytes:
    """The TRANSCRIPT body: ``digests`` kind -> sender -> SHA-256 of the body, hashed.

    Every kind of :data:`TRANSCRIPT_KINDS` in that order, senders ascending, under the
    deployment and the key epoch. Over body digests (what signatures cover and the
    audit log keeps), so a verifier with the log can recompute it.
    """
    dep = deployment_id.encode()
    h = hashlib.sha256(C.DOMAIN_CEREMONY_TRANSCRIPT)
    h.update(len(dep).to_bytes(4, "big") + dep + epoch.to_bytes(4, "big"))
    for kind in TRANSCRIPT_KINDS:
        by_sender = digests[kind]
        h.update(int(kind).to_bytes(4, "big") + len(by_sender).to_bytes(4, "big"))
        for sender in sorted(by_sender):
            h.update(sender.to_bytes(4, "big") + by_sender[sender])
    return h.digest()


# --------------------------------------------------------------------- commitments
def _commitment(
    domain: bytes, deployment_id: str, sender: int, recipient: int, data: bytes, epoch: int
) -> bytes:
    route = (
        deployment_id.encode()
        + b"\0"
        + epoch.to_bytes(4, "big")
        + sender.to_bytes(4, "big")
        + recipient.to_bytes(4, "big")
    )
    return hashlib.sha256(domain + len(route).to_bytes(4, "big") + route + data).digest()


def contribution_hash(deployment_id: str, sender: int, body: bytes, *, epoch: int = 1) -> bytes:
    """What KEY_COMMIT commits to for a KEY_CONTRIBUTION body (of key epoch ``epoch``)."""
    return contribution_digest_hash(
        deployment_id, sender, hashlib.sha256(body).digest(), epoch=epoch
    )


def contribution_digest_hash(
    deployment_id: str, sender: int, body_sha256: bytes, *, epoch: int = 1
) -> bytes:
    """:func:`contribution_hash` from the body's SHA-256 (what the audit log keeps)."""
    return _commitment(C.DOMAIN_KEY_COMMIT, deployment_id, sender, 0, body_sha256, epoch)


def share_hash(
    deployment_id: str, sender: int, recipient: int, plain: bytes, *, epoch: int = 1
) -> bytes:
    """What KEY_COMMIT commits to for one recipient's share plaintext (:func:`encode_share`)."""
    return _commitment(C.DOMAIN_SHARE_COMMIT, deployment_id, sender, recipient, plain, epoch)


def encode_key_commit(
    deployment_id: str,
    sender: int,
    contribution: bytes,
    shares: dict[int, bytes],
    *,
    epoch: int = 1,
) -> bytes:
    """A KEY_COMMIT body: the contribution body and every share plaintext (1..n), hashed."""
    return contribution_hash(deployment_id, sender, contribution, epoch=epoch) + b"".join(
        share_hash(deployment_id, sender, j, shares[j], epoch=epoch) for j in sorted(shares)
    )


def decode_key_commit(body: bytes, keyholders: int) -> tuple[bytes, tuple[bytes, ...]]:
    """(contribution hash, share hash for 1..n) of a KEY_COMMIT body."""
    if len(body) != C.DIGEST_BYTES * (keyholders + 1):
        raise InvalidKeyMaterial("key commitment has the wrong size")
    hashes = [body[k : k + C.DIGEST_BYTES] for k in range(0, len(body), C.DIGEST_BYTES)]
    return hashes[0], tuple(hashes[1:])


# --------------------------------------------------------------------- test decryption
def _probe_shape(params: Parameters) -> tuple[int, int]:
    return len(params.data_primes), params.poly_modulus_degree


def probe_size(params: Parameters, keyholders: int) -> int:
    """Bytes of a TEST_CIPHERTEXT body."""
    primes, n = _probe_shape(params)
    return packed_size(primes * ((keyholders + 1) * VALUES + 2 * n))


def encode_probe(probe: KeyProbe) -> bytes:
    """A TEST_CIPHERTEXT body."""
    return pack60(np.concatenate([probe.c0.reshape(-1), probe.c1.reshape(-1)]))


def decode_probe(
    body: bytes, params: Parameters, *, keyholders: int, public_key_id: bytes, sender: int
) -> KeyProbe:
    """A key holder's probe from its TEST_CIPHERTEXT body; raises InvalidKeyMaterial."""
    primes, n = _probe_shape(params)
    if len(body) != probe_size(params, keyholders):
        raise InvalidKeyMaterial(f"test ciphertexts of key holder {sender} have the wrong size")
    flat = unpack60(body, primes * ((keyholders + 1) * VALUES + 2 * n))
    head = (keyholders + 1) * primes * VALUES
    c0 = flat[:head].reshape(keyholders + 1, primes, VALUES)
    c1 = flat[head:].reshape(2, primes, n)
    for part in (c0, c1):
        require_reduced(
            part, params.data_primes, InvalidKeyMaterial, f"test ciphertext of {sender} not reduced"
        )
    return KeyProbe(params, public_key_id, c0, c1)


def _partials_shape(params: Parameters, keyholders: int, threshold: int) -> tuple[int, ...]:
    per = quorums_per_keyholder(keyholders, threshold)
    return (keyholders, per, keyholders + 1, len(params.data_primes), VALUES)


def probe_partials_size(params: Parameters, keyholders: int, threshold: int) -> int:
    """Bytes of a TEST_PARTIAL body."""
    return packed_size(int(np.prod(_partials_shape(params, keyholders, threshold))))


def encode_probe_partials(partials: U64) -> bytes:
    """A TEST_PARTIAL body."""
    return pack60(np.ascontiguousarray(partials).reshape(-1))


def decode_probe_partials(
    body: bytes, params: Parameters, *, keyholders: int, threshold: int, sender: int
) -> U64:
    """A key holder's probe partials from its TEST_PARTIAL body; raises InvalidKeyMaterial."""
    shape = _partials_shape(params, keyholders, threshold)
    if len(body) != probe_partials_size(params, keyholders, threshold):
        raise InvalidKeyMaterial(f"test partials of key holder {sender} have the wrong size")
    out = unpack60(body, int(np.prod(shape))).reshape(shape)
    require_reduced(
        out, params.data_primes, InvalidKeyMaterial, f"test partial of {sender} not reduced"
    )
    return out


def body_size(kind: int, params: Parameters, keyholders: int, threshold: int) -> int | None:
    """The exact size of a body of ``kind`` (None: sealed shares, capped instead)."""
    sizes: dict[int, int] = {
        pb.EXCHANGE_KEY: C.EXCHANGE_KEY_BYTES,
        pb.TRANSCRIPT: C.DIGEST_BYTES,
        pb.SEED_COMMIT: 32,
        pb.SEED_REVEAL: 32,
        pb.ENDORSEMENT: 32,
        pb.KEY_CONTRIBUTION: key_contribution_size(params),
        pb.KEY_COMMIT: C.DIGEST_BYTES * (keyholders + 1),
        pb.TEST_CIPHERTEXT: probe_size(params, keyholders),
        pb.TEST_PARTIAL: probe_partials_size(params, keyholders, threshold),
    }
    return sizes.get(kind)
