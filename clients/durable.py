"""Crash-safe files for the client-side agents: the new content or the old, never torn.

Used by the key holder's storage and record, the DP trainer's ledger and the training
client's stored upload.

Security
--------
:func:`write_atomically` writes a temporary file, fsyncs it, renames it over the target
and fsyncs the directory, so when it returns the new content survives a crash or a power
loss; :func:`remove_durably` makes a deletion durable the same way. They protect
against crashes, not against someone who can write to the directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from secagg.protocol.atomic_directory import fsync_path


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (0600) so that a crash leaves the old or the new file.

    Order: write a temporary file, fsync it, rename it over ``path``, fsync the
    directory; when this returns, the new content survives a crash or power loss.
    """
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_directory(path.parent)


def remove_durably(path: Path) -> None:
    """Delete ``path`` if it exists; when this returns the deletion survives a crash."""
    try:
        path.unlink()
    except FileNotFoundError:
        return
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """Make the entries of ``directory`` (a rename, a new file or subdirectory) durable."""
    fsync_path(directory)
