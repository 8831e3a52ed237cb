"""A key holder's shares by key epoch, and the epochs it retired (durably).

The ceremony of key epoch ``e`` gives this key holder a share of key ``K_e``, kept sealed
in its state directory (:class:`~clients.keyholder.storage.KeyHolderState`, one file per
epoch). A task names the key of its round (``DecryptionTask.public_key_id``, a hint the
server gives); the share is chosen by it and the aggregate must then be under that very
key (checked against the aggregate itself before anything is decrypted).

Retirement: key ``e`` is retired for this key holder once it has itself locked or
decrypted a round under a later key. :meth:`KeyShares.use` records that in
``key_epochs.json`` (atomically, fsync'd) *before* the lock is signed or the partial
computed, and then deletes the retired shares' files. A LOCK or DECRYPT task under a
retired key is refused with :class:`~secagg.errors.KeyRetired`.

Security
--------
The server cannot fool a key holder about retirement: only this key holder's own lock or
decryption under a later key, which needs that key's share (from a ceremony this key
holder took part in and endorsed), retires a key; nothing the server says does. A server
that lies in the key hint gets a refusal (the aggregate is checked). Deleting a file does
not scrub it from the disk, snapshots or backups. The retirement record is only as good as
the state directory: restored from an old backup, it forgets what it retired (but the
retired share is gone with it unless the backup holds it too).
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from clients.keyholder.storage import KeyHolderState, write_atomically
from secagg.errors import ConfigError, InvalidKeyMaterial, KeyRetired
from secagg.keys import KeyShare
from secagg.params import Parameters

RETIRED_FILE = "key_epochs.json"

log = logging.getLogger("secagg.keyholder")


class KeyShares:
    """The shares this key holder holds, by epoch; the keys it retired (see the module)."""

    def __init__(self, state: KeyHolderState, params: Parameters) -> None:
        self.state = state
        self.params = params
        self.path = Path(state.state_dir) / RETIRED_FILE
        self._lock = threading.Lock()
        retired = self.retired()
        self._shares: dict[int, KeyShare] = {}
        for epoch in state.share_epochs():
            share = state.load_share(params, epoch=epoch)
            if share is not None and share.public_key_id not in retired:
                self._shares[epoch] = share

    # ------------------------------------------------------------ queries
    def retired(self) -> dict[bytes, int]:
        """Key id -> epoch of every key retired so far (raises ConfigError if damaged)."""
        if not self.path.exists():
            return {}
        try:
            record = json.loads(self.path.read_bytes())
            return {bytes.fromhex(k): int(e) for k, e in record["retired_keys"].items()}
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ConfigError(f"{self.path} is damaged: {exc}") from None

    def newest_epoch(self) -> int:
        """The latest epoch this key holder has a share of (0: none yet)."""
        with self._lock:
            return max(self._shares, default=0)

    def newest(self) -> KeyShare | None:
        """The share of the latest epoch, if any."""
        with self._lock:
            return self._shares[max(self._shares)] if self._shares else None

    def epoch_of(self, public_key_id: bytes) -> int:
        """The epoch of a key; raises KeyRetired if retired, InvalidKeyMaterial if unknown."""
        retired = self.retired()
        if public_key_id in retired:
            raise KeyRetired(
                f"the joint key {public_key_id.hex()[:16]} of epoch {retired[public_key_id]} "
                "is retired: this key holder has decrypted under a later key"
            )
        with self._lock:
            for epoch, share in self._shares.items():
                if share.public_key_id == public_key_id:
                    return epoch
        raise InvalidKeyMaterial(f"no share of the joint key {public_key_id.hex()[:16]} here")

    def select(self, public_key_id: bytes) -> KeyShare:
        """The share of the key a task names (the newest if it names none).

        Raises
        ------
        KeyRetired
            The key is retired here.
        InvalidKeyMaterial
            This key holder has no share of that key (or none at all).
        """
        if not public_key_id:
            newest = self.newest()
            if newest is None:
                raise InvalidKeyMaterial("no key share yet: the key ceremony has not run")
            public_key_id = newest.public_key_id
        epoch = self.epoch_of(public_key_id)
        with self._lock:
            return self._shares[epoch]

    # ------------------------------------------------------------ changes
    def add(self, epoch: int, share: KeyShare) -> None:
        """Seal and store a new epoch's share (before it is endorsed), then hold it."""
        self.state.save_share(share, epoch=epoch)
        with self._lock:
            self._shares[epoch] = share

    def use(self, public_key_id: bytes) -> None:
        """Retire every key of an earlier epoch than this one, durably, before it is used.

        Call before signing a lock or computing a partial under ``public_key_id``; the
        earlier shares are deleted afterwards. Raises like :meth:`epoch_of`.
        """
        epoch = self.epoch_of(public_key_id)
        with self._lock:
            older = {e: s for e, s in self._shares.items() if e < epoch}
        if not older:
            return
        retired = self.retired() | {s.public_key_id: e for e, s in older.items()}
        record = {"retired_keys": {k.hex(): e for k, e in sorted(retired.items())}}
        write_atomically(self.path, json.dumps(record).encode())
        with self._lock:
            for e in older:
                del self._shares[e]
        for e in older:
            self.state.delete_share(e)
            log.info("key epoch %d retired (its share deleted): epoch %d is in use", e, epoch)
