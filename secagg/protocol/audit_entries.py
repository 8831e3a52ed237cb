"""One typed class per audit-log entry type: the schema the writer and the verifier share.

The server appends ``entry.to_data()`` under ``entry.TYPE``; ``secagg audit verify``
reads entries back with :func:`parse_entry`, which checks every field's presence and
JSON type and turns hex back into bytes. Entries that carry a signed statement rebuild
it (``signed(deployment_id)``), so the bytes a signature is checked over come from
:mod:`secagg.protocol.statements` on both sides.

Encoding of fields: ``bytes`` as lower-case hex, ``int``/``float``/``str``/``bool`` as
JSON scalars (a ``bool`` is never an ``int``), tuples as lists, :class:`AggregateInput`
as an object. Entries hold hashes, signatures and public metadata only: never
ciphertext payloads, key material or model values.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar, Union

from secagg.protocol.statements import (
    CeremonyStatement,
    CheckpointStatement,
    PartialStatement,
    RefusalStatement,
    ReleaseStatement,
    Signed,
    UploadStatement,
    WithdrawalStatement,
)

E = TypeVar("E", bound="AuditEntry")


def _encode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def _decode(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is bytes:
        if not isinstance(value, str) or bytes.fromhex(value).hex() != value:
            raise ValueError(f"{where} must be lower-case hex")
        return bytes.fromhex(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be a boolean")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where} must be an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where} must be a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a string")
        return value
    if origin is tuple:
        (item, _ellipsis) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ValueError(f"{where} must be a list")
        return tuple(_decode(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where} must be an object")
        return dict(value)
    if origin in (Union, types.UnionType):
        raise TypeError(f"{where}: union fields are not supported")
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _from_fields(hint, value, where)
    raise TypeError(f"{where}: unsupported field type {hint!r}")


def _from_fields(cls: type[Any], data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be an object")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    missing = [n for n in names if n not in data]
    extra = sorted(set(data) - set(names))
    if missing or extra:
        raise ValueError(f"{where}: missing fields {missing}, unexpected fields {extra}")
    return cls(**{n: _decode(data[n], hints[n], f"{where}.{n}") for n in names})


@dataclass(frozen=True)
class AuditEntry:
    """Base of the typed entries."""

    TYPE: ClassVar[str]

    def to_data(self) -> dict[str, Any]:
        """The entry's ``data`` object (JSON-ready)."""
        encoded = _encode(self)
        assert isinstance(encoded, dict)
        return encoded

    @classmethod
    def from_data(cls: type[E], data: Any) -> E:
        """Parse and type-check a ``data`` object; raises ValueError naming the bad field."""
        return typing.cast(E, _from_fields(cls, data, cls.TYPE))


# ----------------------------------------------------------------------------- deployment


@dataclass(frozen=True)
class RosterEntry(AuditEntry):
    """The first entry: which roster, parameters and policy the log is about."""

    TYPE: ClassVar[str] = "roster"
    deployment_id: str
    roster_sha256: bytes
    params_id: str
    policy: dict[str, Any]


