"""Codecs of the key-ceremony message bodies (``CeremonyMessage.body``).

=================  ===================================================================
kind               body
=================  ===================================================================
SEED_COMMIT        32-byte commitment to the key holder's seed share
SEED_REVEAL        the 32-byte seed share
KEY_CONTRIBUTION   ``b_i`` residues, [key-level prime][coefficient], 60-bit packed
ENCRYPTED_SHARE    a ``SealedShare`` whose plaintext is ``f_i(j)``, [data prime][coefficient],
                   60-bit packed
ENDORSEMENT        the 32-byte id of the joint public key
=================  ===================================================================

The server (to check sizes and compute the joint public key) and the key holders (to
build and read messages) both use these functions; nobody packs bodies by hand.
Decoders check sizes and raise :class:`~secagg.errors.InvalidKeyMaterial`.
"""

from __future__ import annotations

import numpy as np
from google.protobuf.message import DecodeError

from secagg._internal.modarith import U64, pack60, packed_size, unpack60
from secagg.errors import InvalidKeyMaterial
from secagg.params import Parameters
from secagg.proto import service_pb2 as pb

#: Bodies of these kinds have a fixed size (bytes).
FIXED_BODY_BYTES = {pb.SEED_COMMIT: 32, pb.SEED_REVEAL: 32, pb.ENDORSEMENT: 32}
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
    return unpack60(body, k * n).reshape(k, n)


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
    return unpack60(plain, width).reshape(len(params.data_primes), params.poly_modulus_degree)


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


def share_context(deployment_id: str, sender: int, recipient: int, public_key_id: bytes) -> bytes:
    """Associated data binding a sealed share to its route and the joint public key."""
    return f"{deployment_id}/{sender}->{recipient}".encode() + public_key_id
