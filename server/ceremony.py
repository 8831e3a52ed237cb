"""The key ceremony as seen by the server: a relay that checks signatures and ordering.

The server stores and forwards ceremony messages; it cannot read sealed shares. It
computes the joint public key from the public contributions (anyone can) and publishes
it with every key holder's endorsement; clients check those endorsements themselves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from secagg.protocol.roster import Roster
from secagg.dkg import combine_public_key, common_seed
from secagg.errors import InvalidKeyMaterial, PolicyViolation
from secagg.keys import JointPublicKey
from secagg._internal.modarith import packed_size, unpack60
from secagg.proto import service_pb2 as pb
from secagg.protocol.signing import ceremony_digest, verify

from server.store import Database

_BODY_SIZE = {pb.SEED_COMMIT: 32, pb.SEED_REVEAL: 32, pb.ENDORSEMENT: 32}


class Ceremony:
    """Relay state of the key ceremony, persisted in the ``ceremony`` table."""

    def __init__(self, db: Database, roster: Roster, log: Callable[..., object]) -> None:
        self.log = log
        self.db = db
        self.roster = roster
        self.n = roster.policy.keyholders

    def _messages(self, kind: int, recipient: int | None = None) -> list[pb.CeremonyMessage]:
        sql = "SELECT kind, sender, recipient, body, signature FROM ceremony WHERE kind = ?"
        args: tuple[object, ...] = (kind,)
        if recipient is not None:
            sql += " AND recipient = ?"
            args = (kind, recipient)
        rows = self.db.query(sql + " ORDER BY sender", args)
        return [
            pb.CeremonyMessage(kind=k, sender=s, recipient=r, body=b, signature=sig)
            for k, s, r, b, sig in rows
        ]

    def count(self, kind: int) -> int:
        """Number of messages of a kind."""
        return len(self._messages(kind))

    def post(self, sender_index: int, msg: pb.CeremonyMessage) -> None:
        """Check and store one message; raises PolicyViolation / SignatureInvalid."""
        if msg.sender != sender_index:
            raise PolicyViolation("sender field does not match the authenticated key holder")
        kind = msg.kind
        if kind not in (
            pb.SEED_COMMIT,
            pb.SEED_REVEAL,
            pb.KEY_CONTRIBUTION,
            pb.ENCRYPTED_SHARE,
            pb.ENDORSEMENT,
        ):
            raise PolicyViolation("unknown ceremony message kind")
        if kind in _BODY_SIZE and len(msg.body) != _BODY_SIZE[kind]:
            raise PolicyViolation("ceremony message body has the wrong size")
        if kind == pb.ENCRYPTED_SHARE:
            if not 1 <= msg.recipient <= self.n or msg.recipient == msg.sender:
                raise PolicyViolation("share recipient must be another key holder")
            if len(msg.body) > 1024 * 1024:
                raise PolicyViolation("sealed share too large")
        elif msg.recipient != 0:
            raise PolicyViolation("only shares have a recipient")
        if kind == pb.KEY_CONTRIBUTION:
            params = self.roster.params
            size = packed_size(len(params.coeff_modulus) * params.poly_modulus_degree)
            if len(msg.body) != size:
                raise PolicyViolation("public-key contribution has the wrong size")
        order = [pb.SEED_COMMIT, pb.SEED_REVEAL, pb.KEY_CONTRIBUTION]
        if kind in order[1:] and self.count(order[order.index(kind) - 1]) < self.n:
            raise PolicyViolation("previous ceremony phase is not complete")
        if kind == pb.ENDORSEMENT:
            pk = self.joint_public_key()
            if pk is None or msg.body != pk.id_bytes:
                raise PolicyViolation("endorsement does not name the joint public key")
        verify(
            self.roster.keyholder(sender_index).signing_public_key,
            msg.signature,
            ceremony_digest(
                deployment_id=self.roster.deployment_id,
                kind=kind,
                sender=msg.sender,
                recipient=msg.recipient,
                body=msg.body,
            ),
            who=f"key holder {sender_index}",
        )
        with self.db.transaction() as tx:
            row = tx.execute(
                "SELECT body FROM ceremony WHERE kind=? AND sender=? AND recipient=?",
                (kind, msg.sender, msg.recipient),
            ).fetchone()
            if row is not None:
                if row[0] != msg.body:
                    raise PolicyViolation("a different message of this kind was already posted")
                return
            self.log(
                "ceremony",
                kind=pb.CeremonyKind.Name(kind),
                sender=msg.sender,
                recipient=msg.recipient,
                body_sha256=hashlib.sha256(msg.body).digest(),
                body=msg.body if len(msg.body) <= 32 else b"",
                signature=msg.signature,
            )
            tx.execute(
                "INSERT INTO ceremony VALUES (?, ?, ?, ?, ?)",
                (kind, msg.sender, msg.recipient, msg.body, msg.signature),
            )

    def messages(self, kind: int, recipient: int) -> list[pb.CeremonyMessage]:
        """Messages of a kind (shares only for ``recipient``)."""
        if kind == pb.ENCRYPTED_SHARE:
            return self._messages(kind, recipient)
        return self._messages(kind)

    def joint_public_key(self) -> JointPublicKey | None:
        """The joint public key once every contribution is in (else None)."""
        commits = {m.sender: m.body for m in self._messages(pb.SEED_COMMIT)}
        reveals = {m.sender: m.body for m in self._messages(pb.SEED_REVEAL)}
        contributions = self._messages(pb.KEY_CONTRIBUTION)
        if len(contributions) < self.n or len(reveals) < self.n:
            return None
        params = self.roster.params
        k, n = len(params.coeff_modulus), params.poly_modulus_degree
        try:
            seed = common_seed(commits, reveals)
            parts = {m.sender: unpack60(m.body, k * n).reshape(k, n) for m in contributions}
            return combine_public_key(
                params, seed, parts, keyholders=self.n, threshold=self.roster.policy.threshold
            )
        except (InvalidKeyMaterial, ValueError):
            return None

    def bundle(self) -> pb.PublicKeyBundle | None:
        """The public key with all ``n`` endorsements, or None while incomplete."""
        endorsements = self._messages(pb.ENDORSEMENT)
        pk = self.joint_public_key()
        if pk is None or len(endorsements) < self.n:
            return None
        return pb.PublicKeyBundle(public_key=pk.to_bytes(), endorsements=endorsements)
