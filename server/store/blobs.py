"""The content-addressed blob store: models, and the chunk files of ciphertexts,
aggregates and partials.

Models are plain blobs named by their SHA-256. Ciphertexts (uploads), aggregates and
partial decryptions are chunk files (:mod:`secagg.chunk_file`) named by their envelope's
digest (the signed ``ciphertext_hash``, the aggregate digest, the partial digest). Both
are written to a temporary name, fsynced, renamed and the directory fsynced, so a file is
on disk before any database row refers to it. A received chunk file is first *staged*
(complete and fsynced under a private name) and only published under its digest by the
commit that records it (:meth:`BlobStore.publish`), so a refused upload leaves no file.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from secagg.chunk_file import ChunkFile, ChunkFileWriter, fsync_directory
from secagg.chunked import PartialHead, VectorHead, checked_chunks


def _remembered(payloads: Iterable[bytes], held: list[bytes]) -> Iterator[bytes]:
    """``payloads``, keeping the last one handed out in ``held``."""
    for payload in payloads:
        held[:] = [payload]
        yield payload


class BlobStore:
    """Content-addressed files under ``root`` (``<sha256 hex>``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.glob("*.staged-*"):  # streams a crash interrupted
            stale.unlink(missing_ok=True)

    def path(self, digest: bytes) -> Path:
        """Where the blob with this SHA-256 lives."""
        return self.root / digest.hex()

    def put(self, data: bytes, *, sha256: bytes | None = None) -> bytes:
        """Store durably (fsync blob, rename, fsync directory); returns the SHA-256.

        Security
        --------
        Pass ``sha256`` only when it was computed over exactly ``data`` (e.g. by
        :func:`secagg.rpc.transport.join_chunks` while it joined the chunks): the blob is
        then stored under it without hashing the bytes a second time, and a wrong digest
        would store the blob under a name that lies about its content.
        """
        digest = hashlib.sha256(data).digest() if sha256 is None else sha256
        final = self.path(digest)
        if final.exists():
            return digest
        tmp = final.with_suffix(f".tmp{threading.get_ident()}")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        dir_fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return digest

    def staging(self, digest: bytes) -> ChunkFileWriter:
        """A writer for a received chunk file, finished under a private staged name.

        Use it as a context manager: on error its temporary file is removed. Publish
        the finished file with :meth:`publish`, or drop it with :meth:`discard`.
        """
        return ChunkFileWriter(self.root / f"{digest.hex()}.staged-{threading.get_ident()}")

    def receive(self, head: VectorHead | PartialHead, payloads: Iterable[bytes]) -> Path:
        """Stage a streamed envelope: each chunk checked against ``head`` as it arrives,
        then written; returns the finished staged file (publish or discard it).

        Raises
        ------
        InvalidCiphertext, InvalidPartialDecryption (the head's kind)
            A chunk that does not match the head (corrupted, reordered, duplicated, from
            another envelope), one too many, or too few (a truncated or dropped stream).
            Nothing stays on disk.
        """
        held: list[bytes] = []
        with self.staging(head.digest) as out:
            for _ in checked_chunks(head, _remembered(payloads, held)):
                out.append(held[0])
            return out.finish(head.to_bytes())

    def publish(self, staged: Path, digest: bytes) -> Path:
        """Move a finished staged chunk file to its digest's name (durably); returns it.

        Security
        --------
        ``digest`` must be the digest of the head the file was checked against chunk by
        chunk (the name is trusted by every reader that compares heads with digests).
        """
        final = self.path(digest)
        os.replace(staged, final)
        fsync_directory(self.root)
        return final

    @staticmethod
    def discard(staged: Path | None) -> None:
        """Remove a staged file that will not be published (none: nothing to do)."""
        if staged is not None:
            staged.unlink(missing_ok=True)

    def open_chunked(self, digest: bytes) -> ChunkFile:
        """The chunk file named by ``digest``; raises FileNotFoundError or ValueError."""
        return ChunkFile(self.path(digest))

    def get(self, digest: bytes) -> bytes:
        """Read a blob and check its hash; raises FileNotFoundError or ValueError."""
        data = self.path(digest).read_bytes()
        if hashlib.sha256(data).digest() != digest:
            raise ValueError(f"blob {digest.hex()} is corrupted on disk")
        return data

    def has(self, digest: bytes) -> bool:
        """Whether the blob is stored."""
        return self.path(digest).exists()

    def delete(self, digest: bytes) -> int:
        """Delete a blob (the retention policy); returns the bytes freed, 0 if it was absent.

        Notes
        -----
        Not crash-ordered like :meth:`put`: a crash may leave a blob that was to be deleted,
        never a row that names a missing blob it still needs (only released rounds prune).
        """
        path = self.path(digest)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        return size
