"""Chunked envelopes: a head that lists chunk digests, then chunks verified one by one.

Vectors, aggregates and partial decryptions of any size travel and rest as a **head**
followed by **chunks**. A chunk holds :data:`~secagg.constants.CHUNK_CIPHERTEXTS` whole
ciphertexts (the last one fewer): their packed residues, nothing else. The head is the
envelope's protobuf message without its payload, listing the digest of every chunk
(``chunk_digests``); its ``digest`` is the envelope's digest
(:func:`~secagg._internal.envelope.root_digest`), the very value the whole in-memory
envelope has, so a signature over it (an upload's ``ciphertext_hash``, a partial's
statement) covers every chunk.

A reader checks the head once (header fields, chunk count, root), then each chunk as it
arrives, on its own: position, exact size, digest against the head, residues reduced,
for vectors no transparent ciphertext. Nothing needs more than one chunk in memory, and
no message or file comes near protobuf's 2 GiB limit.

Security
--------
A head proves nothing by itself: compare :attr:`VectorHead.digest` with a signed value
(or a digest the reader computed itself) before acting on any chunk.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np

from secagg import constants as C
from secagg._internal.envelope import (
    chunk_digest,
    chunk_stride,
    parse,
    require,
    require_reduced,
    root_digest,
    split_payload,
    unpack_residues,
)
from secagg._internal.modarith import U64, pack60
from secagg.aggregate import (
    EncryptedAggregate,
    aggregate_digest,
    aggregate_message,
    check_aggregate_fields,
)
from secagg.ciphertext import (
    EncryptedVector,
    check_vector_header,
    ciphertext_count,
    require_not_transparent,
)
from secagg.errors import InvalidCiphertext, InvalidPartialDecryption, SecAggError
from secagg.params import Parameters
from secagg.proto import core_pb2
from secagg.threshold import PartialDecryption, check_partial_header, partial_header


def chunk_count(ciphertexts: int) -> int:
    """Chunks of an envelope of ``ciphertexts`` ciphertexts."""
    return -(-ciphertexts // C.CHUNK_CIPHERTEXTS)


def chunk_span(index: int, ciphertexts: int) -> tuple[int, int]:
    """The ciphertexts ``[start, stop)`` that chunk ``index`` holds."""
    start = index * C.CHUNK_CIPHERTEXTS
    return start, min(start + C.CHUNK_CIPHERTEXTS, ciphertexts)


@dataclass(frozen=True)
class ChunkedHead:
    """What every head shares: its ciphertext count, per-ciphertext shape and chunk digests."""

    DOMAIN: ClassVar[bytes]
    ERROR: ClassVar[type[SecAggError]]
    params: Parameters
    ciphertexts: int
    chunk_digests: tuple[bytes, ...]

    def _header(self) -> tuple[int | bytes, ...]:
        raise NotImplementedError

    @property
    def per_ciphertext(self) -> tuple[int, ...]:
        """Residue shape of one ciphertext's worth of data."""
        raise NotImplementedError

    @cached_property
    def digest(self) -> bytes:
        """The envelope's digest (equal to the whole envelope's :attr:`digest`)."""
        return root_digest(self.DOMAIN, self.params.id_bytes, self._header(), self.chunk_digests)

    @property
    def chunk_count(self) -> int:
        """Number of chunks."""
        return len(self.chunk_digests)

    def chunk_shape(self, index: int) -> tuple[int, ...]:
        """Residue shape of chunk ``index``."""
        start, stop = chunk_span(index, self.ciphertexts)
        return (stop - start, *self.per_ciphertext)

    def chunk_bytes(self, index: int) -> int:
        """Exact packed size of chunk ``index``."""
        return math.prod(self.chunk_shape(index)) * 15 // 2

    @property
    def stride(self) -> int:
        """Packed size of a full chunk (the offset step in a chunk file)."""
        return chunk_stride(math.prod(self.per_ciphertext))

    @property
    def payload_bytes(self) -> int:
        """Packed size of all chunks together."""
        return sum(self.chunk_bytes(i) for i in range(self.chunk_count))

    def _check_digests(self) -> None:
        err = self.ERROR
        require(self.chunk_count == chunk_count(self.ciphertexts), err, "wrong number of chunks")
        require(all(len(d) == C.DIGEST_BYTES for d in self.chunk_digests), err, "bad chunk digest")

    def residues(self, index: int, payload: bytes | memoryview) -> U64:
        """Chunk ``index``'s residues, once the chunk checks out against this head.

        Raises
        ------
        InvalidCiphertext, InvalidPartialDecryption (the head's kind)
            Index out of range, wrong size, digest not the head's, residue not reduced,
            (vectors) a transparent ciphertext.
        """
        err = self.ERROR
        require(0 <= index < self.chunk_count, err, f"chunk {index} of {self.chunk_count}")
        shape = self.chunk_shape(index)
        size = self.chunk_bytes(index)
        require(len(payload) == size, err, f"chunk {index}: {len(payload)} bytes, {size} expected")
        require(
            chunk_digest(index, payload) == self.chunk_digests[index],
            err,
            f"chunk {index} does not match its digest in the head (corrupted, reordered "
            f"or from another envelope)",
        )
        residues = unpack_residues(bytes(payload), shape, err, f"chunk {index}: wrong size")
        require_reduced(residues, self.params.data_primes, err, f"chunk {index}: not reduced")
        self._check_chunk(residues)
        return residues

    def _check_chunk(self, residues: U64) -> None:
        """Kind-specific checks of one chunk's residues."""

    def stored_residues(self, index: int, payload: bytes | memoryview) -> U64:
        """Chunk ``index``'s residues from a file its owner wrote after checking every
        chunk with :meth:`residues`: size and ranges are checked, the digest is not.

        Security
        --------
        Only for one's own files (the server folding the uploads it checked on arrival):
        a corrupted file then gives a wrong sum, which the key holders' recomputation
        refuses. Anything received or read on someone else's behalf goes through
        :meth:`residues`.
        """
        err = self.ERROR
        shape = self.chunk_shape(index)
        residues = unpack_residues(bytes(payload), shape, err, f"chunk {index}: wrong size")
        require_reduced(residues, self.params.data_primes, err, f"chunk {index}: not reduced")
        return residues


