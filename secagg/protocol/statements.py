"""The protocol's signed statements: one frozen dataclass per kind of statement.

Each statement owns

* its **digest** (:meth:`Statement.digest`): the only place its signed byte string is
  defined, under a domain tag of its own, so a signature can never be replayed as a
  different kind of statement;
* its **signer** (:meth:`Statement.signer`): the roster party whose Ed25519 key must sign
  it;
* its **protobuf form** (``to_proto`` / ``from_proto``, wire format in
  ``proto/service.proto``).

A :class:`Signed` wraps a statement and a signature; :meth:`Signed.verify` checks it
against the roster and raises :class:`~secagg.errors.SignatureInvalid`. Audit entries
(:mod:`secagg.protocol.audit_entries`) are built from statements too, so the writer and
``secagg audit verify`` agree on every field.

Security
--------
A digest binds the deployment id, so statements of one deployment are worthless in
another. What a statement *means* (is this upload acceptable, may this aggregate be
decrypted) is decided by :mod:`secagg.protocol.policy`, not here.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from secagg import constants as C
from secagg._internal.envelope import digest_of
from secagg.errors import ConfigError, MalformedStatement, UnknownParty
from secagg.proto import service_pb2 as pb
from secagg.protocol.roster import Party, Roster
from secagg.protocol.signing import sign, verify


class Statement(ABC):
    """A statement some roster party signs."""

    DOMAIN: ClassVar[bytes]

    @abstractmethod
    def digest(self) -> bytes:
        """The 32-byte digest that is signed (domain-separated)."""

    @abstractmethod
    def signer(self, roster: Roster) -> Party:
        """The roster party that must sign this statement (raises UnknownParty)."""

    def describe_signer(self, roster: Roster) -> str:
        """Who signs, for error messages."""
        party = self.signer(roster)
        return f"key holder {party.index}" if party.role == "keyholder" else party.name


S = TypeVar("S", bound=Statement)


@dataclass(frozen=True)
class Signed(Generic[S]):
    """A statement and its Ed25519 signature."""

    statement: S
    signature: bytes

    @classmethod
    def create(cls, statement: S, key: Ed25519PrivateKey) -> Signed[S]:
        """Sign ``statement`` with ``key``."""
        return cls(statement, sign(key, statement.digest()))

    def verify(self, roster: Roster) -> S:
        """Check the signature under the signer's roster key; returns the statement.

        Raises
        ------
        SignatureInvalid
            The signature does not verify.
        UnknownParty
            The statement names a party the roster does not know.
        """
        party = self.statement.signer(roster)
        self.verify_by(party, who=self.statement.describe_signer(roster))
        return self.statement

    def verify_by(self, party: Party, *, who: str | None = None) -> S:
        """Check the signature under ``party``'s key (for statements anyone may co-sign)."""
        verify(
            party.signing_public_key, self.signature, self.statement.digest(), who=who or party.name
        )
        return self.statement


def _client(roster: Roster, name: str) -> Party:
    try:
        return roster.client(name)
    except ConfigError as exc:
        raise UnknownParty(str(exc)) from None


def _keyholder(roster: Roster, index: int) -> Party:
    try:
        return roster.keyholder(index)
    except ConfigError as exc:
        raise UnknownParty(str(exc)) from None


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise MalformedStatement(message)


# ----------------------------------------------------------------------------- uploads


