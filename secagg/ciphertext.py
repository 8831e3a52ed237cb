"""Encrypted vectors: encryption under the joint public key and the validated wire form.

A vector of ``length`` values is split into ``ceil(length / N)`` BFV ciphertexts, one
fixed-point value per plaintext coefficient (:mod:`secagg.encoding`). SEAL encrypts
(scaling, NTT and randomness in C++). On the wire each ciphertext is two polynomials of
60-bit packed residues per data prime: 45 bytes per value for the default parameters
(three data primes; the third pays for the key's lifetime decryption budget).

:func:`encrypt_chunks` is the streaming form for vectors of any size: it encodes,
encrypts and packs :data:`~secagg.constants.CHUNK_CIPHERTEXTS` ciphertexts at a time
(the chunks of :mod:`secagg.chunked`), so nothing holds the whole ciphertext.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import tenseal.sealapi as seal

from secagg import constants as C
from secagg._internal.envelope import (
    Envelope,
    parse,
    require,
    require_reduced,
    unpack_residues,
)
from secagg._internal.modarith import U64, packed_size
from secagg._internal.seal_backend import backend_for
from secagg.encoding import F64, I64, as_integer_vector, as_vector, encode, encode_integers
from secagg.errors import InvalidCiphertext
from secagg.keys import JointPublicKey
from secagg.params import Parameters
from secagg.proto import core_pb2


def ciphertext_count(params: Parameters, length: int) -> int:
    """Number of ciphertexts for a vector of ``length`` values."""
    return -(-length // params.poly_modulus_degree)


@dataclass(frozen=True, eq=False)
class EncryptedVector(Envelope[core_pb2.EncryptedVector]):
    """An encrypted float vector: residues of shape ``(ciphertexts, 2, data primes, N)``.

    Its :attr:`digest` binds parameters, public key, length and every residue.
    """

    DOMAIN: ClassVar[bytes] = C.DOMAIN_CIPHERTEXT
    CHUNKED: ClassVar[bool] = True
    params: Parameters
    public_key_id: bytes
    length: int
    residues: U64 = field(repr=False)

    @property
    def ciphertext_count(self) -> int:
        """Number of BFV ciphertexts."""
        return int(self.residues.shape[0])

    def __len__(self) -> int:
        return self.length

    def _digested_header(self) -> tuple[int | bytes, ...]:
        return (self.public_key_id, self.length, self.ciphertext_count)

    def _header_message(self) -> core_pb2.EncryptedVector:
        return core_pb2.EncryptedVector(
            public_key_id=self.public_key_id,
            length=self.length,
            ciphertext_count=self.ciphertext_count,
        )

    @classmethod
    def from_bytes(
        cls, blob: bytes, params: Parameters, *, max_bytes: int | None = None
    ) -> EncryptedVector:
        """Parse and validate untrusted bytes.

        Stages: size cap, protobuf parse, header checks (version, parameter id, length,
        ciphertext count, payload size — which also rejects other levels), digest, then
        residue ranges and non-transparency. SEAL never sees the input.

        Raises
        ------
        InvalidCiphertext
            On any failure; the message says which check failed.
        """
        msg = parse(core_pb2.EncryptedVector, blob, InvalidCiphertext, max_bytes)
        return cls.from_message(msg, params)

    @classmethod
    def from_message(cls, msg: core_pb2.EncryptedVector, params: Parameters) -> EncryptedVector:
        """Validate an already parsed message (see :meth:`from_bytes`)."""
        err = InvalidCiphertext
        count = check_vector_header(msg, params)
        require(not msg.chunk_digests, err, "a whole vector lists no chunk digests")
        L = len(params.data_primes)
        shape = (count, 2, L, params.poly_modulus_degree)
        payload = bytes(msg.payload)
        residues = unpack_residues(
            payload,
            shape,
            err,
            f"payload of {len(payload)} bytes; {packed_size(math.prod(shape))} expected for "
            f"{count} ciphertexts at the data level ({L} primes)",
        )
        vec = cls(params, bytes(msg.public_key_id), msg.length, residues)
        vec._adopt_payload(payload)
        require(vec.digest == msg.digest, err, "digest mismatch: data corrupted or truncated")
        require_reduced(residues, params.data_primes, err, "residue not reduced modulo its prime")
        require_not_transparent(residues)
        return vec


def check_vector_header(msg: core_pb2.EncryptedVector, params: Parameters) -> int:
    """Check a vector message's header fields (whole or head); returns its ciphertext count.

    Raises :class:`InvalidCiphertext` naming the field that is wrong.
    """
    err = InvalidCiphertext
    require(msg.format_version == C.FORMAT_VERSION, err, "unsupported format version")
    require(msg.params_id == params.id_bytes, err, "ciphertext is for other parameters")
    require(len(msg.public_key_id) == C.DIGEST_BYTES, err, "missing public key id")
    require(1 <= msg.length <= C.MAX_VECTOR_LENGTH, err, f"invalid vector length {msg.length}")
    count = ciphertext_count(params, msg.length)
    require(msg.ciphertext_count == count, err, "ciphertext count does not match the length")
    return count


def require_not_transparent(residues: U64) -> None:
    """Refuse a ciphertext whose ``c1`` is zero (its plaintext is in the clear).

    ``residues`` has shape ``(ciphertexts, 2, primes, N)``; raises :class:`InvalidCiphertext`.
    """
    require(
        bool(residues[:, 1].any(axis=(1, 2)).all()),
        InvalidCiphertext,
        "transparent ciphertext (c1 = 0) refused",
    )


def encrypt(public_key: JointPublicKey, vector: object) -> EncryptedVector:
    """Encrypt a 1-D float vector of any length under the joint public key.

    Raises
    ------
    EncodingError
        If the input is not a finite 1-D vector or a value is out of range.

    Security
    --------
    Check ``public_key`` against the key holders' endorsements before calling this.
    Values must satisfy ``|x| < params.max_abs_value`` (just below ``value_bound``).
    """
    params = public_key.params
    values = as_vector(vector)
    count = ciphertext_count(params, values.size)
    coeffs = encode(params, values, count * params.poly_modulus_degree)
    return _encrypt_coefficients(public_key, coeffs, values.size)


def encrypt_integers(public_key: JointPublicKey, vector: object) -> EncryptedVector:
    """Encrypt a 1-D integer vector: the integer path, with no float encoder.

    Each integer ``z`` becomes the plaintext coefficient ``z mod t`` and so decrypts as
    the fixed-point value ``z * 2^-f`` (:func:`secagg.encoding.encode_integers`);
    aggregates of such vectors decrypt and combine exactly like float ones.

    Raises
    ------
    EncodingError
        If the input is not a 1-D integer vector or some ``|z| >= value_bound * 2^f``.

    Security
    --------
    Check ``public_key`` against the key holders' endorsements before calling this.
    """
    params = public_key.params
    values = as_integer_vector(vector)
    count = ciphertext_count(params, values.size)
    coeffs = encode_integers(params, values, count * params.poly_modulus_degree)
    return _encrypt_coefficients(public_key, coeffs, values.size)


def encrypt_chunks(
    public_key: JointPublicKey, vector: object, *, integers: bool = False
) -> Iterator[tuple[bytes, bytes]]:
    """Encrypt a vector chunk by chunk: each chunk's packed payload and digest, in order.

    The streaming form of :func:`encrypt` (``integers=True``: of
    :func:`encrypt_integers`). :data:`~secagg.constants.CHUNK_CIPHERTEXTS` ciphertexts are
    encoded, encrypted and packed at a time, so memory beyond the input stays O(chunk)
    however long the vector is. Chunk ``i`` is exactly chunk ``i`` of the whole
    vector's payload; build the head from the digests once the iterator is exhausted::

        head = VectorHead.build(params, public_key.id_bytes, len(vector), digests)

    (:meth:`secagg.chunked.VectorHead.build`); ``head.digest`` is the digest
    ``encrypt(...).digest`` has for the same ciphertexts.

    Raises
    ------
    EncodingError
        At the call if the input is not a finite, non-empty 1-D vector (integers: of an
        integer dtype); while iterating, at the chunk holding a value out of range
        (discard the chunks already produced).

    Security
    --------
    Check ``public_key`` against the key holders' endorsements before calling this. A
    caller that stops early holds a prefix of a vector, which no head can certify.
    """
    if integers:
        return _chunks(public_key, as_integer_vector(vector), encode_integers)
    return _chunks(public_key, as_vector(vector), encode)


def _chunks(
    public_key: JointPublicKey,
    values: F64 | I64,
    encoder: Callable[[Parameters, Any, int], U64],
) -> Iterator[tuple[bytes, bytes]]:
    """Internal: the generator behind :func:`encrypt_chunks` (input already validated)."""
    from secagg.chunked import chunk_count, chunk_span, pack_chunk  # imports this module

    params = public_key.params
    n = params.poly_modulus_degree
    count = ciphertext_count(params, values.size)
    for index in range(chunk_count(count)):
        start, stop = chunk_span(index, count)
        coeffs = encoder(params, values[start * n : stop * n], (stop - start) * n)
        yield pack_chunk(index, _encrypt_residues(public_key, coeffs))


def _encrypt_coefficients(public_key: JointPublicKey, coeffs: U64, length: int) -> EncryptedVector:
    """Internal: SEAL-encrypt padded plaintext coefficients, ``N`` per ciphertext."""
    residues = _encrypt_residues(public_key, coeffs)
    return EncryptedVector(public_key.params, public_key.id_bytes, length, residues)


def _encrypt_residues(public_key: JointPublicKey, coeffs: U64) -> U64:
    """Internal: residues ``(ciphertexts, 2, primes, N)`` of padded plaintext coefficients."""
    params = public_key.params
    n = params.poly_modulus_degree
    count = coeffs.size // n
    coeffs = coeffs.reshape(count, n)
    backend = backend_for(params)
    encryptor = public_key.seal_encryptor
    out = np.empty((count, 2, len(params.data_primes), n), dtype=np.uint64)
    for k in range(count):
        ct = seal.Ciphertext()
        encryptor.encrypt(backend.to_plaintext(coeffs[k]), ct)
        out[k] = backend.from_ciphertext(ct)
    return out
