"""Chunked envelopes on disk: the chunks back to back, then the head, then its length.

A chunk file is written in one pass as chunks are produced or received (the head, which
lists their digests, is known only at the end), to a temporary name; :meth:`finish`
writes the head and an 8-byte little-endian head length, fsyncs, and renames it into
place. Chunk ``i`` lies at offset ``i * head.stride``. Reading takes one chunk at a
time, so neither side ever holds more than a chunk of an envelope of any size.

Security
--------
A file is as trustworthy as the directory it is in. Readers parse the head as untrusted
input and check each chunk against it (:meth:`secagg.chunked.ChunkedHead.residues`).
"""

from __future__ import annotations

import os
import struct
import threading
from pathlib import Path
from types import TracebackType

from secagg import constants as C
from secagg._internal.files import fsync_path
from secagg.chunked import ChunkedHead

_TRAILER = struct.Struct("<Q")


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable."""
    fsync_path(directory)


class ChunkFileWriter:
    """Writes one chunk file; use as a context manager (the temporary file goes on error)."""

    def __init__(self, final: Path) -> None:
        self.final = Path(final)
        self.tmp = self.final.with_name(
            f"{self.final.name}.tmp{os.getpid()}-{threading.get_ident()}"
        )
        self._fh = open(self.tmp, "wb")  # noqa: SIM115 (closed by finish/abort)
        self.size = 0

    def append(self, payload: bytes | memoryview) -> None:
        """Append the next chunk's packed residues."""
        self._fh.write(payload)
        self.size += len(payload)

    def finish(self, head: bytes, final: Path | None = None) -> Path:
        """Write the head, fsync, rename to ``final`` (default: the constructor's); returns it."""
        target = self.final if final is None else Path(final)
        self._fh.write(head)
        self._fh.write(_TRAILER.pack(len(head)))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self.tmp, target)
        fsync_directory(target.parent)
        return target

    def abort(self) -> None:
        """Drop the temporary file."""
        self._fh.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> ChunkFileWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._fh.closed:
            self.abort()


class ChunkFile:
    """Read access to a chunk file: its head bytes, then chunks by index."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDONLY)
        try:
            size = os.fstat(self._fd).st_size
            if size < _TRAILER.size:
                raise ValueError(f"{self.path} is not a chunk file (too short)")
            (head_len,) = _TRAILER.unpack(os.pread(self._fd, _TRAILER.size, size - _TRAILER.size))
            if head_len > min(C.MAX_HEAD_BYTES, size - _TRAILER.size):
                raise ValueError(f"{self.path} is not a chunk file (head length {head_len})")
            self.payload_bytes = size - _TRAILER.size - head_len
            self.head_bytes = os.pread(self._fd, head_len, self.payload_bytes)
        except BaseException:
            os.close(self._fd)
            raise

    def check(self, head: ChunkedHead) -> None:
        """Raise ValueError unless the file holds exactly ``head``'s chunks."""
        if head.payload_bytes != self.payload_bytes:
            raise ValueError(
                f"{self.path} holds {self.payload_bytes} bytes of chunks, its head "
                f"{head.payload_bytes}"
            )

    def chunk(self, head: ChunkedHead, index: int) -> bytes:
        """Chunk ``index``'s packed bytes (not yet checked against the head)."""
        return os.pread(self._fd, head.chunk_bytes(index), index * head.stride)

    def close(self) -> None:
        """Close the file."""
        os.close(self._fd)

    def __enter__(self) -> ChunkFile:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
