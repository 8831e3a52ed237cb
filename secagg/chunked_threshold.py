"""Threshold decryption of chunked aggregates, one chunk at a time.

The algebra is :mod:`secagg.threshold`'s, applied chunk by chunk: a key holder's partial
is ``lambda_j^Q * S_j * c1 + E_j`` per chunk (fresh flooding noise for every chunk), and
combining adds ``c0`` and a quorum's partial chunks, then rounds. Memory is O(one
chunk) per stream; results equal the in-memory functions' (same digests for the
partials' structure, same decoded values).

Security
--------
As for :func:`secagg.threshold.partial_decrypt`: check the decryption policy before
calling :func:`partial_chunks`, and never send two partials of one (aggregate, quorum).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from secagg._internal.modarith import U64
from secagg.chunk_file import ChunkFileWriter
from secagg.chunked import AggregateHead, PartialHead, chunk_span, pack_chunk
from secagg.encoding import F64, decode
from secagg.errors import InvalidPartialDecryption
from secagg.keys import KeyShare
from secagg.threshold import (
    check_share_for,
    combine_rows,
    partial_factor,
    partial_rows,
    scale_total,
)


def partial_chunks(
    share: KeyShare,
    aggregate: AggregateHead,
    quorum: Iterable[int],
    c1_chunks: Iterable[U64],
    out: ChunkFileWriter,
) -> PartialHead:
    """Partially decrypt an aggregate given as its ``c1`` chunks (rows ``(k, primes, N)``),
    appending each partial chunk to ``out``; returns the partial's head (the caller
    finishes ``out`` with it).

    Raises
    ------
    QuorumNotMet, InvalidPartialDecryption
        As :func:`secagg.threshold.partial_decrypt`, or a chunk count that is not the
        aggregate's.
    """
    vector = aggregate.vector
    q = check_share_for(share, quorum, vector.params, vector.public_key_id)
    factor = partial_factor(share, q)
    digests = []
    for index, c1 in enumerate(c1_chunks):
        payload, digest = pack_chunk(index, partial_rows(share.params, factor, c1))
        out.append(payload)
        digests.append(digest)
    if len(digests) != vector.chunk_count:
        raise InvalidPartialDecryption(f"{len(digests)} of {vector.chunk_count} chunks decrypted")
    return PartialHead(
        share.params,
        vector.ciphertexts,
        tuple(digests),
        share.public_key_id,
        aggregate.digest,
        share.index,
        share.threshold,
        q,
    )


def check_partial_head(aggregate: AggregateHead, head: PartialHead) -> None:
    """The checks :func:`secagg.threshold.check_partial` makes, on a partial's head.

    Raises :class:`InvalidPartialDecryption`.
    """
    vector = aggregate.vector
    who = f"partial from key holder {head.keyholder_index}"
    if head.aggregate_digest != aggregate.digest:
        raise InvalidPartialDecryption(f"{who} is for another aggregate")
    if head.params.id_bytes != vector.params.id_bytes or head.public_key_id != vector.public_key_id:
        raise InvalidPartialDecryption(f"{who} is for another key or parameter set")
    if head.ciphertexts != vector.ciphertexts:
        raise InvalidPartialDecryption(f"{who} has the wrong shape")


def combine_chunk(
    aggregate: AggregateHead, index: int, c0: U64, parts: Sequence[U64], *, mean: bool = True
) -> F64:
    """The decrypted values of chunk ``index`` from ``c0`` and a quorum's partial chunks.

    The caller checked the quorum once (:func:`check_partial_head` for each head, all
    heads of one quorum, every member present): this is the arithmetic only.
    """
    vector = aggregate.vector
    start, _ = chunk_span(index, vector.ciphertexts)
    n = vector.params.poly_modulus_degree
    coeffs = combine_rows(vector.params, c0, parts)
    values = min(coeffs.size, vector.length - start * n)
    return scale_total(aggregate, decode(vector.params, coeffs[:values]), mean)
