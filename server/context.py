"""What every effect module of the server shares: stores, roster, audit trail, clock, caches.

:class:`Parsed` keeps the checked heads of the aggregates and partial decryptions of
open work in memory (a few kilobytes each: the chunks stay in their files), so a release
parses each head once; after a restart it reads them from the blob store again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from secagg.chunked import AggregateHead, PartialHead
from secagg.params import Parameters
from secagg.protocol.roster import Policy, Roster
from secagg.protocol.status import RoundStatus
from secagg.protocol.stored_chunks import open_aggregate, open_partial
from server.audit_trail import AuditTrail
from server.faults import Faults
from server.state import with_status
from server.store import BlobStore, Store

log = logging.getLogger("secagg.server")


class Parsed:
    """Checked heads of stored aggregates and partials, by digest."""

    def __init__(self, blobs: BlobStore, params: Parameters) -> None:
        self.blobs = blobs
        self.params = params
        self._aggregates: dict[bytes, AggregateHead] = {}
        self._partials: dict[tuple[int, int], PartialHead] = {}
        self._lock = threading.Lock()

    def keep_aggregate(self, digest: bytes, aggregate: AggregateHead) -> None:
        """Remember the head of an aggregate stored under ``digest``."""
        with self._lock:
            self._aggregates[digest] = aggregate

    def aggregate(self, digest: bytes) -> AggregateHead:
        """The head of the aggregate stored under ``digest`` (read from its file once)."""
        with self._lock:
            found = self._aggregates.get(digest)
        if found is None:
            file, found = open_aggregate(self.blobs.path(digest), self.params, digest)
            file.close()
            self.keep_aggregate(digest, found)
        return found

    def keep_partial(self, task_id: int, partial: PartialHead) -> None:
        """Remember the head of an accepted partial of a task."""
        with self._lock:
            self._partials[(task_id, partial.keyholder_index)] = partial

    def partial(self, task_id: int, keyholder: int, digest: bytes) -> PartialHead:
        """A task's partial's head (read from its file once)."""
        with self._lock:
            found = self._partials.get((task_id, keyholder))
        if found is None:
            file, found = open_partial(self.blobs.path(digest), self.params, digest)
            file.close()
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
    #: Scratch files (the running accumulator); default: ``work`` next to the blob store.
    work: Path | None = None
    parsed: Parsed = field(init=False)

    def __post_init__(self) -> None:
        self.parsed = Parsed(self.blobs, self.roster.params)

    @property
    def work_dir(self) -> Path:
        """Where the server keeps scratch files (the running accumulator)."""
        return self.work if self.work is not None else self.blobs.root.parent / "work"

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
