"""Confidentiality for key material: shares in transit and at rest.

* :func:`seal_to` / :func:`open_sealed`: a Shamir share for key holder ``j`` is sealed with
  an ephemeral X25519 key agreement against ``j``'s exchange key of this ceremony (a key
  pair ``j`` generated in memory for one key epoch and announced in a signed EXCHANGE_KEY
  message; nothing static), HKDF-SHA256, and ChaCha20-Poly1305, with the route, key
  epoch, joint public key and ceremony transcript bound as associated data. The relaying
  server sees only ciphertext, and once ``j`` dropped the exchange key, nobody can open
  the sealed shares the server kept (forward secrecy). (Authenticity comes from the
  sender's Ed25519 signature over the sealed message.)
* :func:`encrypt_at_rest` / :func:`decrypt_at_rest`: a key holder's share on disk,
  encrypted with ChaCha20-Poly1305 under a key derived by scrypt from a passphrase, or
  taken from a 32-byte key file.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from secagg.errors import InvalidKeyMaterial

_AT_REST_MAGIC = b"SAGR1"
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**15, 8, 1


def _share_key(shared: bytes, ephemeral: bytes, recipient: bytes, context: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=ephemeral + recipient,
        info=b"secagg/share/v1" + context,
    ).derive(shared)


def seal_to(
    recipient: X25519PublicKey, plaintext: bytes, *, context: bytes
) -> tuple[bytes, bytes, bytes]:
    """Encrypt ``plaintext`` to ``recipient``; returns (ephemeral public key, nonce, ciphertext)."""
    ephemeral = X25519PrivateKey.generate()
    eph_pub = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    rcpt = recipient.public_bytes(Encoding.Raw, PublicFormat.Raw)
    key = _share_key(ephemeral.exchange(recipient), eph_pub, rcpt, context)
    nonce = os.urandom(12)
    return eph_pub, nonce, ChaCha20Poly1305(key).encrypt(nonce, plaintext, context)


def open_sealed(
    private_key: X25519PrivateKey,
    ephemeral_public: bytes,
    nonce: bytes,
    ciphertext: bytes,
    *,
    context: bytes,
) -> bytes:
    """Decrypt a sealed message; raises :class:`InvalidKeyMaterial` if it does not authenticate."""
    try:
        eph = X25519PublicKey.from_public_bytes(ephemeral_public)
        rcpt = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        key = _share_key(private_key.exchange(eph), ephemeral_public, rcpt, context)
        return ChaCha20Poly1305(key).decrypt(nonce, ciphertext, context)
    except (InvalidTag, ValueError):
        raise InvalidKeyMaterial("sealed share does not authenticate") from None


def _at_rest_key(secret: bytes, salt: bytes, *, is_passphrase: bool) -> bytes:
    if is_passphrase:
        return Scrypt(salt=salt, length=32, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P).derive(secret)
    if len(secret) != 32:
        raise InvalidKeyMaterial("an at-rest key file must hold exactly 32 bytes")
    return secret


def encrypt_at_rest(plaintext: bytes, secret: bytes, *, is_passphrase: bool) -> bytes:
    """Encrypt key material for storage (scrypt for passphrases, raw 32-byte keys otherwise)."""
    salt = os.urandom(16)
    nonce = os.urandom(12)
    key = _at_rest_key(secret, salt, is_passphrase=is_passphrase)
    flag = b"P" if is_passphrase else b"K"
    header = _AT_REST_MAGIC + flag + salt + nonce
    return header + ChaCha20Poly1305(key).encrypt(nonce, plaintext, header)


def decrypt_at_rest(blob: bytes, secret: bytes, *, is_passphrase: bool) -> bytes:
    """Inverse of :func:`encrypt_at_rest`; raises :class:`InvalidKeyMaterial` on any failure."""
    head_len = len(_AT_REST_MAGIC) + 1 + 16 + 12
    if len(blob) < head_len + 16 or not blob.startswith(_AT_REST_MAGIC):
        raise InvalidKeyMaterial("not an encrypted key file")
    flag = blob[len(_AT_REST_MAGIC) : len(_AT_REST_MAGIC) + 1]
    if flag != (b"P" if is_passphrase else b"K"):
        raise InvalidKeyMaterial("key file was encrypted with the other kind of secret")
    salt = blob[len(_AT_REST_MAGIC) + 1 : len(_AT_REST_MAGIC) + 17]
    nonce = blob[len(_AT_REST_MAGIC) + 17 : head_len]
    key = _at_rest_key(secret, salt, is_passphrase=is_passphrase)
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, blob[head_len:], blob[:head_len])
    except InvalidTag:
        raise InvalidKeyMaterial("wrong passphrase or key, or the key file is corrupted") from None
