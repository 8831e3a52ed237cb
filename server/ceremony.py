"""The key ceremony as seen by the server: a relay that checks signatures and ordering.

The server stores and forwards ceremony messages; it cannot read sealed shares. It
computes the joint public key from the public contributions (anyone can) and publishes
it with every key holder's endorsement; clients check those endorsements themselves.
Bodies are checked with the codecs of :mod:`secagg.protocol.ceremony` (exact sizes),
signatures with :class:`~secagg.protocol.statements.CeremonyStatement`. Phases go in
order: EXCHANGE_KEY, SEED_COMMIT, SEED_REVEAL, KEY_COMMIT, KEY_CONTRIBUTION, TRANSCRIPT,
TEST_CIPHERTEXT, TEST_PARTIAL, ENDORSEMENT; each needs all ``n`` messages of the one
before, and ENCRYPTED_SHARE needs every TRANSCRIPT.

The audit log keeps every message's signature and body hash, and the whole body of the
short ones and of EXCHANGE_KEY, KEY_COMMIT and TRANSCRIPT (:data:`_LOGGED_KINDS`): an
auditor checks each contribution against its logged commitment.

Key epochs: the ceremony of epoch ``e`` produces key ``K_e``. Epoch 1 is open from the
start; :meth:`Ceremony.open_next` (``secagg admin rotate-key``, or the budget rule of
:mod:`server.epochs`) opens the next. Only the open epoch takes messages, and each
message's signature binds its epoch (:class:`~secagg.protocol.statements.CeremonyStatement`),
so a message of one epoch cannot be replayed into another.

Security
--------
Defence in depth only: a KEY_CONTRIBUTION that does not match its sender's KEY_COMMIT
is refused here (:class:`~secagg.errors.CommitmentMismatch`), but the key holders check
the commitments, the shares and the test decryption themselves
(:mod:`clients.keyholder.ceremony`) and never rely on this relay's order or checks.
"""

from __future__ import annotations

from secagg.dkg import combine_public_key, common_seed
from secagg.errors import CommitmentMismatch, InvalidKeyMaterial, PolicyViolation
from secagg.keys import JointPublicKey
from secagg.proto import service_pb2 as pb
from secagg.protocol.audit_entries import CeremonyEntry
from secagg.protocol.ceremony import (
    MAX_SEALED_SHARE_BYTES,
    body_size,
    contribution_hash,
    decode_key_commit,
    decode_key_contribution,
)
from secagg.protocol.roster import Roster
from secagg.protocol.statements import CeremonyStatement
from server.audit_trail import AuditTrail
from server.store import Store
from server.store.base import KeyEpoch

_ORDER = (
    pb.EXCHANGE_KEY,
    pb.SEED_COMMIT,
    pb.SEED_REVEAL,
    pb.KEY_COMMIT,
    pb.KEY_CONTRIBUTION,
    pb.TRANSCRIPT,
    pb.TEST_CIPHERTEXT,
    pb.TEST_PARTIAL,
    pb.ENDORSEMENT,
)
_KINDS = (*_ORDER, pb.ENCRYPTED_SHARE)
#: Bodies up to this size are copied into the audit entry (commitments, seeds, endorsements).
_LOGGED_BODY_BYTES = 32
#: Kinds whose bodies are copied into the audit entry whatever their size.
_LOGGED_KINDS = (pb.EXCHANGE_KEY, pb.KEY_COMMIT, pb.TRANSCRIPT)


def _logged(kind: int, body: bytes) -> bool:
    """Whether a message's body goes into its audit entry (else only its hash)."""
    return kind in _LOGGED_KINDS or len(body) <= _LOGGED_BODY_BYTES


