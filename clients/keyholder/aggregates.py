"""A key holder's own aggregates: chunk files it wrote itself, read back chunk by chunk.

A key holder decrypts and endorses only aggregates it recomputed itself from the
client-signed uploads (:func:`clients.keyholder.checks.recompute_aggregate`): the
weighted sum is written as a chunk file (:mod:`secagg.chunk_file`) in its state
directory, ``folds/r<round>-<aggregate digest>.aggregate``, and kept until the round's
endorsement is sent or the round is past (:meth:`clients.keyholder.fold.Folds.prune`).
An ENDORSE task for a round it has no file of (it took no part in the lock, or the file
was pruned) gets the aggregate streamed from the server, checked against the certified
digest and written to the same place (:func:`fetch_aggregate`).

Security
--------
A file is read as untrusted input all the same: its head is parsed and must have the
digest the file is named after, and every chunk is checked against the head as it is
read. Memory: one chunk at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt

from clients.connection import Connection
from secagg.chunk_file import ChunkFile, ChunkFileWriter
from secagg.chunked import AggregateHead, checked_chunks
from secagg.errors import AggregateMismatch
from secagg.params import Parameters

#: The state directory's subdirectory of accumulators and own aggregates.
FOLDS_DIR = "folds"


def aggregate_path(folds_dir: Path, round_number: int, digest: bytes) -> Path:
    """Where the key holder keeps its own aggregate of ``round_number`` with ``digest``."""
    return folds_dir / f"r{round_number}-{digest.hex()}.aggregate"


def read_head(path: Path, params: Parameters, digest: bytes) -> AggregateHead:
    """The head of the aggregate file at ``path``, which must have ``digest``.

    Raises
    ------
    AggregateMismatch
        The file is damaged, or holds another aggregate.
    """
    try:
        with ChunkFile(path) as file:
            head = AggregateHead.from_bytes(file.head_bytes, params)
            file.check(head.vector)
    except (OSError, ValueError) as exc:  # InvalidCiphertext is a ValueError
        raise AggregateMismatch(f"own aggregate file {path.name} is damaged: {exc}") from None
    if head.digest != digest:
        raise AggregateMismatch(f"own aggregate file {path.name} holds another aggregate")
    return head


def own_head(path: Path, params: Parameters, digest: bytes) -> AggregateHead | None:
    """The head of the own aggregate at ``path`` if it is there and intact, else None."""
    if not path.exists():
        return None
    try:
        return read_head(path, params, digest)
    except AggregateMismatch:
        path.unlink(missing_ok=True)
        return None


def aggregate_chunks(head: AggregateHead, path: Path) -> Iterator[npt.NDArray[np.uint64]]:
    """The aggregate's chunks in order (residues ``(k, 2, primes, N)``), each checked.

    Raises :class:`InvalidCiphertext` if the file no longer matches ``head``.
    """
    vector = head.vector
    with ChunkFile(path) as file:
        payloads = (file.chunk(vector, i) for i in range(vector.chunk_count))
        for _, residues in checked_chunks(vector, payloads):
            yield residues


def fetch_aggregate(
    conn: Connection, params: Parameters, digest: bytes, path: Path
) -> AggregateHead:
    """Stream the aggregate with ``digest`` from the server into a chunk file at ``path``.

    For ENDORSE tasks only: the digest is certified by the task's lock certificate, and
    the head must have exactly that digest; each chunk is checked against the head before
    it is written.

    Raises
    ------
    AggregateMismatch
        The server's head has another digest, or the stream is empty.
    InvalidCiphertext
        A bad, missing or extra chunk (nothing is kept).
    """
    stream = conn.download_chunked(digest)
    first = next(stream, None)
    if first is None:
        raise AggregateMismatch("the server sent no aggregate")
    head = AggregateHead.from_bytes(first, params)
    if head.digest != digest:
        raise AggregateMismatch("the server's aggregate is not the certified one")
    last: list[bytes] = []

    def tapped() -> Iterator[bytes]:
        for payload in stream:
            last[:] = [payload]
            yield payload

    with ChunkFileWriter(path) as out:
        for _ in checked_chunks(head.vector, tapped()):
            out.append(last[0])
        out.finish(head.to_bytes())
    return head


__all__ = [
    "FOLDS_DIR",
    "aggregate_chunks",
    "aggregate_path",
    "fetch_aggregate",
    "own_head",
    "read_head",
]
