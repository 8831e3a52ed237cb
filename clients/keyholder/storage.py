"""What a key holder keeps on disk: its Shamir share (encrypted at rest) and its decryptions.

The share is sealed with ChaCha20-Poly1305 under the key file ``storage.key`` in the key
holder's directory, or under a scrypt-derived key from a passphrase. The record of
decrypted rounds (round -> aggregate digest) lets the key holder refuse to decrypt a
second, different aggregate of a round it already answered, across restarts.

Security
--------
Both files are written atomically (temporary file, fsync, rename) with mode 0600: a
crash leaves either the old or the new content, never a torn share.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from secagg.keys import KeyShare
from secagg.params import Parameters
from secagg.protocol.sealing import decrypt_at_rest, encrypt_at_rest

SHARE_FILE = "share.enc"
DECRYPTED_FILE = "decrypted.json"
STORAGE_KEY_FILE = "storage.key"


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (0600) so that a crash leaves the old or the new file."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class KeyHolderState:
    """A key holder's local state directory.

    Parameters
    ----------
    party_dir
        The key holder's own directory (holds ``storage.key`` unless a passphrase is used).
    state_dir
        Where the share and the decryption record live (created if missing).
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

    # ------------------------------------------------------------ decrypted rounds
    def decrypted(self) -> dict[int, bytes]:
        """Round -> digest of the aggregate this key holder partially decrypted."""
        path = self.state_dir / DECRYPTED_FILE
        if not path.exists():
            return {}
        record: dict[str, str] = json.loads(path.read_text())
        return {int(rnd): bytes.fromhex(digest) for rnd, digest in record.items()}

    def remember_decryption(self, round_number: int, aggregate_digest: bytes) -> None:
        """Record (durably) that this round's aggregate ``aggregate_digest`` was decrypted."""
        record = {str(rnd): digest.hex() for rnd, digest in self.decrypted().items()}
        record[str(round_number)] = aggregate_digest.hex()
        write_atomically(self.state_dir / DECRYPTED_FILE, json.dumps(record).encode())