@dataclass(frozen=True)
class VectorHead(ChunkedHead):
    """The head of a chunked :class:`~secagg.ciphertext.EncryptedVector`."""

    DOMAIN: ClassVar[bytes] = C.DOMAIN_CIPHERTEXT
    ERROR: ClassVar[type[SecAggError]] = InvalidCiphertext
    public_key_id: bytes = b""
    length: int = 0

    def _header(self) -> tuple[int | bytes, ...]:
        return (self.public_key_id, self.length, self.ciphertexts)

    @property
    def per_ciphertext(self) -> tuple[int, ...]:
        """``(2, data primes, N)``."""
        return (2, len(self.params.data_primes), self.params.poly_modulus_degree)

    def _check_chunk(self, residues: U64) -> None:
        require_not_transparent(residues)

    @classmethod
    def of(cls, vector: EncryptedVector) -> VectorHead:
        """The head of an in-memory vector."""
        return cls(
            vector.params,
            vector.ciphertext_count,
            vector.chunk_digests,
            vector.public_key_id,
            vector.length,
        )

    @classmethod
    def build(
        cls, params: Parameters, public_key_id: bytes, length: int, digests: list[bytes]
    ) -> VectorHead:
        """A head for chunks produced in order (their digests), checked for consistency."""
        head = cls(params, ciphertext_count(params, length), tuple(digests), public_key_id, length)
        head._check_digests()
        return head

    def to_message(self) -> core_pb2.EncryptedVector:
        """The protobuf head (no payload)."""
        return core_pb2.EncryptedVector(
            format_version=C.FORMAT_VERSION,
            params_id=self.params.id_bytes,
            public_key_id=self.public_key_id,
            length=self.length,
            ciphertext_count=self.ciphertexts,
            digest=self.digest,
            chunk_digests=list(self.chunk_digests),
        )

    def to_bytes(self) -> bytes:
        """Serialized protobuf head."""
        return self.to_message().SerializeToString()

    @classmethod
    def from_message(cls, msg: core_pb2.EncryptedVector, params: Parameters) -> VectorHead:
        """Validate a head message (header fields, chunk count, root); raises InvalidCiphertext."""
        err = InvalidCiphertext
        count = check_vector_header(msg, params)
        require(not msg.payload, err, "a head carries no payload")
        head = cls(params, count, tuple(msg.chunk_digests), bytes(msg.public_key_id), msg.length)
        head._check_digests()
        require(head.digest == msg.digest, err, "head digest does not match its chunk digests")
        return head

    @classmethod
    def from_bytes(
        cls, blob: bytes, params: Parameters, *, max_bytes: int = C.MAX_HEAD_BYTES
    ) -> VectorHead:
        """Parse and validate an untrusted head."""
        return cls.from_message(
            parse(core_pb2.EncryptedVector, blob, InvalidCiphertext, max_bytes), params
        )


