"""What a key holder keeps on disk: its Shamir share (encrypted at rest), and where.

One share per key epoch (``share.enc`` for epoch 1, ``share-e<E>.enc`` after a key
rotation, see :mod:`clients.keyholder.epochs`). Each share is sealed with
ChaCha20-Poly1305 under a key derived by scrypt from a passphrase that never sits beside
it: from the environment
(:data:`~secagg.constants.KEYHOLDER_PASSPHRASE_ENV`, or the variable ``--passphrase-env``
names) or from a file outside the key holder's directories (``--passphrase-file``), see
:func:`read_passphrase`. What the key holder decrypted and answered lives next to the
share (:class:`~clients.keyholder.record.DecryptionRecord`).

Security
--------
Every file is written by :func:`write_atomically` (temporary file, fsync, rename, fsync
of the directory) with mode 0600: a crash leaves either the old or the new content,
never a torn share, and a rename that returned is on disk. Encryption at rest protects
the share only from someone who gets the directory but not the passphrase: a passphrase
in the environment is readable by the same user and root (``/proc/PID/environ``) while
the key holder runs. Older versions sealed the share under ``storage.key`` in the same
directory; such a share is refused until re-sealed (:func:`reseal_from_key_file`), which
deletes the file but cannot scrub copies the file system or backups may keep.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

# Re-exported: the key holder's modules import them from here.
from clients.durable import fsync_directory as fsync_directory
from clients.durable import write_atomically as write_atomically
from secagg import constants as C
from secagg.errors import ConfigError
from secagg.keys import KeyShare
from secagg.params import Parameters
from secagg.protocol.sealing import decrypt_at_rest, encrypt_at_rest

SHARE_FILE = "share.enc"
#: The key file older versions kept beside the share (read only to re-seal the share).
LEGACY_STORAGE_KEY_FILE = "storage.key"
#: How :func:`~secagg.protocol.sealing.encrypt_at_rest` starts a share sealed under a raw
#: key file rather than a passphrase (format magic, then the flag ``K``).
_SEALED_UNDER_KEY_FILE = b"SAGR1K"

log = logging.getLogger("secagg.keyholder")


def _inside(path: Path, directory: Path) -> bool:
    return path.resolve().is_relative_to(directory.resolve())


def _no_passphrase(env_var: str) -> ConfigError:
    return ConfigError(
        f"a key holder needs a passphrase for its share at rest: set {env_var} or pass "
        "--passphrase-file PATH (a file outside the key holder's directory)"
    )


def read_passphrase(
    *,
    environ: Mapping[str, str],
    env_var: str | None,
    passphrase_file: Path | None,
    forbidden_dirs: tuple[Path, ...],
) -> bytes:
    """The share's passphrase from ``passphrase_file`` or the environment; raises otherwise.

    ``passphrase_file`` (one trailing newline stripped) wins over the environment variable
    ``env_var`` (default :data:`~secagg.constants.KEYHOLDER_PASSPHRASE_ENV`). Raises
    :class:`ConfigError` if neither gives a non-empty passphrase, or if the file lies in
    one of ``forbidden_dirs`` (the key holder's own directories: a passphrase beside the
    share protects nothing).
    """
    if passphrase_file is None:
        name = env_var or C.KEYHOLDER_PASSPHRASE_ENV
        if not environ.get(name):
            raise _no_passphrase(name)
        return environ[name].encode()
    for directory in forbidden_dirs:
        if _inside(passphrase_file, directory):
            raise ConfigError(
                f"--passphrase-file {passphrase_file} lies inside {directory}: keep the "
                "passphrase away from the share it protects"
            )
    try:
        data = passphrase_file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read --passphrase-file {passphrase_file}: {exc}") from exc
    passphrase = data.removesuffix(b"\n").removesuffix(b"\r")
    if not passphrase:
        raise ConfigError(f"--passphrase-file {passphrase_file} is empty")
    return passphrase


class KeyHolderState:
    """A key holder's local state directory.

    Parameters
    ----------
    party_dir
        The key holder's own directory (TLS and signing keys; never the storage key).
    state_dir
        Where the share lives (created if missing).
    passphrase
        The share's storage key is derived from it (scrypt); required.

    Raises
    ------
    ConfigError
        Without a passphrase, or when the share was sealed under ``storage.key`` by an
        older version (the message says how to re-seal it).
    """

    def __init__(self, party_dir: Path, state_dir: Path, *, passphrase: bytes | None) -> None:
        if not passphrase:
            raise _no_passphrase(C.KEYHOLDER_PASSPHRASE_ENV)
        self.party_dir = party_dir
        self.state_dir = state_dir
        self._passphrase = passphrase
        self.state_dir.mkdir(exist_ok=True)
        self._check_no_key_file()

    def _check_no_key_file(self) -> None:
        key_file = self.party_dir / LEGACY_STORAGE_KEY_FILE
        share = self.state_dir / SHARE_FILE
        if share.exists() and share.read_bytes().startswith(_SEALED_UNDER_KEY_FILE):
            raise ConfigError(
                f"{share} was sealed under {key_file} by an older secagg, which protects "
                "nothing beside the share: re-seal it under your passphrase with "
                "`secagg keyholder DIR --index I --reseal-share` (then keep the passphrase "
                "elsewhere; the key file is deleted)"
            )
        if key_file.exists():
            log.warning(
                "%s is not used (shares are sealed under a passphrase): delete it", key_file
            )

    # ------------------------------------------------------------ the shares
    def share_path(self, epoch: int = 1) -> Path:
        """Where the share of key epoch ``epoch`` lives (epoch 1: :data:`SHARE_FILE`)."""
        if epoch < 1:
            raise ValueError("key epochs start at 1")
        return self.state_dir / (SHARE_FILE if epoch == 1 else f"share-e{epoch}.enc")

    def share_epochs(self) -> list[int]:
        """The epochs whose share is stored here, ascending."""
        found = [1] if (self.state_dir / SHARE_FILE).exists() else []
        for path in self.state_dir.glob("share-e*.enc"):
            digits = path.name.removeprefix("share-e").removesuffix(".enc")
            if digits.isdigit() and int(digits) > 1:
                found.append(int(digits))
        return sorted(found)

    def save_share(self, share: KeyShare, *, epoch: int = 1) -> None:
        """Encrypt the share of key epoch ``epoch`` and write it atomically (0600)."""
        blob = encrypt_at_rest(share.to_bytes(), self._passphrase, is_passphrase=True)
        write_atomically(self.share_path(epoch), blob)

    def load_share(self, params: Parameters, *, epoch: int = 1) -> KeyShare | None:
        """The stored share of key epoch ``epoch``, or None before its ceremony."""
        path = self.share_path(epoch)
        if not path.exists():
            return None
        plain = decrypt_at_rest(path.read_bytes(), self._passphrase, is_passphrase=True)
        return KeyShare.from_bytes(plain, params)

    def delete_share(self, epoch: int) -> None:
        """Delete a retired epoch's share (durably; the disk may still hold its bytes)."""
        self.share_path(epoch).unlink(missing_ok=True)
        fsync_directory(self.state_dir)


def reseal_from_key_file(party_dir: Path, state_dir: Path, *, passphrase: bytes) -> None:
    """Re-seal a share an older version sealed under ``storage.key``; delete the key file.

    The share is decrypted with the key file, sealed under ``passphrase`` and written
    atomically before the key file is removed (a crash in between leaves a passphrase-
    sealed share and a stale key file, which is only warned about).

    Security
    --------
    Deleting a file does not scrub it from the disk, snapshots or backups: if those may
    be read, rotate the key (a new ceremony) instead of trusting the old share.
    """
    if not passphrase:
        raise ConfigError("re-sealing needs a non-empty passphrase")
    key_file = party_dir / LEGACY_STORAGE_KEY_FILE
    share = state_dir / SHARE_FILE
    blob = share.read_bytes()
    if not blob.startswith(_SEALED_UNDER_KEY_FILE) or not key_file.exists():
        raise ConfigError(f"{share} is not sealed under {key_file}: nothing to re-seal")
    plain = decrypt_at_rest(blob, key_file.read_bytes(), is_passphrase=False)
    write_atomically(share, encrypt_at_rest(plain, passphrase, is_passphrase=True))
    key_file.unlink()
    fsync_directory(party_dir)
