"""What the server signs: releases and audit-log checkpoints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from secagg.proto import service_pb2 as pb
from secagg.protocol.roster import Party, Roster
from secagg.protocol.statements.base import Signed, Statement


@dataclass(frozen=True)
class ReleaseStatement(Statement):
    """What the server signs when it releases a round's global model.

    ``quorum`` and ``partial_digests`` are the quorum whose model is released;
    ``checked_quorums`` is every quorum that decrypted the same aggregate to the same
    model before the release, flattened (``threshold`` indices each, see
    :func:`secagg.protocol.quorums.unflatten`): how far the release was cross-checked.
    """

    DOMAIN: ClassVar[bytes] = b"secagg/release/v1"

    deployment_id: str
    round: int
    model_hash: bytes
    aggregate_digest: bytes
    quorum: tuple[int, ...]
    partial_digests: tuple[bytes, ...]
    checked_quorums: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "quorum", tuple(int(i) for i in self.quorum))
        object.__setattr__(self, "partial_digests", tuple(self.partial_digests))
        object.__setattr__(self, "checked_quorums", tuple(int(i) for i in self.checked_quorums))

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
            checked_quorums=list(self.checked_quorums),
        )

    @classmethod
    def from_proto(cls, deployment_id: str, msg: pb.Release) -> Signed[ReleaseStatement]:
        """The signed statement a release carries."""
        quorum, digests = tuple(msg.quorum), tuple(msg.partial_digests)
        statement = cls(
            deployment_id,
            msg.round,
            msg.model_hash,
            msg.aggregate_digest,
            quorum,
            digests,
            tuple(msg.checked_quorums),
        )
        return Signed(statement, msg.server_signature)


@dataclass(frozen=True)
class CheckpointStatement(Statement):
    """An audit-log checkpoint: the log's tree size and Merkle root.

    ``head`` is the RFC 6962 Merkle tree hash of the first ``size`` entries
    (:mod:`secagg.protocol.merkle`); ``v2`` of the domain (``v1`` signed a hash chain's
    head). The server signs it; key holders co-sign the head a decryption task shows
    when it extends the last one they co-signed (use :meth:`Signed.verify_by` with the
    key holder's party), and keep it as witnesses (:mod:`clients.keyholder.witness`).
    """

    DOMAIN: ClassVar[bytes] = b"secagg/audit-checkpoint/v2"

    deployment_id: str
    size: int
    head: bytes

    def signer(self, roster: Roster) -> Party:
        """The server (key holders co-sign through :meth:`Signed.verify_by`)."""
        return roster.server
