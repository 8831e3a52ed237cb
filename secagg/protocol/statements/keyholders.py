"""What key holders sign: ceremony messages, partial decryptions and refusals."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar

from secagg.proto import service_pb2 as pb
from secagg.protocol.roster import Party, Roster
from secagg.protocol.statements.base import Signed, Statement, keyholder_party


@dataclass(frozen=True)
class CeremonyStatement(Statement):
    """What a key holder signs for a key-ceremony message (over the body's SHA-256).

    ``epoch`` is the key epoch whose ceremony the message belongs to (1, 2, ...): a
    message of one epoch does not verify as a message of another (no replay into a
    later ceremony).
    """

    DOMAIN: ClassVar[bytes] = b"secagg/ceremony/v3"

    deployment_id: str
    kind: int
    sender: int
    recipient: int
    body_sha256: bytes
    epoch: int = 1

    def signer(self, roster: Roster) -> Party:
        """The sending key holder."""
        return keyholder_party(roster, self.sender)

    @classmethod
    def of_body(
        cls,
        deployment_id: str,
        *,
        kind: int,
        sender: int,
        recipient: int,
        body: bytes,
        epoch: int = 1,
    ) -> CeremonyStatement:
        """The statement for a message with this body (in key epoch ``epoch``)."""
        return cls(deployment_id, kind, sender, recipient, hashlib.sha256(body).digest(), epoch)

    def to_proto(self, body: bytes, signature: bytes) -> pb.CeremonyMessage:
        """The wire form (the body travels with it)."""
        return pb.CeremonyMessage(
            kind=self.kind,  # type: ignore[arg-type]
            sender=self.sender,
            recipient=self.recipient,
            body=body,
            signature=signature,
            epoch=self.epoch,
        )

    @classmethod
    def from_proto(
        cls, deployment_id: str, msg: pb.CeremonyMessage, *, epoch: int | None = None
    ) -> Signed[CeremonyStatement]:
        """The signed statement a ceremony message carries.

        ``epoch``: the epoch the reader expects (default: the message's own field); a
        message of another epoch then fails to verify.
        """
        statement = cls.of_body(
            deployment_id,
            kind=msg.kind,
            sender=msg.sender,
            recipient=msg.recipient,
            body=msg.body,
            epoch=msg.epoch if epoch is None else epoch,
        )
        return Signed(statement, msg.signature)


@dataclass(frozen=True)
class PartialStatement(Statement):
    """What a key holder signs when it returns a partial decryption of an aggregate."""

    DOMAIN: ClassVar[bytes] = b"secagg/partial-sig/v1"

    deployment_id: str
    round: int
    keyholder: int
    partial_digest: bytes
    aggregate_digest: bytes

    def signer(self, roster: Roster) -> Party:
        """The key holder."""
        return keyholder_party(roster, self.keyholder)


@dataclass(frozen=True)
class RefusalStatement(Statement):
    """What a key holder signs when it refuses a decryption task."""

    DOMAIN: ClassVar[bytes] = b"secagg/refusal/v1"

    deployment_id: str
    round: int
    keyholder: int
    reason: str

    def signer(self, roster: Roster) -> Party:
        """The key holder."""
        return keyholder_party(roster, self.keyholder)

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
