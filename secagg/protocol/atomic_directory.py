"""A directory that appears whole or not at all (``secagg init``).

:func:`atomic_directory` yields a temporary directory next to the target; the caller
writes into it; on success every file is fsynced, the directory is renamed to the target
and the parent fsynced; on any failure the temporary directory is removed.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from secagg._internal.files import fsync_path as fsync_path  # re-exported: the public name
from secagg.errors import ConfigError


@contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield a fresh directory next to ``target``; rename it to ``target`` if the body succeeds.

    The temporary directory (``.NAME.init-XXXXXXXX`` in the same parent, so the rename
    stays on one file system) is removed on any failure, so a failed ``secagg init``
    leaves neither ``target`` nor a half-written copy. ``target`` may exist only as an
    empty directory (the rename replaces it).

    Raises
    ------
    ConfigError
        ``target`` is a non-empty directory or a file (also if one appears meanwhile).
    """
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(f"{target} already exists and is not an empty directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.init-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        yield tmp
        for path in [*sorted(tmp.rglob("*"), reverse=True), tmp]:
            fsync_path(path)  # every file on disk before the rename publishes the directory
        try:
            os.rename(tmp, target)
        except OSError as exc:
            raise ConfigError(f"cannot create {target}: {exc.strerror}") from None
        fsync_path(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
