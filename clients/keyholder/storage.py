"""What a key holder keeps on disk: its Shamir share (encrypted at rest), and where.

The share is sealed with ChaCha20-Poly1305 under the key file ``storage.key`` in the key
holder's directory, or under a scrypt-derived key from a passphrase. What the key holder
decrypted and answered lives next to it (:class:`~clients.keyholder.record.DecryptionRecord`).

Security
--------
Every file is written by :func:`write_atomically` (temporary file, fsync, rename, fsync
of the directory) with mode 0600: a crash leaves either the old or the new content,
never a torn share, and a rename that returned is on disk.
"""

from __future__ import annotations

import os
from pathlib import Path

from secagg.keys import KeyShare
from secagg.params import Parameters
from secagg.protocol.sealing import decrypt_at_rest, encrypt_at_rest

SHARE_FILE = "share.enc"
STORAGE_KEY_FILE = "storage.key"


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


def fsync_directory(directory: Path) -> None:
    """Make the entries of ``directory`` (a rename, a new file or subdirectory) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class KeyHolderState:
    """A key holder's local state directory.

    Parameters
    ----------
    party_dir
        The key holder's own directory (holds ``storage.key`` unless a passphrase is used).
    state_dir
        Where the share lives (created if missing).
    passphrase
        Derive the storage key from this passphrase instead of reading ``storage.key``.
    """

    def __init__(
        self, party_dir: Path, state_dir: Path, *, passphrase: bytes | None = None
    ) -> None:
        self.party_dir = party_dir
        self.state_dir = state_dir
        self.passphrase = passphrase
        self.state_dir.mkdir(exist_ok=True)

    def _storage_secret(self) -> tuple[bytes, bool]:
        if self.passphrase is not None:
            return self.passphrase, True
        return (self.party_dir / STORAGE_KEY_FILE).read_bytes(), False

    # ------------------------------------------------------------ the share
    def save_share(self, share: KeyShare) -> None:
        """Encrypt the share and write it atomically (0600)."""
        secret, is_passphrase = self._storage_secret()
        blob = encrypt_at_rest(share.to_bytes(), secret, is_passphrase=is_passphrase)
        write_atomically(self.state_dir / SHARE_FILE, blob)

    def load_share(self, params: Parameters) -> KeyShare | None:
        """The stored share, or None before the ceremony."""
        path = self.state_dir / SHARE_FILE
        if not path.exists():
            return None
        secret, is_passphrase = self._storage_secret()
        plain = decrypt_at_rest(path.read_bytes(), secret, is_passphrase=is_passphrase)
        return KeyShare.from_bytes(plain, params)
