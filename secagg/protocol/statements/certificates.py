"""What key holders sign around a decryption: the round's lock and the model's endorsement.

A :class:`LockStatement` says "this key holder will decrypt no other aggregate of this
round"; ``ceil((n + t) / 2)`` of them on one aggregate form the lock certificate that
every decryption task must carry (:func:`secagg.protocol.certificates.check_locks`). An
:class:`EndorsementStatement` says "this key holder combined these quorums' partials of
this aggregate itself, they agreed, and the model blob they give has this hash"; clients
accept a global model only with ``t`` of them
(:func:`secagg.protocol.certificates.check_endorsements`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from secagg.proto import service_pb2 as pb
from secagg.protocol.roster import Party, Roster
from secagg.protocol.statements.base import Signed, Statement, keyholder_party


@dataclass(frozen=True)
class LockStatement(Statement):
    """A key holder locks a round to one aggregate (durably, before it signs)."""

    DOMAIN: ClassVar[bytes] = b"secagg/lock/v1"

    deployment_id: str
    round: int
    keyholder: int
    aggregate_digest: bytes

    def signer(self, roster: Roster) -> Party:
        """The key holder."""
        return keyholder_party(roster, self.keyholder)

    def to_proto(self, signature: bytes) -> pb.Lock:
        """The wire form."""
        return pb.Lock(
            round=self.round,
            keyholder=self.keyholder,
            aggregate_digest=self.aggregate_digest,
            signature=signature,
        )

    @classmethod
    def from_proto(cls, deployment_id: str, msg: pb.Lock) -> Signed[LockStatement]:
        """The signed statement a lock carries."""
        return Signed(
            cls(deployment_id, msg.round, msg.keyholder, msg.aggregate_digest), msg.signature
        )


@dataclass(frozen=True)
class EndorsementStatement(Statement):
    """A key holder vouches for the model one aggregate decrypts to.

    ``checked_quorums`` (flattened, ``t`` indices each) are the quorums whose partials
    it combined and found in agreement: how far the model was cross-checked.
    """

    DOMAIN: ClassVar[bytes] = b"secagg/endorsement/v1"

    deployment_id: str
    round: int
    keyholder: int
    aggregate_digest: bytes
    model_hash: bytes
    checked_quorums: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "checked_quorums", tuple(int(i) for i in self.checked_quorums))

    def signer(self, roster: Roster) -> Party:
        """The key holder."""
        return keyholder_party(roster, self.keyholder)

    def to_proto(self, signature: bytes) -> pb.Endorsement:
        """The wire form."""
        return pb.Endorsement(
            round=self.round,
            keyholder=self.keyholder,
            aggregate_digest=self.aggregate_digest,
            model_hash=self.model_hash,
            checked_quorums=list(self.checked_quorums),
            signature=signature,
        )

    @classmethod
    def from_proto(cls, deployment_id: str, msg: pb.Endorsement) -> Signed[EndorsementStatement]:
        """The signed statement an endorsement carries."""
        statement = cls(
            deployment_id,
            msg.round,
            msg.keyholder,
            msg.aggregate_digest,
            msg.model_hash,
            tuple(msg.checked_quorums),
        )
        return Signed(statement, msg.signature)