@dataclass(frozen=True)
class CeremonyEntry(AuditEntry):
    """A relayed key-ceremony message (the body itself only when it is short)."""

    TYPE: ClassVar[str] = "ceremony"
    kind: str
    sender: int
    recipient: int
    body_sha256: bytes
    body: bytes
    signature: bytes

    def signed(self, deployment_id: str, kind: int) -> Signed[CeremonyStatement]:
        """The signed statement (``kind``: the enum value of :attr:`kind`)."""
        statement = CeremonyStatement(
            deployment_id, kind, self.sender, self.recipient, self.body_sha256
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
class UploadEntry(AuditEntry):
    """An accepted upload: the client's signed statement."""

    TYPE: ClassVar[str] = "upload"
    round: int
    client: str
    nonce: bytes
    global_model_hash: bytes
    weight: int
    ciphertext_hash: bytes
    epsilon: float
    signature: bytes

    @classmethod
    def of(cls, signed: Signed[UploadStatement]) -> UploadEntry:
        """The entry recording this signed upload."""
        s = signed.statement
        return cls(
            s.round,
            s.client_id,
            s.nonce,
            s.global_model_hash,
            s.weight,
            s.ciphertext_hash,
            s.epsilon,
            signed.signature,
        )

    def signed(self, deployment_id: str) -> Signed[UploadStatement]:
        """The signed statement (raises MalformedStatement on bad field sizes)."""
        statement = UploadStatement(
            deployment_id=deployment_id,
            round=self.round,
            client_id=self.client,
            nonce=self.nonce,
            global_model_hash=self.global_model_hash,
            ciphertext_hash=self.ciphertext_hash,
            weight=self.weight,
            epsilon=self.epsilon,
        )
        return Signed(statement, self.signature)


@dataclass(frozen=True)
class UploadRejectedEntry(AuditEntry):
    """A refused upload (best effort: recorded when the log can be written)."""

    TYPE: ClassVar[str] = "upload_rejected"
    round: int
    client: str
    ciphertext_hash: bytes
    reason: str


@dataclass(frozen=True)
class WithdrawalEntry(AuditEntry):
    """A client's signed withdrawal."""

    TYPE: ClassVar[str] = "withdrawal"
    client: str
    round: int
    reason: str
    signature: bytes

    def signed(self, deployment_id: str) -> Signed[WithdrawalStatement]:
        """The signed statement."""
        statement = WithdrawalStatement(deployment_id, self.client, self.round, self.reason)
        return Signed(statement, self.signature)


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
class PartialEntry(AuditEntry):
    """A key holder's signed partial decryption and its co-signature of a checkpoint."""

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

    def signed(self, deployment_id: str) -> Signed[PartialStatement]:
        """The signed partial statement."""
        statement = PartialStatement(
            deployment_id, self.round, self.keyholder, self.partial_digest, self.aggregate_digest
        )
        return Signed(statement, self.signature)

    def signed_checkpoint(self, deployment_id: str) -> Signed[CheckpointStatement]:
        """The checkpoint the key holder co-signed."""
        statement = CheckpointStatement(deployment_id, self.checkpoint_size, self.checkpoint_head)
        return Signed(statement, self.checkpoint_signature)


@dataclass(frozen=True)
class RefusalEntry(AuditEntry):
    """A key holder's signed refusal of a task."""

    TYPE: ClassVar[str] = "refusal"
    round: int
    task_id: int
    keyholder: int
    reason: str
    signature: bytes

    def signed(self, deployment_id: str) -> Signed[RefusalStatement]:
        """The signed refusal."""
        statement = RefusalStatement(deployment_id, self.round, self.keyholder, self.reason)
        return Signed(statement, self.signature)


@dataclass(frozen=True)
class ReleaseEntry(AuditEntry):
    """The server's signed release of a round's model."""

    TYPE: ClassVar[str] = "release"
    round: int
    task_id: int
    model_hash: bytes
    aggregate_digest: bytes
    quorum: tuple[int, ...]
    partial_digests: tuple[bytes, ...]
    server_signature: bytes

    @classmethod
    def of(cls, signed: Signed[ReleaseStatement], *, task_id: int) -> ReleaseEntry:
        """The entry recording this signed release."""
        s = signed.statement
        return cls(
            s.round,
            task_id,
            s.model_hash,
            s.aggregate_digest,
            s.quorum,
            s.partial_digests,
            signed.signature,
        )

    def signed(self, deployment_id: str) -> Signed[ReleaseStatement]:
        """The signed release statement."""
        statement = ReleaseStatement(
            deployment_id,
            self.round,
            self.model_hash,
            self.aggregate_digest,
            self.quorum,
            self.partial_digests,
        )
        return Signed(statement, self.server_signature)


@dataclass(frozen=True)
class CheckpointEntry(AuditEntry):
    """The server's signed checkpoint of the log's size and head."""

    TYPE: ClassVar[str] = "checkpoint"
    size: int
    head: bytes
    server_signature: bytes

    def signed(self, deployment_id: str) -> Signed[CheckpointStatement]:
        """The signed checkpoint."""
        return Signed(
            CheckpointStatement(deployment_id, self.size, self.head), self.server_signature
        )


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
        DecryptionRequestEntry,
        PartialEntry,
        RefusalEntry,
        ReleaseEntry,
        CheckpointEntry,
    )
}


def parse_entry(type_: str, data: Any) -> AuditEntry:
    """The typed entry for a logged ``(type, data)``; raises ValueError if unknown or bad."""
    cls = ENTRY_TYPES.get(type_)
    if cls is None:
        raise ValueError(f"unknown entry type {type_!r}")
    return cls.from_data(data)
