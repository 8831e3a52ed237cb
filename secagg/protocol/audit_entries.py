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

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from secagg.protocol.exact_float import exact_float, parse_exact_float
from secagg.protocol.statements import (
    CeremonyStatement,
    CheckpointStatement,
    EndorsementStatement,
    LockStatement,
    PartialStatement,
    RefusalStatement,
    ReleaseStatement,
    Signed,
    Statement,
    UploadStatement,
    WithdrawalStatement,
)
from secagg.protocol.typed_json import from_json, to_json

E = TypeVar("E", bound="AuditEntry")
S = TypeVar("S", bound=Statement)
SE = TypeVar("SE", bound="SignedEntry[Any]")


def _is_float_field(kind: type[Any], name: str) -> bool:
    hint = next(f.type for f in dataclasses.fields(kind) if f.name == name)
    return hint in (float, "float")


@dataclass(frozen=True)
class AuditEntry:
    """Base of the typed entries."""

    TYPE: ClassVar[str]

    def to_data(self) -> dict[str, Any]:
        """The entry's ``data`` object (JSON-ready)."""
        encoded = to_json(self)
        assert isinstance(encoded, dict)
        return encoded

    @classmethod
    def from_data(cls: type[E], data: Any) -> E:
        """Parse and type-check a ``data`` object; raises ValueError naming the bad field."""
        return from_json(cls, data, cls.TYPE)


class SignedEntry(AuditEntry, Generic[S]):
    """An entry recording one signed statement: its fields (some renamed) and signature.

    Subclasses name the statement type (``STATEMENT``), the entry field holding
    the signature (``SIGNATURE``) and the statement fields the entry stores under another
    name (``RENAMED``, statement field -> entry field). Entry fields that are not part of
    the statement (e.g. ``task_id``) are passed to :meth:`of` as keywords. A statement's
    float field is stored as :func:`exact_float` text (declare the entry field ``str``).
    """

    STATEMENT: ClassVar[type[Any]]
    SIGNATURE: ClassVar[str] = "signature"
    RENAMED: ClassVar[dict[str, str]] = {}

    def signed(self, deployment_id: str) -> Signed[S]:
        """The signed statement (raises MalformedStatement on bad field sizes)."""
        kind = self.STATEMENT
        names = [f.name for f in dataclasses.fields(kind) if f.name != "deployment_id"]
        values = {n: getattr(self, self.RENAMED.get(n, n)) for n in names}
        for n in names:
            if _is_float_field(kind, n):
                values[n] = parse_exact_float(values[n])
        return Signed(kind(deployment_id=deployment_id, **values), getattr(self, self.SIGNATURE))

    @classmethod
    def of(cls: type[SE], signed: Signed[S], **extra: Any) -> SE:
        """The entry recording ``signed`` (``extra``: entry fields the statement lacks)."""
        stored_as = {entry: field for field, entry in cls.RENAMED.items()}
        values = dict(extra)
        for f in dataclasses.fields(cls):
            if f.name == cls.SIGNATURE:
                values[f.name] = signed.signature
            elif f.name not in values:
                value = getattr(signed.statement, stored_as.get(f.name, f.name))
                values[f.name] = exact_float(value) if isinstance(value, float) else value
        return cls(**values)


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
