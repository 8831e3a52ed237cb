"""Internal: how SEAL objects cross between Python and SEAL without named files.

Not part of the public API. TenSEAL's ``sealapi`` binding loads and saves SEAL objects by
*path* only. Here a path is ``/proc/self/fd/N`` of an anonymous memory file (Linux
``memfd_create``, close-on-exec): SEAL opens it like any file, but it has no name in any
filesystem, and the kernel frees it when the descriptor is closed -- right after the
``load`` or ``save`` -- or when the process dies, SIGKILL included.

Security
--------
Callers say whether an object is secret. Where anonymous memory files are missing (not
Linux, or no ``/proc``), a secret hand-off raises
:class:`~secagg.errors.SecretMemoryUnavailable` rather than write a file; a public one
(a ciphertext, a public key) goes through a private scratch directory (``/dev/shm`` when
present, mode 0700; each file removed right after use, the directory at exit). An
anonymous file is still process memory: while the process runs, the same user or root
can read it through ``/proc/PID/fd``, and it can be swapped out like the heap.
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from secagg.errors import SecretMemoryUnavailable

__all__ = ["handoff_file", "load_from", "memory_files_available", "saved"]


def _scratch_base() -> str | None:
    """Where the scratch directory goes: RAM-backed ``/dev/shm`` if writable, else the temp dir."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


class _Scratch:
    """A private directory for short-lived files of *public* SEAL objects (no memfd only)."""

    def __init__(self) -> None:
        self.path = tempfile.mkdtemp(prefix="secagg-", dir=_scratch_base())
        os.chmod(self.path, 0o700)
        self._counter = itertools.count()
        atexit.register(shutil.rmtree, self.path, True)

    @contextmanager
    def file(self) -> Iterator[str]:
        name = os.path.join(self.path, f"{threading.get_ident()}-{next(self._counter)}")
        try:
            yield name
        finally:
            with suppress(FileNotFoundError):
                os.unlink(name)


_scratch: _Scratch | None = None
_scratch_lock = threading.Lock()


def _get_scratch() -> _Scratch:
    global _scratch
    with _scratch_lock:
        if _scratch is None or not os.path.isdir(_scratch.path):
            _scratch = _Scratch()
        return _scratch


def memory_files_available() -> bool:
    """True where SEAL objects can cross through anonymous memory files (Linux memfd)."""
    return hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd")


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    parts, offset = [], 0
    while offset < size:
        chunk = os.pread(fd, size - offset, offset)
        if not chunk:
            break
        parts.append(chunk)
        offset += len(chunk)
    return b"".join(parts)


def _write_all(fd: int, data: bytes) -> None:
    view, offset = memoryview(data), 0
    while offset < len(view):
        offset += os.pwrite(fd, view[offset:], offset)


@contextmanager
def handoff_file(*, secret: bool) -> Iterator[tuple[str, int | None]]:
    """A path SEAL can save to or load from: ``(path, fd)``; ``fd`` is None for a named file.

    An anonymous memory file where the platform has one; otherwise a named scratch file
    for public objects, and :class:`SecretMemoryUnavailable` for secret ones.
    """
    if memory_files_available():
        fd = os.memfd_create("secagg-seal", os.MFD_CLOEXEC)
        try:
            yield f"/proc/self/fd/{fd}", fd
        finally:
            os.close(fd)
    elif secret:
        raise SecretMemoryUnavailable(
            "secret SEAL objects cross only through anonymous memory files (Linux "
            "memfd_create); this platform has none, and secagg will not write them to files"
        )
    else:
        with _get_scratch().file() as path:
            yield path, None


def load_from(obj: object, blob: bytes, context: object, *, secret: bool) -> None:
    """``obj.load(context, path)`` on a hand-off file holding ``blob``."""
    with handoff_file(secret=secret) as (path, fd):
        if fd is not None:
            _write_all(fd, blob)
        else:
            with open(path, "wb") as fh:
                fh.write(blob)
        obj.load(context, path)  # type: ignore[attr-defined]


def saved(obj: object, *, secret: bool = True) -> bytes:
    """SEAL's serialization of ``obj`` (``obj.save(path)`` on a hand-off file)."""
    with handoff_file(secret=secret) as (path, fd):
        obj.save(path)  # type: ignore[attr-defined]
        if fd is not None:
            return _read_all(fd)
        with open(path, "rb") as fh:
            return fh.read()
