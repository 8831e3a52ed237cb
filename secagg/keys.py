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
from typing import TYPE_CHECKING, ClassVar, TypeVar

from secagg import constants as C
from secagg._internal.envelope import (
    Envelope,
    parse,
    require,
    require_reduced,
    unpack_residues,
)
from secagg._internal.modarith import U64
from secagg.errors import InvalidKeyMaterial
from secagg.params import Parameters
from secagg.proto import core_pb2

if TYPE_CHECKING:
    import tenseal.sealapi as seal

#: Size cap of a serialized public key or key share.
_MAX_KEY_BYTES = 64 * 1024**2

_KeyMessage = TypeVar("_KeyMessage", core_pb2.JointPublicKey, core_pb2.KeyShare)


def _parse_key_message(
    message_type: type[_KeyMessage], blob: bytes, params: Parameters, what: str
) -> _KeyMessage:
    """The stages both kinds of key material share: size cap, parse, version, parameter id."""
    msg = parse(message_type, blob, InvalidKeyMaterial, _MAX_KEY_BYTES)
    require(msg.params_id == params.id_bytes, InvalidKeyMaterial, f"{what} is for other parameters")
    return msg


def _key_residues(
    payload: bytes, shape: tuple[int, ...], primes: tuple[int, ...], what: str
) -> U64:
    """The payload stage both kinds of key material share: exact length, reduced residues."""
    err = InvalidKeyMaterial
    residues = unpack_residues(payload, shape, err, f"{what} payload has the wrong length")
    require_reduced(residues, primes, err, f"{what} has a residue not reduced modulo its prime")
    return residues


@dataclass(frozen=True, eq=False)
class JointPublicKey(Envelope[core_pb2.JointPublicKey]):
    """The joint BFV public key ``(sum_i b_i, a)``, NTT form, at SEAL's key level."""

    DOMAIN: ClassVar[bytes] = C.DOMAIN_PUBLIC_KEY_ID
    params: Parameters
    keyholders: int
    threshold: int
    residues: U64 = field(repr=False)  # (2, key primes, N)

    def _digested_header(self) -> tuple[int | bytes, ...]:
        return (self.keyholders, self.threshold)

    def _header_message(self) -> core_pb2.JointPublicKey:
        return core_pb2.JointPublicKey(keyholders=self.keyholders, threshold=self.threshold)

    @property
    def id_bytes(self) -> bytes:
        """Digest identifying this key (binds parameters, n, t and the key itself)."""
        return self.digest

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

    @classmethod
    def from_bytes(cls, blob: bytes, params: Parameters) -> JointPublicKey:
        """Parse and validate; raises :class:`InvalidKeyMaterial`."""
        err = InvalidKeyMaterial
        msg = _parse_key_message(core_pb2.JointPublicKey, blob, params, "public key")
        require(
            1 <= msg.threshold <= msg.keyholders <= params.max_keyholders,
            err,
            "public key has an invalid threshold or key-holder count",
        )
        shape = (2, len(params.coeff_modulus), params.poly_modulus_degree)
        payload = bytes(msg.payload)
        residues = _key_residues(payload, shape, params.coeff_modulus, "public key")
        key = cls(params, msg.keyholders, msg.threshold, residues)
        key._adopt_payload(payload)
        require(key.id_bytes == msg.digest, err, "public key digest mismatch")
        return key


@dataclass(frozen=True, eq=False)
class KeyShare(Envelope[core_pb2.KeyShare]):
    """Key holder ``index``'s Shamir share ``S_index`` of the joint secret (NTT, data primes)."""

    DOMAIN: ClassVar[bytes] = b"secagg/key-share/v1"
    params: Parameters
    index: int
    keyholders: int
    threshold: int
    public_key_id: bytes
    residues: U64 = field(repr=False)  # (data primes, N)

    def _digested_header(self) -> tuple[int | bytes, ...]:
        return (self.public_key_id, self.index, self.keyholders, self.threshold)

    def _header_message(self) -> core_pb2.KeyShare:
        return core_pb2.KeyShare(
            public_key_id=self.public_key_id,
            index=self.index,
            keyholders=self.keyholders,
            threshold=self.threshold,
        )

    def to_bytes(self) -> bytes:
        """Serialize (secret!) as a ``KeyShare`` protobuf message."""
        return super().to_bytes()

    @classmethod
    def from_bytes(cls, blob: bytes, params: Parameters) -> KeyShare:
        """Parse and validate; raises :class:`InvalidKeyMaterial`."""
        err = InvalidKeyMaterial
        msg = _parse_key_message(core_pb2.KeyShare, blob, params, "key share")
        require(
            1 <= msg.threshold <= msg.keyholders <= params.max_keyholders
            and 1 <= msg.index <= msg.keyholders,
            err,
            "key share has an invalid index, threshold or key-holder count",
        )
        shape = (len(params.data_primes), params.poly_modulus_degree)
        payload = bytes(msg.payload)
        residues = _key_residues(payload, shape, params.data_primes, "key share")
        share = cls(
            params, msg.index, msg.keyholders, msg.threshold, bytes(msg.public_key_id), residues
        )
        share._adopt_payload(payload)
        require(share.digest == msg.digest, err, "key share digest mismatch")
        return share


@dataclass(frozen=True, eq=False)
class KeySet:
    """Result of a local run of dealerless key generation."""

    public_key: JointPublicKey
    shares: tuple[KeyShare, ...] = field(repr=False)