@dataclass(frozen=True)
class AggregateHead:
    """The head of a chunked :class:`~secagg.aggregate.EncryptedAggregate`: a vector head
    and the weight metadata; its digest is the aggregate's."""

    vector: VectorHead
    total_weight: int
    weight_scale: float
    contributors: int

    @cached_property
    def digest(self) -> bytes:
        """Equal to :attr:`EncryptedAggregate.digest` of the same aggregate."""
        return aggregate_digest(self.vector.digest, self)

    @classmethod
    def of(cls, aggregate: EncryptedAggregate) -> AggregateHead:
        """The head of an in-memory aggregate."""
        return cls(
            VectorHead.of(aggregate.vector),
            aggregate.total_weight,
            aggregate.weight_scale,
            aggregate.contributors,
        )

    def to_bytes(self) -> bytes:
        """Serialized ``EncryptedAggregate`` whose vector is a head."""
        return aggregate_message(self.vector.to_message(), self, self.digest).SerializeToString()

    @classmethod
    def from_bytes(
        cls, blob: bytes, params: Parameters, *, max_bytes: int = C.MAX_HEAD_BYTES
    ) -> AggregateHead:
        """Parse and validate an untrusted aggregate head; raises InvalidCiphertext."""
        err = InvalidCiphertext
        msg = parse(core_pb2.EncryptedAggregate, blob, err, max_bytes)
        require(msg.HasField("vector"), err, "aggregate has no vector")
        vector = VectorHead.from_message(msg.vector, params)
        check_aggregate_fields(msg, params)
        head = cls(vector, msg.total_weight, msg.weight_scale, msg.contributors)
        require(head.digest == msg.digest, err, "aggregate digest mismatch")
        return head


@dataclass(frozen=True)
class PartialHead(ChunkedHead):
    """The head of a chunked :class:`~secagg.threshold.PartialDecryption`."""

    DOMAIN: ClassVar[bytes] = C.DOMAIN_PARTIAL
    ERROR: ClassVar[type[SecAggError]] = InvalidPartialDecryption
    public_key_id: bytes = b""
    aggregate_digest: bytes = b""
    keyholder_index: int = 0
    threshold: int = 0
    quorum: tuple[int, ...] = ()

    def _header(self) -> tuple[int | bytes, ...]:
        return partial_header(self, self.ciphertexts)

    @property
    def per_ciphertext(self) -> tuple[int, ...]:
        """``(data primes, N)``."""
        return (len(self.params.data_primes), self.params.poly_modulus_degree)

    @classmethod
    def of(cls, partial: PartialDecryption) -> PartialHead:
        """The head of an in-memory partial."""
        return cls(
            partial.params,
            int(partial.residues.shape[0]),
            partial.chunk_digests,
            partial.public_key_id,
            partial.aggregate_digest,
            partial.keyholder_index,
            partial.threshold,
            partial.quorum,
        )

    def to_bytes(self) -> bytes:
        """Serialized protobuf head (no payload)."""
        return core_pb2.PartialDecryption(
            format_version=C.FORMAT_VERSION,
            params_id=self.params.id_bytes,
            public_key_id=self.public_key_id,
            aggregate_digest=self.aggregate_digest,
            keyholder_index=self.keyholder_index,
            quorum=list(self.quorum),
            threshold=self.threshold,
            ciphertext_count=self.ciphertexts,
            digest=self.digest,
            chunk_digests=list(self.chunk_digests),
        ).SerializeToString()

    @classmethod
    def from_bytes(
        cls, blob: bytes, params: Parameters, *, max_bytes: int = C.MAX_HEAD_BYTES
    ) -> PartialHead:
        """Parse and validate an untrusted partial head; raises InvalidPartialDecryption."""
        err = InvalidPartialDecryption
        msg = parse(core_pb2.PartialDecryption, blob, err, max_bytes)
        quorum = check_partial_header(msg, params)
        require(not msg.payload, err, "a head carries no payload")
        head = cls(
            params,
            msg.ciphertext_count,
            tuple(msg.chunk_digests),
            bytes(msg.public_key_id),
            bytes(msg.aggregate_digest),
            msg.keyholder_index,
            msg.threshold,
            quorum,
        )
        head._check_digests()
        require(head.digest == msg.digest, err, "partial digest mismatch")
        return head


def payload_chunks(envelope: EncryptedVector | PartialDecryption) -> Iterator[memoryview]:
    """The packed chunks of an in-memory envelope, in order (views, no copies)."""
    yield from split_payload(envelope._payload, int(envelope.residues[0].size))


def pack_chunk(index: int, residues: U64) -> tuple[bytes, bytes]:
    """Pack one chunk's residues; returns ``(payload, digest)``."""
    payload = pack60(np.ascontiguousarray(residues))
    return payload, chunk_digest(index, payload)


def checked_chunks(
    head: ChunkedHead, payloads: Iterable[bytes | memoryview]
) -> Iterator[tuple[int, U64]]:
    """Each chunk's residues in order, checked against ``head`` as it arrives.

    Raises the head's error (:class:`InvalidCiphertext` or
    :class:`InvalidPartialDecryption`) at the first bad chunk, at a chunk beyond the
    head's count, or at the end if chunks are missing (a truncated stream).
    """
    index = -1
    for index, payload in enumerate(payloads):
        require(index < head.chunk_count, head.ERROR, f"more than {head.chunk_count} chunks")
        yield index, head.residues(index, payload)
    require(
        index + 1 == head.chunk_count,
        head.ERROR,
        f"truncated: {index + 1} of {head.chunk_count} chunks",
    )
