"""The typed audit-log entries of decryption: locks, requests, partials, refusals, releases.

Part of the schema of :mod:`secagg.protocol.audit_entries` (which re-exports them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from secagg.protocol.audit_entry_base import AuditEntry, SignedEntry
from secagg.protocol.statements import (
    CheckpointStatement,
    EndorsementStatement,
    LockStatement,
    PartialStatement,
    RefusalStatement,
    ReleaseStatement,
    Signed,
)

# ----------------------------------------------------------------------------- decryption


@dataclass(frozen=True)
class LockEntry(SignedEntry[LockStatement]):
    """A key holder's signed lock of a round to one aggregate."""

    STATEMENT: ClassVar[type[Any]] = LockStatement
    TYPE: ClassVar[str] = "lock"
    round: int
    keyholder: int
    aggregate_digest: bytes
    signature: bytes


@dataclass(frozen=True)
class EndorsementEntry(SignedEntry[EndorsementStatement]):
    """A key holder's signed endorsement of the model an aggregate decrypts to."""

    STATEMENT: ClassVar[type[Any]] = EndorsementStatement
    TYPE: ClassVar[str] = "endorsement"
    round: int
    keyholder: int
    aggregate_digest: bytes
    model_hash: bytes
    checked_quorums: tuple[int, ...]
    signature: bytes


@dataclass(frozen=True)
class DecryptionRequestEntry(AuditEntry):
    """The server asks a quorum to decrypt an aggregate."""

    TYPE: ClassVar[str] = "decryption_request"
    round: int
    task_id: int
    quorum: tuple[int, ...]
    aggregate_hash: bytes
    aggregate_digest: bytes
    contributors: tuple[str, ...]
    operator: bool


@dataclass(frozen=True)
class PartialEntry(SignedEntry[PartialStatement]):
    """A key holder's signed partial decryption and its co-signature of a checkpoint."""

    STATEMENT: ClassVar[type[Any]] = PartialStatement
    TYPE: ClassVar[str] = "partial"
    round: int
    task_id: int
    keyholder: int
    aggregate_digest: bytes
    partial_digest: bytes
    partial_hash: bytes
    signature: bytes
    checkpoint_size: int
    checkpoint_head: bytes
    checkpoint_signature: bytes

    def signed_checkpoint(self, deployment_id: str) -> Signed[CheckpointStatement]:
        """The checkpoint the key holder co-signed."""
        statement = CheckpointStatement(deployment_id, self.checkpoint_size, self.checkpoint_head)
        return Signed(statement, self.checkpoint_signature)


@dataclass(frozen=True)
class RefusalEntry(SignedEntry[RefusalStatement]):
    """A key holder's signed refusal of a task."""

    STATEMENT: ClassVar[type[Any]] = RefusalStatement
    TYPE: ClassVar[str] = "refusal"
    round: int
    task_id: int
    keyholder: int
    reason: str
    signature: bytes


@dataclass(frozen=True)
class ReleaseEntry(SignedEntry[ReleaseStatement]):
    """The server's signed release of a round's model."""

    STATEMENT: ClassVar[type[Any]] = ReleaseStatement
    TYPE: ClassVar[str] = "release"
    SIGNATURE: ClassVar[str] = "server_signature"
    round: int
    task_id: int
    model_hash: bytes
    aggregate_digest: bytes
    quorum: tuple[int, ...]
    partial_digests: tuple[bytes, ...]
    checked_quorums: tuple[int, ...]
    server_signature: bytes


@dataclass(frozen=True)
class DisagreementEntry(AuditEntry):
    """Quorums decrypted a round's aggregate to different models: no release.

    One item per task, in the same order: ``task_ids``, ``quorums`` (flattened,
    ``threshold`` indices each), ``model_hashes`` (SHA-256 of each quorum's model blob);
    ``partial_digests`` flattened like ``quorums`` (the signed partials themselves are the
    task's ``partial`` entries). ``keyholder``: the deviating key holder, 0 if it cannot
    be named.
    """

    TYPE: ClassVar[str] = "disagreement"
    round: int
    aggregate_digest: bytes
    task_ids: tuple[int, ...]
    quorums: tuple[int, ...]
    model_hashes: tuple[bytes, ...]
    partial_digests: tuple[bytes, ...]
    keyholder: int


@dataclass(frozen=True)
class CheckpointEntry(SignedEntry[CheckpointStatement]):
    """The server's signed checkpoint of the log's size and head."""

    STATEMENT: ClassVar[type[Any]] = CheckpointStatement
    TYPE: ClassVar[str] = "checkpoint"
    SIGNATURE: ClassVar[str] = "server_signature"
    size: int
    head: bytes
    server_signature: bytes
