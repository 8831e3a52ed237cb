"""Internal: staged parsing and digests of the protobuf envelopes in ``proto/core.proto``.

Not part of the public API. Parsing at the trust boundary goes in stages: size cap,
protobuf parse, then field checks by the caller, then the digest. Digests are SHA-256
over a domain tag and a fixed little-endian encoding of the header fields, then the
payload; ``digest_of`` is the one place that defines those byte strings.

The field checks every residue-carrying envelope shares live here too: the exact
payload length (:func:`unpack_residues`) and the residue ranges (:func:`require_reduced`).
Each takes the caller's error class and message, so every envelope keeps its own precise
error. :class:`Envelope` is the one definition of what those envelopes share on the way
out: the common fields, the packed payload and the digest.
"""

from __future__ import annotations

import hashlib
import math
import struct
from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar, Generic, Protocol, TypeVar

import numpy as np
from google.protobuf.message import DecodeError, Message

from secagg import constants as C
from secagg._internal.modarith import U64, pack60, packed_size, unpack60
from secagg.errors import SecAggError

if TYPE_CHECKING:
    from secagg.params import Parameters

M = TypeVar("M", bound=Message)


def digest_of(domain: bytes, *fields: int | float | bytes | memoryview) -> bytes:
    """SHA-256 of ``domain`` and the fields (ints as u64, floats as f64, bytes length-prefixed)."""
    h = hashlib.sha256(domain)
    for f in fields:
        if isinstance(f, bool) or not isinstance(f, (int, float, bytes, memoryview)):
            raise TypeError(f"cannot hash field of type {type(f).__name__}")
        if isinstance(f, (bytes, memoryview)):
            h.update(b"b" + struct.pack("<Q", f.nbytes if isinstance(f, memoryview) else len(f)))
            h.update(f)
        elif isinstance(f, int):
            if not 0 <= f < 2**64:
                raise ValueError(f"integer field {f} outside 0..2^64-1")
            h.update(b"i" + struct.pack("<Q", f))
        else:
            h.update(b"f" + struct.pack("<d", f))
    return h.digest()


def chunk_digest(index: int, payload: bytes | memoryview) -> bytes:
    """Digest of chunk ``index`` of a chunked envelope: its position and packed residues."""
    return digest_of(C.DOMAIN_CHUNK, index, payload)


def chunk_stride(residues_per_ciphertext: int) -> int:
    """Packed bytes of one full chunk (:data:`~secagg.constants.CHUNK_CIPHERTEXTS` ciphertexts)."""
    return packed_size(residues_per_ciphertext * C.CHUNK_CIPHERTEXTS)


def split_payload(payload: bytes, residues_per_ciphertext: int) -> list[memoryview]:
    """The chunks of a packed payload (views, no copies); the last one may be shorter."""
    stride = chunk_stride(residues_per_ciphertext)
    view = memoryview(payload)
    return [view[i : i + stride] for i in range(0, len(payload), stride)]


def root_digest(
    domain: bytes, params_id: bytes, header: Sequence[int | bytes], chunk_digests: Sequence[bytes]
) -> bytes:
    """The digest of a chunked envelope: its header fields, then its chunks' digests in order.

    The same value whether the envelope travels whole or as a head followed by chunks, so
    a chunk can be checked on arrival against the head, and the head against a signature.
    """
    chunks = b"".join(chunk_digests)
    return digest_of(domain, params_id, *header, C.CHUNK_CIPHERTEXTS, chunks)