class Ceremony:
    """Relay state of the key ceremony, persisted in the store."""

    def __init__(self, store: Store, roster: Roster, audit: AuditTrail) -> None:
        self.store = store
        self.roster = roster
        self.audit = audit
        self.n = roster.policy.keyholders
        self._public_keys: dict[int, JointPublicKey] = {}

    def open_epoch(self) -> int:
        """The key epoch whose ceremony takes messages (the latest one opened; 1 at first)."""
        return max((e.epoch for e in self.store.key_epochs()), default=1)

    def open_next(self) -> int:
        """Open the ceremony of the next key epoch; returns its number.

        An epoch whose ceremony did not complete (say, it aborted) is abandoned: its key
        is never used. Rounds keep their key until the new one is endorsed by every key
        holder (:mod:`server.epochs`).
        """
        epoch = self.open_epoch() + 1
        self.store.put_key_epoch(KeyEpoch(epoch))
        return epoch

    def count(self, kind: int, epoch: int = 1) -> int:
        """Number of messages of a kind in an epoch."""
        return len(self.store.ceremony_messages(kind, epoch=epoch))

    def _check_shape(self, msg: pb.CeremonyMessage) -> None:
        kind = msg.kind
        if kind not in _KINDS:
            raise PolicyViolation("unknown ceremony message kind")
        policy = self.roster.policy
        size = body_size(kind, self.roster.params, policy.keyholders, policy.threshold)
        if size is not None and len(msg.body) != size:
            raise PolicyViolation("ceremony message body has the wrong size")
        if kind == pb.ENCRYPTED_SHARE:
            if not 1 <= msg.recipient <= self.n or msg.recipient == msg.sender:
                raise PolicyViolation("share recipient must be another key holder")
            if len(msg.body) > MAX_SEALED_SHARE_BYTES:
                raise PolicyViolation("sealed share too large")
        elif msg.recipient != 0:
            raise PolicyViolation("only shares have a recipient")

    def _check_commitment(self, msg: pb.CeremonyMessage) -> None:
        """A contribution must match its sender's KEY_COMMIT (raises CommitmentMismatch)."""
        epoch = msg.epoch
        commits = {
            m.sender: m.body for m in self.store.ceremony_messages(pb.KEY_COMMIT, epoch=epoch)
        }
        committed, _ = decode_key_commit(commits[msg.sender], self.n)
        hashed = contribution_hash(self.roster.deployment_id, msg.sender, msg.body, epoch=epoch)
        if hashed != committed:
            raise CommitmentMismatch(
                "public-key contribution does not match its commitment", culprits=(msg.sender,)
            )

    def post(self, sender_index: int, msg: pb.CeremonyMessage) -> None:
        """Check and store a message of the open epoch; raises PolicyViolation, SignatureInvalid."""
        if msg.sender != sender_index:
            raise PolicyViolation("sender field does not match the authenticated key holder")
        epoch = msg.epoch
        if epoch != self.open_epoch():
            raise PolicyViolation(
                f"the open key ceremony is epoch {self.open_epoch()}, not epoch {epoch}"
            )
        self._check_shape(msg)
        kind = msg.kind
        before = _ORDER[_ORDER.index(kind) - 1] if kind in _ORDER[1:] else None
        if kind == pb.ENCRYPTED_SHARE:
            before = pb.TRANSCRIPT
        if before is not None and self.count(before, epoch) < self.n:
            raise PolicyViolation("previous ceremony phase is not complete")
        if kind == pb.KEY_CONTRIBUTION:
            self._check_commitment(msg)
        if kind == pb.ENDORSEMENT:
            pk = self.joint_public_key(epoch)
            if pk is None or msg.body != pk.id_bytes:
                raise PolicyViolation("endorsement does not name the joint public key")
        signed = CeremonyStatement.from_proto(self.roster.deployment_id, msg)
        statement = signed.verify(self.roster)
        with self.store.transaction():
            known = self.store.ceremony_messages(kind, msg.recipient, epoch=epoch)
            same = [m for m in known if m.sender == msg.sender]
            if same:
                if same[0].body != msg.body:
                    raise PolicyViolation("a different message of this kind was already posted")
                return
            self.audit.record(
                CeremonyEntry(
                    kind=pb.CeremonyKind.Name(kind),
                    sender=msg.sender,
                    recipient=msg.recipient,
                    body_sha256=statement.body_sha256,
                    body=msg.body if _logged(kind, msg.body) else b"",
                    signature=msg.signature,
                    epoch=epoch,
                )
            )
            self.store.add_ceremony_message(msg)

    def messages(self, kind: int, recipient: int, epoch: int) -> list[pb.CeremonyMessage]:
        """Messages of a kind in an epoch (shares only for ``recipient``)."""
        if kind == pb.ENCRYPTED_SHARE:
            return self.store.ceremony_messages(kind, recipient, epoch=epoch)
        return self.store.ceremony_messages(kind, epoch=epoch)

    def joint_public_key(self, epoch: int = 1) -> JointPublicKey | None:
        """An epoch's joint public key once every contribution is in (else None); cached."""
        if epoch in self._public_keys:
            return self._public_keys[epoch]
        stored = self.store.ceremony_messages
        commits = {m.sender: m.body for m in stored(pb.SEED_COMMIT, epoch=epoch)}
        reveals = {m.sender: m.body for m in stored(pb.SEED_REVEAL, epoch=epoch)}
        contributions = stored(pb.KEY_CONTRIBUTION, epoch=epoch)
        if len(contributions) < self.n or len(reveals) < self.n:
            return None
        params = self.roster.params
        try:
            seed = common_seed(commits, reveals)
            parts = {m.sender: decode_key_contribution(m.body, params) for m in contributions}
            key = combine_public_key(
                params, seed, parts, keyholders=self.n, threshold=self.roster.policy.threshold
            )
        except (InvalidKeyMaterial, ValueError):
            return None
        self._public_keys[epoch] = key
        return key

    def bundle(self, epoch: int = 1) -> pb.PublicKeyBundle | None:
        """An epoch's public key with all ``n`` endorsements, or None while incomplete."""
        endorsements = self.store.ceremony_messages(pb.ENDORSEMENT, epoch=epoch)
        pk = self.joint_public_key(epoch)
        if pk is None or len(endorsements) < self.n:
            return None
        return pb.PublicKeyBundle(public_key=pk.to_bytes(), endorsements=endorsements)
