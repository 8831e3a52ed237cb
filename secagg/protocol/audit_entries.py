"""One typed class per audit-log entry type: the schema the writer and the verifier share.

The server appends ``entry.to_data()`` under ``entry.TYPE``; ``secagg audit verify``
reads entries back with :func:`parse_entry`, which checks every field's presence and
JSON type and turns hex back into bytes. Entries that carry a signed statement rebuild
it (``signed(deployment_id)``), so the bytes a signature is checked over come from
:mod:`secagg.protocol.statements` on both sides.

Encoding of fields: ``bytes`` as lower-case hex, ``int``/``str``/``bool`` as JSON
scalars (a ``bool`` is never an ``int``), tuples as lists, :class:`AggregateInput` as an
object. There are no floats in entries: a statement's float (an upload's ε) and the
policy's floats are logged as their exact ``float.hex()`` text
(:mod:`secagg.protocol.exact_float`), which turns back into the very same double, so a
statement rebuilt from an entry digests to the same bytes. Entries hold hashes,
signatures and public metadata only: never ciphertext payloads, key material or model
values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from secagg.protocol.audit_decryption_entries import (
    CheckpointEntry,
    DecryptionRequestEntry,
    DisagreementEntry,
    EndorsementEntry,
    LockEntry,
    PartialEntry,
    RefusalEntry,
    ReleaseEntry,
)
from secagg.protocol.audit_entry_base import AuditEntry, SignedEntry
from secagg.protocol.statements import (
    CeremonyStatement,
    Signed,
    UploadStatement,
    WithdrawalStatement,
)

__all__ = [
    "AggregateEntry",
    "AggregateInput",
    "AuditEntry",
    "CeremonyEntry",
    "CheckpointEntry",
    "DecryptionRequestEntry",
    "DisagreementEntry",
    "EndorsementEntry",
    "LockEntry",
    "PartialEntry",
    "PublicKeyEntry",
    "RefusalEntry",
    "ReleaseEntry",
    "RosterEntry",
    "RoundOpenEntry",
    "SignedEntry",
    "UploadEntry",
    "UploadRejectedEntry",
    "WithdrawalEntry",
    "parse_entry",
]


# ----------------------------------------------------------------------------- deployment


@dataclass(frozen=True)
class RosterEntry(AuditEntry):
    """The first entry: which roster, parameters and policy the log is about.

    ``policy``: the roster's policy table with its floats as exact text
    (:func:`secagg.protocol.exact_float.exact_json`).
    """

    TYPE: ClassVar[str] = "roster"
    deployment_id: str
    roster_sha256: bytes
    params_id: str
    policy: dict[str, Any]


@dataclass(frozen=True)
class CeremonyEntry(AuditEntry):
    """A relayed key-ceremony message of key epoch ``epoch``.

    ``body``: the whole body when short, and always of EXCHANGE_KEY, KEY_COMMIT and
    TRANSCRIPT (else empty: ``body_sha256`` stands for it).
    """

    TYPE: ClassVar[str] = "ceremony"
    kind: str
    sender: int
    recipient: int
    body_sha256: bytes
    body: bytes
    signature: bytes
    epoch: int = 1

    def signed(self, deployment_id: str, kind: int) -> Signed[CeremonyStatement]:
        """The signed statement (``kind``: the enum value of :attr:`kind`)."""
        statement = CeremonyStatement(
            deployment_id, kind, self.sender, self.recipient, self.body_sha256, self.epoch
        )
        return Signed(statement, self.signature)


@dataclass(frozen=True)
class PublicKeyEntry(AuditEntry):
    """The joint public key, once every key holder endorsed it."""

    TYPE: ClassVar[str] = "public_key"
    id: bytes
    keyholders: int
    threshold: int


# ----------------------------------------------------------------------------- rounds


@dataclass(frozen=True)
class RoundOpenEntry(AuditEntry):
    """A round opens on a global model."""

    TYPE: ClassVar[str] = "round_open"
    round: int
    global_model_hash: bytes


@dataclass(frozen=True)
class UploadEntry(SignedEntry[UploadStatement]):
    """An accepted upload: the client's signed statement (``epsilon`` as :func:`exact_float`,
    ``dp`` the client's signed DP marker)."""

    STATEMENT: ClassVar[type[Any]] = UploadStatement
    TYPE: ClassVar[str] = "upload"
    RENAMED: ClassVar[dict[str, str]] = {"client_id": "client"}
    round: int
    client: str
    nonce: bytes
    global_model_hash: bytes
    weight: int
    ciphertext_hash: bytes
    epsilon: str
    dp: bool
    signature: bytes


@dataclass(frozen=True)
class UploadRejectedEntry(SignedEntry[UploadStatement]):
    """A refused upload: the client's signed statement as it came, and why it was refused.

    Best effort (recorded when the log can be written). When the upload brought no
    statement (no header) every statement field is empty and ``signature`` is ``b""``:
    the entry is then the server's word only, and the verifier says so.
    """

    STATEMENT: ClassVar[type[Any]] = UploadStatement
    TYPE: ClassVar[str] = "upload_rejected"
    RENAMED: ClassVar[dict[str, str]] = {"client_id": "client"}
    round: int
    client: str
    nonce: bytes
    global_model_hash: bytes
    weight: int
    ciphertext_hash: bytes
    epsilon: str
    dp: bool
    signature: bytes
    reason: str

    @classmethod
    def unsigned(
        cls, round_number: int, client: str, ciphertext_hash: bytes, reason: str
    ) -> UploadRejectedEntry:
        """A refusal of an upload that brought no statement."""
        return cls(round_number, client, b"", b"", 0, ciphertext_hash, "", False, b"", reason)


@dataclass(frozen=True)
class WithdrawalEntry(SignedEntry[WithdrawalStatement]):
    """A client's signed withdrawal."""

    STATEMENT: ClassVar[type[Any]] = WithdrawalStatement
    TYPE: ClassVar[str] = "withdrawal"
    RENAMED: ClassVar[dict[str, str]] = {"client_id": "client"}
    client: str
    round: int
    reason: str
    signature: bytes


@dataclass(frozen=True)
class AggregateInput:
    """One upload folded into an aggregate."""

    client: str
    ciphertext_hash: bytes
    weight: int


@dataclass(frozen=True)
class AggregateEntry(AuditEntry):
    """A round closes: its aggregate and exactly the uploads in it."""

    TYPE: ClassVar[str] = "aggregate"
    round: int
    aggregate_hash: bytes
    aggregate_digest: bytes
    total_weight: int
    inputs: tuple[AggregateInput, ...] = field(default_factory=tuple)


ENTRY_TYPES: dict[str, type[AuditEntry]] = {
    cls.TYPE: cls
    for cls in (
        RosterEntry,
        CeremonyEntry,
        PublicKeyEntry,
        RoundOpenEntry,
        UploadEntry,
        UploadRejectedEntry,
        WithdrawalEntry,
        AggregateEntry,
        LockEntry,
        DecryptionRequestEntry,
        PartialEntry,
        EndorsementEntry,
        RefusalEntry,
        ReleaseEntry,
        DisagreementEntry,
        CheckpointEntry,
    )
}


def parse_entry(type_: str, data: Any) -> AuditEntry:
    """The typed entry for a logged ``(type, data)``; raises ValueError if unknown or bad."""
    cls = ENTRY_TYPES.get(type_)
    if cls is None:
        raise ValueError(f"unknown entry type {type_!r}")
    return cls.from_data(data)
