"""Key material: the joint public key and a key holder's share of the joint secret.

Security
--------
A :class:`KeyShare` is secret. Its ``repr`` never shows the residues, and
``to_bytes`` returns plaintext key material: store it only encrypted at rest (the key
holder service does). The joint public key's id is the digest of its serialized form;
clients must check that key against the key holders' signatures before encrypting
(the service layer does), otherwise a server could substitute its own key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from secagg import constants as C
from secagg._internal.envelope import digest_of, parse, require
from secagg._internal.modarith import U64, pack60, packed_size, unpack60
from secagg.errors import InvalidKeyMaterial
from secagg.params import Parameters
from secagg.proto import core_pb2

if TYPE_CHECKING:
    import tenseal.sealapi as seal


def _check_residues(residues: U64, primes: tuple[int, ...], what: str) -> None:
    bounds = np.asarray(primes, dtype=np.uint64).reshape(-1, 1)
    if (residues >= bounds).any():
        raise InvalidKeyMaterial(f"{what} has a residue not reduced modulo its prime")


@dataclass(frozen=True, eq=False)
class JointPublicKey:
    """The joint BFV public key ``(sum_i b_i, a)``, NTT form, at SEAL's key level."""

    params: Parameters
    keyholders: int
    threshold: int
    residues: U64 = field(repr=False)  # (2, key primes, N)

    @cached_property
    def _payload(self) -> bytes:
        return pack60(self.residues)

    @cached_property
    def id_bytes(self) -> bytes:
        """Digest identifying this key (binds parameters, n, t and the key itself)."""
        return digest_of(
            C.DOMAIN_PUBLIC_KEY_ID,
            self.params.id_bytes,
            self.keyholders,
            self.threshold,
            self._payload,
        )

    @property
    def id(self) -> str:
        """Hex form of :attr:`id_bytes`."""
        return self.id_bytes.hex()

    @cached_property
    def seal_encryptor(self) -> seal.Encryptor:
        """A SEAL encryptor for this key (built once)."""
        import tenseal.sealapi as seal

        from secagg._internal.seal_backend import backend_for

        backend = backend_for(self.params)
        return seal.Encryptor(backend.context, backend.to_public_key(self.residues))

    def to_bytes(self) -> bytes:
        """Serialize as a ``JointPublicKey`` protobuf message."""
        return core_pb2.JointPublicKey(
            format_version=C.FORMAT_VERSION,
            params_id=self.params.id_bytes,
            keyholders=self.keyholders,
            threshold=self.threshold,
            payload=self._payload,
            digest=self.id_bytes,
        ).SerializeToString()

    @classmethod
    def from_bytes(cls, blob: bytes, params: Parameters) -> JointPublicKey:
        """Parse and validate; raises :class:`InvalidKeyMaterial`."""
        msg = parse(core_pb2.JointPublicKey, blob, InvalidKeyMaterial, 64 * 1024**2)
        require(
            msg.params_id == params.id_bytes,
            InvalidKeyMaterial,
            "public key is for other parameters",
        )
        require(
            1 <= msg.threshold <= msg.keyholders <= params.max_keyholders,
            InvalidKeyMaterial,
            "public key has an invalid threshold or key-holder count",
        )
        n, k = params.poly_modulus_degree, len(params.coeff_modulus)
        require(
            len(msg.payload) == packed_size(2 * k * n),
            InvalidKeyMaterial,
            "public key payload has the wrong length",
        )
        residues = unpack60(msg.payload, 2 * k * n).reshape(2, k, n)
        _check_residues(
            residues.transpose(1, 0, 2).reshape(k, -1), params.coeff_modulus, "public key"
        )
        key = cls(params, msg.keyholders, msg.threshold, residues)
        require(key.id_bytes == msg.digest, InvalidKeyMaterial, "public key digest mismatch")
        return key


@dataclass(frozen=True, eq=False)
class KeyShare:
    """Key holder ``index``'s Shamir share ``S_index`` of the joint secret (NTT, data primes)."""

    params: Parameters
    index: int
    keyholders: int
    threshold: int
    public_key_id: bytes
    residues: U64 = field(repr=False)  # (data primes, N)

    def to_bytes(self) -> bytes:
        """Serialize (secret!) as a ``KeyShare`` protobuf message."""
        payload = pack60(self.residues)
        return core_pb2.KeyShare(
            format_version=C.FORMAT_VERSION,
            params_id=self.params.id_bytes,
            public_key_id=self.public_key_id,
            index=self.index,
            keyholders=self.keyholders,
            threshold=self.threshold,
            payload=payload,
            digest=self._digest(payload),
        ).SerializeToString()

    def _digest(self, payload: bytes) -> bytes:
        return digest_of(
            b"secagg/key-share/v1",
            self.params.id_bytes,
            self.public_key_id,
            self.index,
            self.keyholders,
            self.threshold,
            payload,
        )

    @classmethod
    def from_bytes(cls, blob: bytes, params: Parameters) -> KeyShare:
        """Parse and validate; raises :class:`InvalidKeyMaterial`."""
        msg = parse(core_pb2.KeyShare, blob, InvalidKeyMaterial, 64 * 1024**2)
        require(
            msg.params_id == params.id_bytes,
            InvalidKeyMaterial,
            "key share is for other parameters",
        )
        require(
            1 <= msg.threshold <= msg.keyholders <= params.max_keyholders
            and 1 <= msg.index <= msg.keyholders,
            InvalidKeyMaterial,
            "key share has an invalid index, threshold or key-holder count",
        )
        n, L = params.poly_modulus_degree, len(params.data_primes)
        require(
            len(msg.payload) == packed_size(L * n),
            InvalidKeyMaterial,
            "key share payload has the wrong length",
        )
        residues = unpack60(msg.payload, L * n).reshape(L, n)
        _check_residues(residues, params.data_primes, "key share")
        share = cls(
            params, msg.index, msg.keyholders, msg.threshold, bytes(msg.public_key_id), residues
        )
        require(
            share._digest(msg.payload) == msg.digest,
            InvalidKeyMaterial,
            "key share digest mismatch",
        )
        return share


@dataclass(frozen=True, eq=False)
class KeySet:
    """Result of a local run of dealerless key generation."""

    public_key: JointPublicKey
    shares: tuple[KeyShare, ...] = field(repr=False)
