"""Chunked envelopes at rest: open a stored chunk file, fold it, combine a quorum's files.

The server and ``secagg audit verify`` read the same files (the server's content-addressed
blob store names each by its envelope's digest): uploads
(:class:`~secagg.chunked.VectorHead`), aggregates (:class:`~secagg.chunked.AggregateHead`)
and partial decryptions (:class:`~secagg.chunked.PartialHead`). Everything here works one
chunk at a time: memory is O(chunk) plus what the caller keeps (an accumulator file, the
decrypted model).

Security
--------
A stored file is untrusted input: its head is parsed by the library's staged parser and
compared with the digest the caller trusts (a signed or logged one), and every chunk is
checked against the head (:func:`~secagg.chunked.checked_chunks`) before it is used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from secagg._internal.modarith import U64
from secagg.accumulator import ChunkedAggregator
from secagg.chunk_file import ChunkFile
from secagg.chunked import AggregateHead, ChunkedHead, PartialHead, VectorHead, checked_chunks
from secagg.chunked_threshold import check_partial_head, combine_chunk
from secagg.encoding import F64
from secagg.errors import InvalidCiphertext, InvalidPartialDecryption, QuorumNotMet, SecAggError
from secagg.params import Parameters

H = TypeVar("H", VectorHead, AggregateHead, PartialHead)


def _open(
    path: Path,
    params: Parameters,
    parse: Callable[[bytes, Parameters], H],
    error: type[SecAggError],
    digest: bytes | None,
) -> tuple[ChunkFile, H]:
    """A stored chunk file and its head, parsed by ``parse``, checked against ``digest``
    (if given) and against the file's size."""
    try:
        file = ChunkFile(path)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise error(f"stored envelope {path.name}: {exc}") from None
    try:
        head = parse(file.head_bytes, params)
        if digest is not None and head.digest != digest:
            raise error(f"stored envelope {path.name} is not the one it is named by")
        file.check(head.vector if isinstance(head, AggregateHead) else head)
    except ValueError as exc:
        file.close()
        raise exc if isinstance(exc, SecAggError) else error(str(exc)) from None
    except BaseException:
        file.close()
        raise
    return file, head


def open_vector(
    path: Path, params: Parameters, digest: bytes | None = None
) -> tuple[ChunkFile, VectorHead]:
    """A stored vector (an upload) and its head, checked against ``digest`` if given.

    Raises FileNotFoundError, or InvalidCiphertext for a file that is not that vector.
    """
    return _open(path, params, VectorHead.from_bytes, InvalidCiphertext, digest)


def open_aggregate(
    path: Path, params: Parameters, digest: bytes | None = None
) -> tuple[ChunkFile, AggregateHead]:
    """A stored aggregate and its head (``digest``: the aggregate's, if given)."""
    return _open(path, params, AggregateHead.from_bytes, InvalidCiphertext, digest)


def open_partial(
    path: Path, params: Parameters, digest: bytes | None = None
) -> tuple[ChunkFile, PartialHead]:
    """A stored partial decryption and its head (``digest``: the partial's, if given)."""
    return _open(path, params, PartialHead.from_bytes, InvalidPartialDecryption, digest)


def open_stored(path: Path, params: Parameters, digest: bytes) -> tuple[ChunkFile, ChunkedHead]:
    """Any stored envelope named by ``digest`` (a vector, aggregate or partial) and the head
    that lays out its chunks (an aggregate's vector head).

    Raises FileNotFoundError, or InvalidCiphertext if no kind of head matches ``digest``.
    """
    for kind in (open_vector, open_aggregate, open_partial):
        try:
            file, head = kind(path, params, digest)
        except (InvalidCiphertext, InvalidPartialDecryption):
            continue
        return file, head.vector if isinstance(head, AggregateHead) else head
    raise InvalidCiphertext(f"{path.name} is no stored envelope of that digest")


