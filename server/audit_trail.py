"""The server's side of the audit log: typed entries, best-effort rejections, checkpoints,
and the consistency proofs its witnesses ask for.

Every entry is one of :mod:`secagg.protocol.audit_entries`, appended with
:meth:`~secagg.protocol.audit_log.AuditLog.record`; the verifier parses the same classes.
An entry is appended inside the store transaction whose rows it describes and before
that transaction commits, so a failed append (:class:`~secagg.errors.AuditWriteFailed`)
refuses the operation and rolls the rows back.

Key holders co-sign the head a DECRYPT task shows only with a consistency proof from
the head they co-signed last (:mod:`clients.keyholder.witness`). The server does not
know for sure which head that was (a co-signature may have been kept but never
delivered), so :meth:`AuditTrail.consistency_proofs` proves the task's head from every
size the key holder was shown since the last co-signature the log records.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from secagg.errors import SecAggError
from secagg.proto import service_pb2 as pb
from secagg.protocol.audit_entries import (
    AuditEntry,
    CheckpointEntry,
    DecryptionRequestEntry,
    PartialEntry,
    RosterEntry,
    UploadRejectedEntry,
)
from secagg.protocol.audit_log import AuditLog, read_entries
from secagg.protocol.exact_float import exact_json
from secagg.protocol.roster import Roster
from secagg.protocol.statements import CheckpointStatement, Signed, UploadStatement

log = logging.getLogger("secagg.server")

#: Rejection reasons are cut to this many characters in the log.
MAX_REASON_CHARS = 128  # no longer than a signature in hex: metadata, not data


@dataclass(eq=False)
class AuditTrail:
    """Writes the server's audit entries to ``audit``; signs checkpoints with ``signing_key``."""

    audit: AuditLog
    roster: Roster
    signing_key: Ed25519PrivateKey
    #: key holder -> the largest checkpoint size the log records it co-signed
    cosigned: dict[int, int] = field(init=False, default_factory=dict)
    #: (log size, quorum) of every decryption request: the heads key holders were shown
    shown: list[tuple[int, frozenset[int]]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        if self.audit.size:
            for entry in read_entries(self.audit.path):
                if entry.type == "partial":
                    self._cosigned(entry.data["keyholder"], entry.data["checkpoint_size"])
                elif entry.type == "decryption_request":
                    self.shown.append((entry.seq, frozenset(entry.data["quorum"])))

    def _cosigned(self, keyholder: int, size: int) -> None:
        self.cosigned[keyholder] = max(size, self.cosigned.get(keyholder, 0))

    @property
    def size(self) -> int:
        """Entries in the log."""
        return self.audit.size

    def record(self, entry: AuditEntry) -> tuple[int, bytes]:
        """Append an entry; returns (size, head). Raises AuditWriteFailed."""
        size, head = self.audit.record(entry)
        if isinstance(entry, PartialEntry):
            self._cosigned(entry.keyholder, entry.checkpoint_size)
        elif isinstance(entry, DecryptionRequestEntry):
            self.shown.append((size, frozenset(entry.quorum)))
        return size, head

    def consistency_proofs(self, keyholder: int, size: int) -> list[pb.ConsistencyProof]:
        """Proofs that the head of ``size`` extends each head ``keyholder`` may have co-signed last.

        From the last size the log records it co-signed, and from every later size a
        decryption request showed it (smaller than ``size``): the key holder uses the
        one from its own last size and refuses the task if there is none.
        """
        last = self.cosigned.get(keyholder, 0)
        sizes = {s for s, quorum in self.shown if keyholder in quorum and last <= s < size}
        sizes |= {last} if 0 < last < size else set()
        tree = self.audit.tree
        return [
            pb.ConsistencyProof(from_size=s, hashes=tree.consistency_proof(s, size))
            for s in sorted(sizes)
        ]

    def start(self, roster_digest: bytes) -> None:
        """Write the roster entry if the log is empty (the first entry of every log)."""
        if self.audit.size == 0:
            self.record(
                RosterEntry(
                    deployment_id=self.roster.deployment_id,
                    roster_sha256=roster_digest,
                    params_id=self.roster.params.id,
                    policy=exact_json(self.roster.policy.as_dict()),
                )
            )

    def rejection(
        self,
        round_number: int,
        client: str,
        ciphertext_hash: bytes,
        reason: str,
        *,
        header: pb.UploadHeader | None = None,
    ) -> None:
        """Record a refused upload (best effort: it is refused either way).

        With the upload's ``header`` and the digest of its head (``ciphertext_hash``, empty
        if the head did not parse) the entry carries the client's signed statement as it
        came (``audit verify`` checks its signature like an accepted upload's); a header
        that does not even make a statement is logged as unsigned.
        """
        reason = reason[:MAX_REASON_CHARS]
        entry = UploadRejectedEntry.unsigned(round_number, client, ciphertext_hash, reason)
        if header is not None and ciphertext_hash:
            try:
                signed = UploadStatement.from_header(
                    self.roster.deployment_id, header, ciphertext_hash
                )
                entry = UploadRejectedEntry.of(signed, reason=reason)
            except SecAggError:
                pass  # a malformed statement: the server's word only
        try:
            self.record(entry)
        except SecAggError:
            log.exception("could not record a rejected upload")

    def checkpoint(self, size: int, head: bytes) -> None:
        """Append the server's signed checkpoint of the log at (size, head)."""
        statement = CheckpointStatement(self.roster.deployment_id, size, head)
        signed = Signed.create(statement, self.signing_key)
        self.record(CheckpointEntry(size, head, signed.signature))