@dataclass(frozen=True)
class UploadStatement(Statement):
    """What a client signs for an upload, with the ε it has spent so far."""

    DOMAIN: ClassVar[bytes] = b"secagg/upload/v1"

    deployment_id: str
    round: int
    client_id: str
    nonce: bytes
    global_model_hash: bytes
    ciphertext_hash: bytes
    weight: int
    epsilon: float = 0.0

    def __post_init__(self) -> None:
        _require(
            len(self.nonce) == C.UPLOAD_NONCE_BYTES, f"nonce must be {C.UPLOAD_NONCE_BYTES} bytes"
        )
        _require(
            len(self.global_model_hash) == C.DIGEST_BYTES, "global model hash must be 32 bytes"
        )
        _require(len(self.ciphertext_hash) == C.DIGEST_BYTES, "ciphertext hash must be 32 bytes")

    def digest(self) -> bytes:
        """See :class:`Statement`."""
        return digest_of(
            self.DOMAIN,
            self.deployment_id.encode(),
            self.round,
            self.client_id.encode(),
            self.nonce,
            self.global_model_hash,
            self.ciphertext_hash,
            self.weight,
            float(self.epsilon),
        )

    def signer(self, roster: Roster) -> Party:
        """The client."""
        return _client(roster, self.client_id)

    def to_header(self, signature: bytes, *, total_size: int) -> pb.UploadHeader:
        """The header that opens an upload stream."""
        return pb.UploadHeader(
            round=self.round,
            client_id=self.client_id,
            nonce=self.nonce,
            global_model_hash=self.global_model_hash,
            weight=self.weight,
            blob=pb.BlobHeader(total_size=total_size, sha256=self.ciphertext_hash),
            signature=signature,
            epsilon=self.epsilon,
        )

    @classmethod
    def from_header(cls, deployment_id: str, header: pb.UploadHeader) -> Signed[UploadStatement]:
        """The signed statement an upload header carries (raises MalformedStatement)."""
        return Signed(
            cls(
                deployment_id=deployment_id,
                round=header.round,
                client_id=header.client_id,
                nonce=header.nonce,
                global_model_hash=header.global_model_hash,
                ciphertext_hash=header.blob.sha256,
                weight=header.weight,
                epsilon=header.epsilon,
            ),
            header.signature,
        )

    def to_contribution(self, signature: bytes) -> pb.Contribution:
        """The form a decryption task lists it in."""
        return pb.Contribution(
            client_id=self.client_id,
            nonce=self.nonce,
            global_model_hash=self.global_model_hash,
            weight=self.weight,
            ciphertext_hash=self.ciphertext_hash,
            signature=signature,
            epsilon=self.epsilon,
        )

    @classmethod
    def from_contribution(
        cls, deployment_id: str, round_number: int, c: pb.Contribution
    ) -> Signed[UploadStatement]:
        """The signed statement a task's contribution carries (raises MalformedStatement)."""
        return Signed(
            cls(
                deployment_id=deployment_id,
                round=round_number,
                client_id=c.client_id,
                nonce=c.nonce,
                global_model_hash=c.global_model_hash,
                ciphertext_hash=c.ciphertext_hash,
                weight=c.weight,
                epsilon=c.epsilon,
            ),
            c.signature,
        )


@dataclass(frozen=True)
class WithdrawalStatement(Statement):
    """What a client signs when it leaves the federation (from ``round`` on)."""

    DOMAIN: ClassVar[bytes] = b"secagg/withdraw/v1"

    deployment_id: str
    client_id: str
    round: int
    reason: str

    def digest(self) -> bytes:
        """See :class:`Statement`."""
        return digest_of(
            self.DOMAIN,
            self.deployment_id.encode(),
            self.client_id.encode(),
            self.round,
            self.reason.encode(),
        )

    def signer(self, roster: Roster) -> Party:
        """The client."""
        return _client(roster, self.client_id)

    def to_proto(self, signature: bytes) -> pb.Withdrawal:
        """The wire form."""
        return pb.Withdrawal(
            client_id=self.client_id, round=self.round, reason=self.reason, signature=signature
        )

    @classmethod
    def from_proto(cls, deployment_id: str, msg: pb.Withdrawal) -> Signed[WithdrawalStatement]:
        """The signed statement a withdrawal message carries."""
        return Signed(cls(deployment_id, msg.client_id, msg.round, msg.reason), msg.signature)


# ----------------------------------------------------------------------------- ceremony


@dataclass(frozen=True)
class CeremonyStatement(Statement):
    """What a key holder signs for a key-ceremony message (over the body's SHA-256)."""

    DOMAIN: ClassVar[bytes] = b"secagg/ceremony/v2"

    deployment_id: str
    kind: int
    sender: int
    recipient: int
    body_sha256: bytes

    def digest(self) -> bytes:
        """See :class:`Statement`."""
        return digest_of(
            self.DOMAIN,
            self.deployment_id.encode(),
            self.kind,
            self.sender,
            self.recipient,
            self.body_sha256,
        )

    def signer(self, roster: Roster) -> Party:
        """The sending key holder."""
        return _keyholder(roster, self.sender)

    @classmethod
    def of_body(
        cls, deployment_id: str, *, kind: int, sender: int, recipient: int, body: bytes
    ) -> CeremonyStatement:
        """The statement for a message with this body."""
        return cls(deployment_id, kind, sender, recipient, hashlib.sha256(body).digest())

    def to_proto(self, body: bytes, signature: bytes) -> pb.CeremonyMessage:
        """The wire form (the body travels with it)."""
        return pb.CeremonyMessage(
            kind=self.kind,  # type: ignore[arg-type]
            sender=self.sender,
            recipient=self.recipient,
            body=body,
            signature=signature,
        )

    @classmethod
    def from_proto(cls, deployment_id: str, msg: pb.CeremonyMessage) -> Signed[CeremonyStatement]:
        """The signed statement a ceremony message carries."""
        return Signed(
            cls.of_body(
                deployment_id,
                kind=msg.kind,
                sender=msg.sender,
                recipient=msg.recipient,
                body=msg.body,
            ),
            msg.signature,
        )


