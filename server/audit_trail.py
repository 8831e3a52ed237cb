"""The server's side of the audit log: typed entries, best-effort rejections, checkpoints.

Every entry is one of :mod:`secagg.protocol.audit_entries`, appended with
:meth:`~secagg.protocol.audit_log.AuditLog.record`; the verifier parses the same classes.
An entry is appended inside the store transaction whose rows it describes and before
that transaction commits, so a failed append (:class:`~secagg.errors.AuditWriteFailed`)
refuses the operation and rolls the rows back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from secagg.errors import SecAggError
from secagg.protocol.audit_entries import (
    AuditEntry,
    CheckpointEntry,
    RosterEntry,
    UploadRejectedEntry,
)
from secagg.protocol.audit_log import AuditLog
from secagg.protocol.roster import Roster
from secagg.protocol.statements import CheckpointStatement, Signed

log = logging.getLogger("secagg.server")

#: Rejection reasons are cut to this many characters in the log.
MAX_REASON_CHARS = 500


@dataclass(eq=False)
class AuditTrail:
    """Writes the server's audit entries to ``audit``; signs checkpoints with ``signing_key``."""

    audit: AuditLog
    roster: Roster
    signing_key: Ed25519PrivateKey

    @property
    def size(self) -> int:
        """Entries in the log."""
        return self.audit.size

    def record(self, entry: AuditEntry) -> tuple[int, bytes]:
        """Append an entry; returns (size, head). Raises AuditWriteFailed."""
        return self.audit.record(entry)

    def start(self, roster_digest: bytes) -> None:
        """Write the roster entry if the log is empty (the first entry of every log)."""
        if self.audit.size == 0:
            self.record(
                RosterEntry(
                    deployment_id=self.roster.deployment_id,
                    roster_sha256=roster_digest,
                    params_id=self.roster.params.id,
                    policy=self.roster.policy.as_dict(),
                )
            )

    def rejection(
        self, round_number: int, client: str, ciphertext_hash: bytes, reason: str
    ) -> None:
        """Record a refused upload (best effort: it is refused either way)."""
        try:
            self.record(
                UploadRejectedEntry(
                    round_number, client, ciphertext_hash, reason[:MAX_REASON_CHARS]
                )
            )
        except SecAggError:
            log.exception("could not record a rejected upload")

    def checkpoint(self, size: int, head: bytes) -> None:
        """Append the server's signed checkpoint of the log at (size, head)."""
        statement = CheckpointStatement(self.roster.deployment_id, size, head)
        signed = Signed.create(statement, self.signing_key)
        self.record(CheckpointEntry(size, head, signed.signature))
