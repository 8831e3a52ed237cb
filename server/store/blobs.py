"""The content-addressed blob store: ciphertexts, aggregates, partials and models.

Blobs are files named by their SHA-256, written to a temporary name, fsynced, renamed
and the directory fsynced, so a blob is on disk before any database row refers to it.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path


class BlobStore:
    """Content-addressed files under ``root`` (``<sha256 hex>``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

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
