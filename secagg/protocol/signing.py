"""Ed25519 signing and verification, the one primitive under every signed statement.

The byte strings that are signed are defined by the statements in
:mod:`secagg.protocol.statements`, one digest method each. ``verify`` raises
:class:`~secagg.errors.SignatureInvalid`; it never returns ``False``.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from secagg.errors import SignatureInvalid


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
