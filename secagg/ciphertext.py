"""Encrypted vectors: encryption under the joint public key and the validated wire form.

A vector of ``length`` values is split into ``ceil(length / N)`` BFV ciphertexts, one
fixed-point value per plaintext coefficient (:mod:`secagg.encoding`). SEAL encrypts
(scaling, NTT and randomness in C++). On the wire each ciphertext is two polynomials of
60-bit packed residues per data prime: 30 bytes per value for the default parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import tenseal.sealapi as seal

from secagg import constants as C
from secagg._internal.envelope import digest_of, parse, require
from secagg._internal.modarith import U64, pack60, packed_size, unpack60
from secagg._internal.seal_backend import backend_for
from secagg.encoding import as_vector, encode
from secagg.errors import InvalidCiphertext
from secagg.keys import JointPublicKey
from secagg.params import Parameters
from secagg.proto import core_pb2


def ciphertext_count(params: Parameters, length: int) -> int:
    """Number of ciphertexts for a vector of ``length`` values."""
    return -(-length // params.poly_modulus_degree)


@dataclass(frozen=True, eq=False)
class EncryptedVector:
    """An encrypted float vector: residues of shape ``(ciphertexts, 2, data primes, N)``."""

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

    @cached_property
    def _payload(self) -> bytes:
        return pack60(self.residues)

    @cached_property
    def digest(self) -> bytes:
        """SHA-256 content digest (binds parameters, public key, length and every residue)."""
        return _vector_digest(
            self.params, self.public_key_id, self.length, self.ciphertext_count, self._payload
        )

    def to_message(self) -> core_pb2.EncryptedVector:
        """The protobuf form."""
        return core_pb2.EncryptedVector(
            format_version=C.FORMAT_VERSION,
            params_id=self.params.id_bytes,
            public_key_id=self.public_key_id,
            length=self.length,
            ciphertext_count=self.ciphertext_count,
            payload=self._payload,
            digest=self.digest,
        )

    def to_bytes(self) -> bytes:
        """Serialize as an ``EncryptedVector`` protobuf message."""
        return self.to_message().SerializeToString()

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
        require(
            msg.format_version == C.FORMAT_VERSION, InvalidCiphertext, "unsupported format version"
        )
        require(
            msg.params_id == params.id_bytes,
            InvalidCiphertext,
            "ciphertext is for other parameters",
        )
        require(
            len(msg.public_key_id) == C.DIGEST_BYTES, InvalidCiphertext, "missing public key id"
        )
        require(
            1 <= msg.length <= C.MAX_VECTOR_LENGTH,
            InvalidCiphertext,
            f"invalid vector length {msg.length}",
        )
        count = ciphertext_count(params, msg.length)
        require(
            msg.ciphertext_count == count,
            InvalidCiphertext,
            "ciphertext count does not match the length",
        )
        n, L = params.poly_modulus_degree, len(params.data_primes)
        values = count * 2 * L * n
        require(
            len(msg.payload) == packed_size(values),
            InvalidCiphertext,
            f"payload of {len(msg.payload)} bytes; {packed_size(values)} expected for "
            f"{count} ciphertexts at the data level ({L} primes)",
        )
        payload = bytes(msg.payload)
        expected = _vector_digest(params, bytes(msg.public_key_id), msg.length, count, payload)
        require(
            expected == msg.digest,
            InvalidCiphertext,
            "digest mismatch: data corrupted or truncated",
        )
        residues = unpack60(payload, values).reshape(count, 2, L, n)
        _check_ciphertext_residues(residues, params)
        vec = cls(params, bytes(msg.public_key_id), msg.length, residues)
        vec.__dict__["_payload"] = payload  # cached_property: reuse the validated bytes
        return vec


def _vector_digest(
    params: Parameters, public_key_id: bytes, length: int, count: int, payload: bytes
) -> bytes:
    return digest_of(C.DOMAIN_CIPHERTEXT, params.id_bytes, public_key_id, length, count, payload)


def _check_ciphertext_residues(residues: U64, params: Parameters) -> None:
    bounds = np.asarray(params.data_primes, dtype=np.uint64).reshape(1, 1, -1, 1)
    if (residues >= bounds).any():
        raise InvalidCiphertext("residue not reduced modulo its prime")
    if not residues[:, 1].any(axis=(1, 2)).all():
        raise InvalidCiphertext("transparent ciphertext (c1 = 0) refused")


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
    n = params.poly_modulus_degree
    count = ciphertext_count(params, values.size)
    coeffs = encode(params, values, count * n).reshape(count, n)
    backend = backend_for(params)
    encryptor = public_key.seal_encryptor
    out = np.empty((count, 2, len(params.data_primes), n), dtype=np.uint64)
    for k in range(count):
        ct = seal.Ciphertext()
        encryptor.encrypt(backend.to_plaintext(coeffs[k]), ct)
        out[k] = backend.from_ciphertext(ct)
    return EncryptedVector(params, public_key.id_bytes, int(values.size), out)