def raw_chunks(file: ChunkFile, head: ChunkedHead) -> Iterator[bytes]:
    """The file's chunks as stored, in order (not checked: see :func:`stored_chunks`)."""
    for index in range(head.chunk_count):
        yield file.chunk(head, index)


def stored_chunks(file: ChunkFile, head: ChunkedHead) -> Iterator[tuple[int, U64]]:
    """The file's chunks, each checked against ``head``: ``(index, residues)``."""
    return checked_chunks(head, raw_chunks(file, head))


def fold_stored(
    aggregator: ChunkedAggregator,
    path: Path,
    params: Parameters,
    digest: bytes,
    weight: int,
    *,
    checked_on_arrival: bool = False,
) -> int:
    """Fold the stored vector ``digest`` into ``aggregator``; returns the integer weight.

    Every chunk is checked against the head, unless ``checked_on_arrival`` (the server's
    own blob store, whose files it wrote chunk by chunk after checking each one: see
    :meth:`secagg.chunked.ChunkedHead.stored_residues`).

    Raises FileNotFoundError, InvalidCiphertext (a file that is not that vector, or not
    under the aggregator's key and length), WeightBudgetExceeded.
    """
    file, head = open_vector(path, params, digest)
    with file:
        if (head.public_key_id, head.length) != (aggregator.public_key_id, aggregator.length):
            raise InvalidCiphertext(f"stored ciphertext {path.name} is for another key or length")
        if checked_on_arrival:
            chunks = (
                (i, head.stored_residues(i, file.chunk(head, i))) for i in range(head.chunk_count)
            )
            return aggregator.add(chunks, weight)
        return aggregator.add(stored_chunks(file, head), weight)


def check_quorum(
    aggregate: AggregateHead, heads: Sequence[PartialHead], quorum: Sequence[int]
) -> None:
    """The checks :func:`secagg.threshold.combine` makes, on partial heads of one quorum.

    Raises InvalidPartialDecryption or QuorumNotMet.
    """
    for head in heads:
        check_partial_head(aggregate, head)
        if head.quorum != tuple(quorum) or head.threshold != heads[0].threshold:
            raise InvalidPartialDecryption("partials were computed for different quorums")
    members = {h.keyholder_index for h in heads}
    if len(members) != len(heads) or members != set(quorum):
        raise QuorumNotMet(f"partials of key holders {sorted(members)} for quorum {quorum}")
    if heads and len(members) < heads[0].threshold:
        raise QuorumNotMet(f"{len(members)} partials; the threshold is {heads[0].threshold}")


def decrypted_chunks(
    aggregate: tuple[ChunkFile, AggregateHead],
    quorums: Sequence[Sequence[tuple[ChunkFile, PartialHead]]],
    *,
    mean: bool = True,
) -> Iterator[list[F64]]:
    """Per chunk, the values each quorum decrypts it to (one array per quorum).

    The caller checked every quorum with :func:`check_quorum`; each chunk of every file
    is checked against its head as it is read.
    """
    file, head = aggregate
    vector = head.vector
    for index in range(vector.chunk_count):
        c0 = vector.residues(index, file.chunk(vector, index))[:, 0]
        out = []
        for members in quorums:
            parts = [h.residues(index, f.chunk(h, index)) for f, h in members]
            out.append(combine_chunk(head, index, c0, parts, mean=mean))
        yield out


def decrypt_stored(
    aggregate: tuple[ChunkFile, AggregateHead],
    members: Sequence[tuple[ChunkFile, PartialHead]],
    *,
    mean: bool = True,
) -> F64:
    """The values one quorum's stored partials decrypt the stored aggregate to."""
    values = np.empty(aggregate[1].vector.length, dtype=np.float64)
    start = 0
    for (chunk,) in decrypted_chunks(aggregate, [members], mean=mean):
        values[start : start + chunk.size] = chunk
        start += chunk.size
    return values
