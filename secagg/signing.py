"""Ed25519 signatures over the protocol's canonical digests.

Each signed statement has one digest function here, with its own domain tag, so a
signature can never be replayed as a different kind of statement. ``verify`` raises
:class:`~secagg.errors.SignatureInvalid`; it never returns ``False``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .envelope import digest_of
from .errors import SignatureInvalid


def upload_digest(
    *,
    deployment_id: str,
    round_number: int,
    client_id: str,
    nonce: bytes,
    global_model_hash: bytes,
    ciphertext_hash: bytes,
    weight: int,
    epsilon: float = 0.0,
) -> bytes:
    """What a client signs for an upload (ARCHITECTURE section 5), with its epsilon spent."""
    return digest_of(
        b"secagg/upload/v1",
        deployment_id.encode(),
        round_number,
        client_id.encode(),
        nonce,
        global_model_hash,
        ciphertext_hash,
        weight,
        float(epsilon),
    )


def withdrawal_digest(
    *, deployment_id: str, client_id: str, round_number: int, reason: str
) -> bytes:
    """What a client signs when it leaves the federation."""
    return digest_of(
        b"secagg/withdraw/v1",
        deployment_id.encode(),
        client_id.encode(),
        round_number,
        reason.encode(),
    )


def ceremony_digest(
    *, deployment_id: str, kind: int, sender: int, recipient: int, body: bytes
) -> bytes:
    """What a key holder signs for a key-ceremony message (over the body's SHA-256)."""
    return ceremony_digest_of_hash(
        deployment_id=deployment_id,
        kind=kind,
        sender=sender,
        recipient=recipient,
        body_sha256=hashlib.sha256(body).digest(),
    )


def ceremony_digest_of_hash(
    *, deployment_id: str, kind: int, sender: int, recipient: int, body_sha256: bytes
) -> bytes:
    """:func:`ceremony_digest` from the body's hash (what the audit log keeps)."""
    return digest_of(
        b"secagg/ceremony/v2", deployment_id.encode(), kind, sender, recipient, body_sha256
    )


def partial_signature_digest(
    *,
    deployment_id: str,
    round_number: int,
    keyholder: int,
    partial_digest: bytes,
    aggregate_digest: bytes,
) -> bytes:
    """What a key holder signs when it returns a partial decryption of an aggregate."""
    return digest_of(
        b"secagg/partial-sig/v1",
        deployment_id.encode(),
        round_number,
        keyholder,
        partial_digest,
        aggregate_digest,
    )


def refusal_digest(*, deployment_id: str, round_number: int, keyholder: int, reason: str) -> bytes:
    """What a key holder signs when it refuses a decryption task."""
    return digest_of(
        b"secagg/refusal/v1", deployment_id.encode(), round_number, keyholder, reason.encode()
    )


def release_digest(
    *,
    deployment_id: str,
    round_number: int,
    model_hash: bytes,
    aggregate_digest: bytes,
    quorum: Sequence[int],
    partial_digests: Sequence[bytes],
) -> bytes:
    """What the server signs when it releases a round's global model."""
    return digest_of(
        b"secagg/release/v1",
        deployment_id.encode(),
        round_number,
        model_hash,
        aggregate_digest,
        b"".join(i.to_bytes(4, "little") for i in quorum),
        b"".join(partial_digests),
    )


def sign(key: Ed25519PrivateKey, digest: bytes) -> bytes:
    """Ed25519 signature of a digest."""
    return key.sign(digest)


def verify(
    public_key: Ed25519PublicKey | bytes, signature: bytes, digest: bytes, *, who: str
) -> None:
    """Verify or raise :class:`SignatureInvalid` naming ``who``."""
    try:
        key = (
            Ed25519PublicKey.from_public_bytes(public_key)
            if isinstance(public_key, bytes)
            else public_key
        )
        key.verify(signature, digest)
    except (InvalidSignature, ValueError):
        raise SignatureInvalid(f"invalid signature by {who}") from None
