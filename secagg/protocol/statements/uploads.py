"""What clients sign: uploads and withdrawals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from secagg import constants as C
from secagg.proto import service_pb2 as pb
from secagg.protocol.roster import Party, Roster
from secagg.protocol.statements.base import Signed, Statement, client_party, require


@dataclass(frozen=True)
class UploadStatement(Statement):
    """What a client signs for an upload, with the ε it has spent so far and whether its
    update was trained with differential privacy (``dp``).

    Security
    --------
    The signature binds the round, the global model the client trained from, the
    ciphertext (by hash), the weight, ε and the DP marker: the server cannot move an
    upload to another round, model or weight, nor turn a non-DP upload into a DP one.
    Whether the upload is acceptable is the policy's question
    (:mod:`secagg.protocol.policy`). ``dp`` and ``epsilon`` are the client's claims: a
    dishonest client can sign ``dp=True`` over an update trained without noise; nobody
    downstream can tell (no proof of training).
    """

    DOMAIN: ClassVar[bytes] = b"secagg/upload/v2"  # v2: the dp marker is signed

    deployment_id: str
    round: int
    client_id: str
    nonce: bytes
    global_model_hash: bytes
    ciphertext_hash: bytes
    weight: int
    epsilon: float = 0.0
    dp: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "epsilon", float(self.epsilon))  # always signed as f64
        object.__setattr__(self, "dp", bool(self.dp))  # always signed as 0 or 1
        require(
            len(self.nonce) == C.UPLOAD_NONCE_BYTES, f"nonce must be {C.UPLOAD_NONCE_BYTES} bytes"
        )
        require(len(self.global_model_hash) == C.DIGEST_BYTES, "global model hash must be 32 bytes")
        require(len(self.ciphertext_hash) == C.DIGEST_BYTES, "ciphertext hash must be 32 bytes")

    def signer(self, roster: Roster) -> Party:
        """The client."""
        return client_party(roster, self.client_id)

    def _wire(self, signature: bytes) -> dict[str, Any]:
        """Fields the upload header and the task's contribution share."""
        return {
            "client_id": self.client_id,
            "nonce": self.nonce,
            "global_model_hash": self.global_model_hash,
            "weight": self.weight,
            "signature": signature,
            "epsilon": self.epsilon,
            "dp": self.dp,
        }

    def to_header(self, signature: bytes, *, head: bytes) -> pb.UploadHeader:
        """The header that opens an upload stream; ``head`` is the ciphertext's head
        (:class:`secagg.chunked.VectorHead` bytes), whose digest is ``ciphertext_hash``."""
        return pb.UploadHeader(round=self.round, head=head, **self._wire(signature))

    def to_contribution(self, signature: bytes) -> pb.Contribution:
        """The form a decryption task lists it in."""
        return pb.Contribution(ciphertext_hash=self.ciphertext_hash, **self._wire(signature))

    @classmethod
    def _signed(
        cls,
        deployment_id: str,
        round_number: int,
        msg: pb.UploadHeader | pb.Contribution,
        ciphertext_hash: bytes,
    ) -> Signed[UploadStatement]:
        statement = cls(
            deployment_id=deployment_id,
            round=round_number,
            client_id=msg.client_id,
            nonce=msg.nonce,
            global_model_hash=msg.global_model_hash,
            ciphertext_hash=ciphertext_hash,
            weight=msg.weight,
            epsilon=msg.epsilon,
            dp=msg.dp,
        )
        return Signed(statement, msg.signature)

    @classmethod
    def from_header(
        cls, deployment_id: str, header: pb.UploadHeader, ciphertext_hash: bytes
    ) -> Signed[UploadStatement]:
        """The signed statement an upload header carries (raises MalformedStatement).

        ``ciphertext_hash`` is the digest of the header's ``head``, parsed and checked by
        the caller (:meth:`secagg.chunked.VectorHead.from_bytes`).
        """
        return cls._signed(deployment_id, header.round, header, ciphertext_hash)

    @classmethod
    def from_contribution(
        cls, deployment_id: str, round_number: int, c: pb.Contribution
    ) -> Signed[UploadStatement]:
        """The signed statement a task's contribution carries (raises MalformedStatement)."""
        return cls._signed(deployment_id, round_number, c, c.ciphertext_hash)


@dataclass(frozen=True)
class WithdrawalStatement(Statement):
    """What a client signs when it leaves the federation (from ``round`` on)."""

    DOMAIN: ClassVar[bytes] = b"secagg/withdraw/v1"

    deployment_id: str
    client_id: str
    round: int
    reason: str

    def signer(self, roster: Roster) -> Party:
        """The client."""
        return client_party(roster, self.client_id)

    def to_proto(self, signature: bytes) -> pb.Withdrawal:
        """The wire form."""
        return pb.Withdrawal(
            client_id=self.client_id, round=self.round, reason=self.reason, signature=signature
        )

    @classmethod
    def from_proto(cls, deployment_id: str, msg: pb.Withdrawal) -> Signed[WithdrawalStatement]:
        """The signed statement a withdrawal message carries."""
        return Signed(cls(deployment_id, msg.client_id, msg.round, msg.reason), msg.signature)
