"""A weighted sum of chunked vectors kept in a file: O(one chunk) of memory at any size.

:class:`ChunkedAggregator` is the streaming counterpart of
:class:`~secagg.aggregate.Aggregator`: it folds a vector chunk by chunk (each chunk
checked against its head by the caller) into reduced residues stored in a file, one
``uint64`` per residue (48 bytes per value at the default parameters, on disk, not in
memory), and writes the result as a chunk file whose head has the digest the in-memory
:class:`~secagg.aggregate.EncryptedAggregate` would have.

The file is a cache, not a record: after a crash it is rebuilt from the stored uploads.
A fold that fails half-way (an I/O error, a chunk missing) leaves it *broken*; every
later use raises until the caller rebuilds.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from secagg._internal.modarith import U64, add_mod, scale_mod
from secagg.aggregate import check_weight_scale, integer_weight
from secagg.chunk_file import ChunkFileWriter
from secagg.chunked import AggregateHead, VectorHead, chunk_count, chunk_span, pack_chunk
from secagg.ciphertext import ciphertext_count
from secagg.errors import InvalidCiphertext, WeightBudgetExceeded
from secagg.params import Parameters


class ChunkedAggregator:
    """Streaming weighted sum of chunked vectors, in a file at ``path``.

    Parameters
    ----------
    params, public_key_id, length
        Every folded vector must match these (the caller checked its head).
    path
        The accumulator file (created, zero-filled sparse; removed by :meth:`close`).
    weight_scale
        Integer weight = ``round(weight * weight_scale)``; 1 (default) for counts.
    """

    def __init__(
        self,
        params: Parameters,
        *,
        public_key_id: bytes,
        length: int,
        path: Path,
        weight_scale: float = 1.0,
    ) -> None:
        check_weight_scale(weight_scale)
        self.params = params
        self.public_key_id = public_key_id
        self.length = length
        self.weight_scale = weight_scale
        self.total_weight = 0
        self.contributors = 0
        self.broken = False
        self.ciphertexts = ciphertext_count(params, length)
        self.chunks = chunk_count(self.ciphertexts)
        self._per_ct = (2, len(params.data_primes), params.poly_modulus_degree)
        self._ct_bytes = math.prod(self._per_ct) * 8
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.ftruncate(self._fd, self.ciphertexts * self._ct_bytes)

    def _span(self, index: int) -> tuple[int, int, tuple[int, ...]]:
        start, stop = chunk_span(index, self.ciphertexts)
        return (
            start * self._ct_bytes,
            (stop - start) * self._ct_bytes,
            (stop - start, *self._per_ct),
        )

    def chunk(self, index: int) -> U64:
        """The running sum's chunk ``index`` (reduced residues, shape ``(k, 2, primes, N)``)."""
        if self.broken:
            raise InvalidCiphertext("the accumulator is broken by a failed fold; rebuild it")
        offset, size, shape = self._span(index)
        out = np.empty(shape, dtype="<u8")  # native uint64 on the little-endian hosts we run on
        if os.preadv(self._fd, [out.data], offset) != size:
            raise InvalidCiphertext(f"the accumulator file is short at chunk {index}")
        return out

    def _fold_chunk(self, index: int, residues: U64, w: int) -> None:
        """``acc[index] += w * residues`` (mod each prime), in place, written back."""
        offset, size, _ = self._span(index)
        acc = self.chunk(index)
        for j, q in enumerate(self.params.data_primes):
            part = acc[:, :, j]
            part[...] = add_mod(part, scale_mod(residues[:, :, j], w, q), q)
        if os.pwrite(self._fd, acc.data, offset) != size:
            raise OSError(f"short write to the accumulator at chunk {index}")

    def add(self, chunks: Iterable[tuple[int, U64]], weight: float = 1) -> int:
        """Fold ``weight *`` a vector given as its checked chunks, in order; returns the
        integer weight.

        Raises
        ------
        WeightBudgetExceeded
            Invalid weight or a total above the budget; nothing was folded.
        InvalidCiphertext
            A chunk out of order, of the wrong shape, or missing (the accumulator is then
            broken: rebuild it).
        """
        w = integer_weight(weight, self.weight_scale)
        if self.total_weight + w > self.params.max_total_weight:
            raise WeightBudgetExceeded(
                f"total weight {self.total_weight + w} would exceed the budget of "
                f"{self.params.max_total_weight} (Parameters.max_total_weight)"
            )
        expected = 0
        try:
            for index, residues in chunks:
                _, _, shape = self._span(index)
                if index != expected or residues.shape != shape:
                    raise InvalidCiphertext(f"chunk {index} out of order or of the wrong shape")
                if w:
                    self._fold_chunk(index, residues, w)
                expected += 1
            if expected != self.chunks:
                raise InvalidCiphertext(f"{expected} of {self.chunks} chunks folded")
        except BaseException:
            self.broken = True
            raise
        if w:
            self.total_weight += w
            self.contributors += 1
        return w

    def residue_chunks(self) -> Iterator[U64]:
        """The running sum, chunk by chunk."""
        for index in range(self.chunks):
            yield self.chunk(index)

    def write(self, final: Path) -> AggregateHead:
        """Write the aggregate so far as a chunk file at ``final``; returns its head.

        Raises :class:`WeightBudgetExceeded` if nothing was folded.
        """
        if self.total_weight == 0:
            raise WeightBudgetExceeded("total weight is zero: nothing to aggregate")
        digests = []
        with ChunkFileWriter(final) as out:
            for index, residues in enumerate(self.residue_chunks()):
                payload, digest = pack_chunk(index, residues)
                out.append(payload)
                digests.append(digest)
            vector = VectorHead.build(self.params, self.public_key_id, self.length, digests)
            head = AggregateHead(vector, self.total_weight, self.weight_scale, self.contributors)
            out.finish(head.to_bytes())
        return head

    def close(self) -> None:
        """Close and delete the accumulator file."""
        os.close(self._fd)
        self.path.unlink(missing_ok=True)
