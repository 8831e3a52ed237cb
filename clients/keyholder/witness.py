"""The key holder as a witness of the audit log: it co-signs only heads that extend its last.

A DECRYPT task shows the log's head (``log_size``, ``log_head``: the Merkle root of the
first ``log_size`` entries) and carries consistency proofs (``consistency``) from the
sizes the server thinks this key holder may have co-signed last. :meth:`Witness.cosign`
picks the proof from the size it *did* co-sign last (its own record, never the server's
word), verifies it against the root it kept (RFC 9162 section 2.1.4.2), keeps the new
head durably (``witness.json`` in the state directory, written like the share:
temporary file, fsync, rename, fsync of the directory) and only then signs it.

Refused (:class:`~secagg.errors.InconsistentLogHead`, so the task is refused with
``INCONSISTENT_LOG_HEAD``): a head smaller than the last co-signed one (truncation), a
different root at the same size, and a head with no valid consistency proof from the
last one (pruning, forking, rewriting). A key holder with no head yet accepts the first.

Security
--------
The server cannot fool the check: the old root is the witness's own copy, and a valid
consistency proof to a different new root would be a SHA-256 collision. What a witness
does not bind: entries appended after the last head any witness co-signed, and the
first head a new key holder is shown (trust on first use). A witness's copy is only
as safe as its state directory: a key holder that loses ``witness.json`` starts over.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clients.keyholder.storage import write_atomically
from secagg.errors import InconsistentLogHead, MerkleProofInvalid
from secagg.proto import service_pb2 as pb
from secagg.protocol.merkle import verify_consistency
from secagg.protocol.roster import Roster
from secagg.protocol.statements import CheckpointStatement, Signed
from secagg.protocol.witness_head import WITNESS_FILE, WitnessedHead


class Witness:
    """Key holder ``index``'s record of the last audit-log head it co-signed."""

    def __init__(self, state_dir: Path, roster: Roster, index: int) -> None:
        self.path = Path(state_dir) / WITNESS_FILE
        self.roster = roster
        self.index = index
        self._lock = threading.Lock()

    def last(self) -> WitnessedHead | None:
        """The last head co-signed, or None before the first.

        Raises
        ------
        InconsistentLogHead
            The file is unreadable or not this key holder's (the witness refuses to go on
            rather than start over silently).
        """
        if not self.path.exists():
            return None
        try:
            head = WitnessedHead.load(self.path)
        except (OSError, ValueError) as exc:
            raise InconsistentLogHead(
                f"cannot read the witnessed head {self.path}: {exc}"
            ) from None
        if head.keyholder != self.index or head.deployment_id != self.roster.deployment_id:
            raise InconsistentLogHead(f"{self.path} is not this key holder's witnessed head")
        return head

    def check(self, size: int, head: bytes, proofs: Sequence[pb.ConsistencyProof]) -> None:
        """Raise :class:`InconsistentLogHead` unless (size, head) extends the last head."""
        last = self.last()
        if last is None:
            return
        if size < last.size:
            raise InconsistentLogHead(
                f"the log head of size {size} is older than the head of size {last.size} "
                "this key holder co-signed (a truncated log?)"
            )
        if size == last.size:
            if head != last.head:
                raise InconsistentLogHead(f"two different log heads of size {size} (a fork?)")
            return
        proof = next((p for p in proofs if p.from_size == last.size), None)
        if proof is None:
            raise InconsistentLogHead(
                f"no consistency proof from size {last.size}, the head this key holder "
                f"co-signed last, to size {size}"
            )
        try:
            verify_consistency(last.size, size, last.head, head, list(proof.hashes))
        except MerkleProofInvalid as exc:
            raise InconsistentLogHead(
                f"the log of size {size} does not extend the head of size {last.size} this "
                f"key holder co-signed ({exc})"
            ) from None

    def cosign(
        self,
        size: int,
        head: bytes,
        proofs: Sequence[pb.ConsistencyProof],
        signing_key: Ed25519PrivateKey,
    ) -> bytes:
        """Check, keep durably, then co-sign (size, head); the co-signature.

        Raises
        ------
        InconsistentLogHead
            See :meth:`check`; nothing is kept or signed then.
        """
        with self._lock:
            self.check(size, head, proofs)
            statement = CheckpointStatement(self.roster.deployment_id, size, head)
            signed = Signed.create(statement, signing_key)
            kept = WitnessedHead(
                self.roster.deployment_id, self.index, size, head, signed.signature
            )
            write_atomically(self.path, kept.to_bytes())
            return signed.signature
