"""Signatures a test makes in the name of any party: it plays the colluding ones.

A test holds every party's signing key (the deployment directory has them all), so it
can sign as a corrupt key holder (locks, endorsements), as the server (releases) or as
honest parties whose statements a server could replay. :class:`Signatures` is mixed into
:class:`~tests.adversarial.conftest.Attack`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import secagg
from secagg.proto import service_pb2 as pb
from secagg.protocol.roster import Roster
from secagg.protocol.statements import (
    CeremonyStatement,
    EndorsementStatement,
    LockStatement,
    ReleaseStatement,
    Signed,
)
from secagg.rpc.transport import identity


class Signatures:
    """Statements signed with a roster party's key (needs ``directory`` and ``roster``)."""

    directory: Path
    roster: Roster

    def signing_key(self, party: str | int) -> Ed25519PrivateKey:
        """A party's signing key: a name, or a key holder's index."""
        name = self.keyholder_name(party) if isinstance(party, int) else party
        return identity(self.directory, name).signing_key()

    def keyholder_name(self, index: int) -> str:
        """The roster name of key holder ``index``."""
        return next(k.name for k in self.roster.keyholders if k.index == index)

    def lock(self, keyholder: int, aggregate_digest: bytes, *, round_number: int = 1) -> pb.Lock:
        """Key holder ``keyholder``'s lock on an aggregate, signed by the test."""
        statement = LockStatement(
            self.roster.deployment_id, round_number, keyholder, aggregate_digest
        )
        return statement.to_proto(Signed.create(statement, self.signing_key(keyholder)).signature)

    def certificate(
        self,
        aggregate_digest: bytes,
        *,
        round_number: int = 1,
        signers: Iterable[int] | None = None,
    ) -> list[pb.Lock]:
        """Locks on an aggregate signed by ``signers`` (default: every key holder)."""
        indices = [k.index for k in self.roster.keyholders] if signers is None else signers
        return [self.lock(k, aggregate_digest, round_number=round_number) for k in indices]

    def endorsement(
        self,
        keyholder: int,
        aggregate_digest: bytes,
        model_hash: bytes,
        *,
        round_number: int = 1,
        checked_quorums: tuple[int, ...] = (1, 2),
    ) -> pb.Endorsement:
        """Key holder ``keyholder``'s endorsement of a model, signed by the test."""
        statement = EndorsementStatement(
            self.roster.deployment_id,
            round_number,
            keyholder,
            aggregate_digest,
            model_hash,
            checked_quorums,
        )
        return statement.to_proto(Signed.create(statement, self.signing_key(keyholder)).signature)

    def release(
        self,
        aggregate_digest: bytes,
        model_hash: bytes,
        *endorsements: pb.Endorsement,
        round_number: int = 1,
    ) -> pb.Release:
        """A release of a model, validly signed by the server (the test plays it)."""
        statement = ReleaseStatement(
            self.roster.deployment_id,
            round_number,
            model_hash,
            aggregate_digest,
            quorum=(1, 2),
            partial_digests=(bytes(32), bytes(32)),
            checked_quorums=(1, 2),
        )
        release = statement.to_proto(Signed.create(statement, self.signing_key("server")).signature)
        release.endorsements.extend(endorsements)
        return release


def key_bundle(directory: Path, roster: Roster, keys: secagg.KeySet) -> pb.PublicKeyBundle:
    """The joint key with every key holder's signed endorsement (as after a ceremony)."""
    key_id = keys.public_key.id_bytes
    endorsements = []
    for kh in roster.keyholders:
        statement = CeremonyStatement.of_body(
            roster.deployment_id, kind=pb.ENDORSEMENT, sender=kh.index, recipient=0, body=key_id
        )
        signed = Signed.create(statement, identity(directory, kh.name).signing_key())
        endorsements.append(statement.to_proto(key_id, signed.signature))
    return pb.PublicKeyBundle(public_key=keys.public_key.to_bytes(), endorsements=endorsements)