def parse(
    message_type: type[M], blob: object, error: type[SecAggError], max_bytes: int | None
) -> M:
    """Stage 1 and 2: size cap, then protobuf parse; every failure raises ``error``."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise error(f"expected bytes, got {type(blob).__name__}")
    cap = C.MAX_SERIALIZED_BYTES if max_bytes is None else max_bytes
    if len(blob) > cap:
        raise error(f"input of {len(blob)} bytes exceeds the cap of {cap} bytes")
    if len(blob) == 0:
        raise error("empty input")
    msg = message_type()
    try:
        msg.ParseFromString(bytes(blob))
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise error(f"malformed {message_type.__name__}: {exc}") from None
    version = getattr(msg, "format_version", None)
    if version != C.FORMAT_VERSION:
        raise error(f"unsupported format version {version}")
    return msg


def require(condition: bool, error: type[SecAggError], message: str) -> None:
    """Raise ``error(message)`` unless ``condition`` holds."""
    if not condition:
        raise error(message)


def unpack_residues(
    payload: bytes, shape: tuple[int, ...], error: type[SecAggError], message: str
) -> U64:
    """Stage 3: ``payload`` must hold exactly ``prod(shape)`` packed residues; unpack them.

    Notes
    -----
    The residues are not yet range-checked: call :func:`require_reduced` before using
    them in any arithmetic.
    """
    count = math.prod(shape)
    require(len(payload) == packed_size(count), error, message)
    return unpack60(payload, count).reshape(shape)


def require_reduced(
    residues: U64, primes: Sequence[int], error: type[SecAggError], message: str
) -> None:
    """Raise ``error(message)`` unless every residue is below its prime.

    ``residues`` run over ``primes`` along their second-to-last axis (the layout of
    every envelope: ``(..., primes, N)``).
    """
    bounds = np.asarray(primes, dtype=np.uint64).reshape(-1, 1)
    require(not (residues >= bounds).any(), error, message)


class _EnvelopeMessage(Protocol):
    """The fields every residue-carrying protobuf envelope has."""

    format_version: int
    params_id: bytes
    payload: bytes
    digest: bytes

    def SerializeToString(self) -> bytes: ...  # noqa: N802 (protobuf's name)


W = TypeVar("W", bound=_EnvelopeMessage)


class Envelope(ABC, Generic[W]):
    """Base of the envelopes that carry packed residues (key, share, ciphertext, partial).

    Every such message has ``format_version``, ``params_id``, its own header fields,
    ``payload`` (``residues`` packed 60 bits each) and ``digest``, which is
    ``digest_of(DOMAIN, params id, *header, payload)``. A subclass names its ``DOMAIN``
    and states its header once for the digest (:meth:`_digested_header`) and once for
    the protobuf (:meth:`_header_message`); this class adds the common fields.

    Notes
    -----
    The packed payload is computed once. A parser that has validated the wire bytes
    hands them over with :meth:`_adopt_payload`, then compares :attr:`digest` with the
    claimed one before it trusts the residues any further.
    """

    DOMAIN: ClassVar[bytes]
    #: Residues with a leading ciphertext axis, digested chunk by chunk (:func:`root_digest`).
    CHUNKED: ClassVar[bool] = False
    params: Parameters
    residues: U64

    @abstractmethod
    def _digested_header(self) -> tuple[int | bytes, ...]:
        """The header fields hashed between the parameter id and the payload, in order."""

    @abstractmethod
    def _header_message(self) -> W:
        """A protobuf message with this envelope's own header fields set."""

    @cached_property
    def _payload(self) -> bytes:
        return pack60(self.residues)

    def _adopt_payload(self, payload: bytes) -> None:
        """Use ``payload`` (the validated wire bytes of ``residues``) as the packed form."""
        self.__dict__["_payload"] = payload

    @cached_property
    def chunk_digests(self) -> tuple[bytes, ...]:
        """Digests of the payload's chunks (chunked envelopes only)."""
        per_ciphertext = int(self.residues[0].size)
        chunks = split_payload(self._payload, per_ciphertext)
        return tuple(chunk_digest(i, c) for i, c in enumerate(chunks))

    @cached_property
    def digest(self) -> bytes:
        """SHA-256 over the domain tag, the parameter id, the header and the payload.

        A chunked envelope hashes its chunks' digests instead of the payload
        (:func:`root_digest`): the same value its streamed form carries.
        """
        header = self._digested_header()
        if self.CHUNKED:
            return root_digest(self.DOMAIN, self.params.id_bytes, header, self.chunk_digests)
        return digest_of(self.DOMAIN, self.params.id_bytes, *header, self._payload)

    def to_message(self) -> W:
        """The protobuf form."""
        msg = self._header_message()
        msg.format_version = C.FORMAT_VERSION
        msg.params_id = self.params.id_bytes
        msg.payload = self._payload
        msg.digest = self.digest
        return msg

    def to_bytes(self) -> bytes:
        """Serialize as the protobuf message."""
        return self.to_message().SerializeToString()