# ----------------------------------------------------------------------------- decryption


@dataclass(frozen=True)
class PartialStatement(Statement):
    """What a key holder signs when it returns a partial decryption of an aggregate."""

    DOMAIN: ClassVar[bytes] = b"secagg/partial-sig/v1"

    deployment_id: str
    round: int
    keyholder: int
    partial_digest: bytes
    aggregate_digest: bytes

    def digest(self) -> bytes:
        """See :class:`Statement`."""
        return digest_of(
            self.DOMAIN,
            self.deployment_id.encode(),
            self.round,
            self.keyholder,
            self.partial_digest,
            self.aggregate_digest,
        )

    def signer(self, roster: Roster) -> Party:
        """The key holder."""
        return _keyholder(roster, self.keyholder)


@dataclass(frozen=True)
class RefusalStatement(Statement):
    """What a key holder signs when it refuses a decryption task."""

    DOMAIN: ClassVar[bytes] = b"secagg/refusal/v1"

    deployment_id: str
    round: int
    keyholder: int
    reason: str

    def digest(self) -> bytes:
        """See :class:`Statement`."""
        return digest_of(
            self.DOMAIN,
            self.deployment_id.encode(),
            self.round,
            self.keyholder,
            self.reason.encode(),
        )

    def signer(self, roster: Roster) -> Party:
        """The key holder."""
        return _keyholder(roster, self.keyholder)

    def to_proto(self, signature: bytes, *, task_id: int) -> pb.Refusal:
        """The wire form."""
        return pb.Refusal(
            task_id=task_id,
            round=self.round,
            keyholder=self.keyholder,
            reason=self.reason,
            signature=signature,
        )

    @classmethod
    def from_proto(
        cls, deployment_id: str, msg: pb.Refusal, *, round_number: int | None = None
    ) -> Signed[RefusalStatement]:
        """The signed statement a refusal carries (``round_number``: the task's round)."""
        rnd = msg.round if round_number is None else round_number
        return Signed(cls(deployment_id, rnd, msg.keyholder, msg.reason), msg.signature)


@dataclass(frozen=True)
class ReleaseStatement(Statement):
    """What the server signs when it releases a round's global model."""

    DOMAIN: ClassVar[bytes] = b"secagg/release/v1"

    deployment_id: str
    round: int
    model_hash: bytes
    aggregate_digest: bytes
    quorum: tuple[int, ...]
    partial_digests: tuple[bytes, ...]

    def digest(self) -> bytes:
        """See :class:`Statement`."""
        return digest_of(
            self.DOMAIN,
            self.deployment_id.encode(),
            self.round,
            self.model_hash,
            self.aggregate_digest,
            b"".join(i.to_bytes(4, "little") for i in self.quorum),
            b"".join(self.partial_digests),
        )

    def signer(self, roster: Roster) -> Party:
        """The server."""
        return roster.server

    def to_proto(self, signature: bytes) -> pb.Release:
        """The wire form."""
        return pb.Release(
            round=self.round,
            model_hash=self.model_hash,
            aggregate_digest=self.aggregate_digest,
            quorum=list(self.quorum),
            partial_digests=list(self.partial_digests),
            server_signature=signature,
        )

    @classmethod
    def from_proto(cls, deployment_id: str, msg: pb.Release) -> Signed[ReleaseStatement]:
        """The signed statement a release carries."""
        return Signed(
            cls(
                deployment_id,
                msg.round,
                msg.model_hash,
                msg.aggregate_digest,
                tuple(msg.quorum),
                tuple(msg.partial_digests),
            ),
            msg.server_signature,
        )


@dataclass(frozen=True)
class CheckpointStatement(Statement):
    """An audit-log checkpoint: the log's size and head.

    The server signs it; key holders co-sign the head they were shown when they answer
    a decryption task (use :meth:`Signed.verify_by` with the key holder's party).
    """

    DOMAIN: ClassVar[bytes] = b"secagg/audit-checkpoint/v1"

    deployment_id: str
    size: int
    head: bytes

    def digest(self) -> bytes:
        """See :class:`Statement`."""
        return digest_of(self.DOMAIN, self.deployment_id.encode(), self.size, self.head)

    def signer(self, roster: Roster) -> Party:
        """The server (key holders co-sign through :meth:`Signed.verify_by`)."""
        return roster.server


def quorum_tuple(quorum: Sequence[int]) -> tuple[int, ...]:
    """A quorum as the sorted tuple statements hold."""
    return tuple(int(i) for i in quorum)
