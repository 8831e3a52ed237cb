"""What every effect module of the server shares: stores, roster, audit trail, clock, caches.

:class:`Parsed` keeps the parsed aggregates and partial decryptions of open work in
memory, so a release combines the objects it already holds instead of re-reading and
re-parsing blobs; after a restart it falls back to the blob store (and parses once).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from secagg.aggregate import EncryptedAggregate
from secagg.params import Parameters
from secagg.protocol.roster import Policy, Roster
from secagg.protocol.status import RoundStatus
from secagg.threshold import PartialDecryption
from server.audit_trail import AuditTrail
from server.faults import Faults
from server.state import with_status
from server.store import BlobStore, Store

log = logging.getLogger("secagg.server")


class Parsed:
    """Parsed aggregates (by blob hash) and partials (by task and key holder)."""

    def __init__(self, blobs: BlobStore, params: Parameters) -> None:
        self.blobs = blobs
        self.params = params
        self._aggregates: dict[bytes, EncryptedAggregate] = {}
        self._partials: dict[tuple[int, int], PartialDecryption] = {}
        self._lock = threading.Lock()

    def keep_aggregate(self, blob_hash: bytes, aggregate: EncryptedAggregate) -> None:
        """Remember an aggregate stored under ``blob_hash``."""
        with self._lock:
            self._aggregates[blob_hash] = aggregate

    def aggregate(self, blob_hash: bytes) -> EncryptedAggregate:
        """The aggregate stored under ``blob_hash`` (parsed from the blob store once)."""
        with self._lock:
            found = self._aggregates.get(blob_hash)
        if found is None:
            found = EncryptedAggregate.from_bytes(self.blobs.get(blob_hash), self.params)
            self.keep_aggregate(blob_hash, found)
        return found

    def keep_partial(self, task_id: int, partial: PartialDecryption) -> None:
        """Remember an accepted partial of a task."""
        with self._lock:
            self._partials[(task_id, partial.keyholder_index)] = partial

    def partial(self, task_id: int, keyholder: int, blob_hash: bytes) -> PartialDecryption:
        """A task's partial (parsed from the blob store once)."""
        with self._lock:
            found = self._partials.get((task_id, keyholder))
        if found is None:
            found = PartialDecryption.from_bytes(self.blobs.get(blob_hash), self.params)
            self.keep_partial(task_id, found)
        return found

    def forget(self, *, task_ids: set[int], aggregate_hashes: set[bytes]) -> None:
        """Drop what finished work needed."""
        with self._lock:
            for key in [k for k in self._partials if k[0] in task_ids]:
                del self._partials[key]
            for h in aggregate_hashes:
                self._aggregates.pop(h, None)


@dataclass
class Context:
    """The server's shared collaborators (``faults``: test-only crash points, none by default)."""

    store: Store
    blobs: BlobStore
    roster: Roster
    audit: AuditTrail
    signing_key: Ed25519PrivateKey
    clock: Callable[[], float] = time.time
    faults: Faults = field(default_factory=Faults)
    parsed: Parsed = field(init=False)

    def __post_init__(self) -> None:
        self.parsed = Parsed(self.blobs, self.roster.params)

    @property
    def policy(self) -> Policy:
        """The roster's policy."""
        return self.roster.policy

    @property
    def params(self) -> Parameters:
        """The deployment's encryption parameters."""
        return self.roster.params

    def set_status(self, round_number: int, status: RoundStatus) -> None:
        """Store a round's new status (no write if it is unchanged)."""
        rnd = self.store.round(round_number)
        if rnd is not None and rnd.status != status:
            self.store.put_round(with_status(rnd, status))
            log.info("round %d: %s", round_number, status)
