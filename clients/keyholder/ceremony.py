"""The key holder's side of the dealerless key ceremony, relayed by the server.

Phases (every message signed by its sender as a
:class:`~secagg.protocol.statements.CeremonyStatement`, every received one verified
against the roster before it is used):

1. SEED_COMMIT, then SEED_REVEAL: the key holders agree on a common random seed;
2. KEY_COMMIT: each commits to its contribution ``b_i`` (which depends on the seed) and
   to the Shamir share it will send each key holder, and collects all ``n`` commitments
   before it reveals anything (it does not rely on the server's phase order);
3. KEY_CONTRIBUTION: each posts ``b_i``; everyone checks every ``b_i`` against its
   commitment and combines the joint public key;
4. ENCRYPTED_SHARE: each seals a Shamir share of its secret to every other key holder,
   bound to the route and the joint public key; the recipient checks it against the
   sender's commitment;
5. TEST_CIPHERTEXT, TEST_PARTIAL: the test decryption of :mod:`secagg.keycheck` (every
   row of every key holder's probe under every test subset);
6. ENDORSEMENT: only if every check passed, and once its own share is stored, each key
   holder signs the joint key's id.

Any failed check raises :class:`~secagg.errors.CeremonyAborted` (a child names the
check) with the key holders that may have deviated; nothing is endorsed.

Bodies are built and read with the codecs of :mod:`secagg.protocol.ceremony`.

Security
--------
The server only relays: it cannot forge a message (signatures), read a share (sealed to
the recipient's roster X25519 key) or move a share to another route or key (context).
A key holder cannot choose its ``b_i`` after seeing the others' (commitments), so no
one can steer the joint key to a secret it knows; a key holder sending shares that do
not fit its ``b_i`` fails the test decryption. What remains (no proofs of knowledge of
``s_i``, ``e_i``) is in :mod:`secagg.keycheck` and the threat model. The received shares
``f_i(j)`` are dropped once the partials are computed (Python cannot wipe them).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from clients.connection import Connection
from secagg import constants as C
from secagg.dkg import DkgParticipant, combine_public_key, common_seed
from secagg.errors import CeremonyAborted, CommitmentMismatch, InvalidKeyMaterial, ReplayDetected
from secagg.keycheck import check_probes, make_probe, probe_partials
from secagg.keys import JointPublicKey, KeyShare
from secagg.proto import service_pb2 as pb
from secagg.protocol import ceremony as codec
from secagg.protocol.roster import Roster
from secagg.protocol.sealing import open_sealed, seal_to
from secagg.protocol.statements import CeremonyStatement, Signed

log = logging.getLogger("secagg.keyholder")

X = TypeVar("X")
#: Residues (a contribution ``b_i`` or a share ``f_i(j)``), as :mod:`secagg.dkg` holds them.
U64 = npt.NDArray[np.uint64]


@dataclass(eq=False)
class CeremonyRelay:
    """Signed ceremony messages posted to and collected from the server.

    Messages go out as key holder ``index`` in key epoch ``epoch``, signed with
    ``signing_key``; received ones are verified against ``roster`` as messages of
    ``epoch`` (a message of another epoch is refused: no replay across ceremonies).
    """

    conn: Connection
    roster: Roster
    _: KW_ONLY
    index: int
    signing_key: Ed25519PrivateKey
    epoch: int = 1

    def post(self, kind: pb.CeremonyKind, body: bytes, recipient: int = 0) -> None:
        """Sign and post one message."""
        message = Signed.create(
            CeremonyStatement.of_body(
                self.roster.deployment_id,
                kind=kind,
                sender=self.index,
                recipient=recipient,
                body=body,
                epoch=self.epoch,
            ),
            self.signing_key,
        )
        self.conn.call(
            self.conn.stub.PostCeremonyMessage, message.statement.to_proto(body, message.signature)
        )

    def collect(self, kind: pb.CeremonyKind, count: int, stop: threading.Event) -> dict[int, bytes]:
        """Sender -> body of ``count`` messages of a kind, each verified against the roster.

        Shares addressed to other key holders are skipped. Raises ReplayDetected on a
        message of another epoch, SignatureInvalid or UnknownParty on a message that does
        not verify (as a message of this epoch), InterruptedError once ``stop`` is set.
        """
        query = pb.CeremonyQuery(kind=kind, epoch=self.epoch)
        while not stop.is_set():
            reply = self.conn.call(self.conn.stub.GetCeremonyMessages, query)
            bodies: dict[int, bytes] = {}
            for m in reply.messages:
                if kind == pb.ENCRYPTED_SHARE and m.recipient != self.index:
                    continue
                if m.epoch != self.epoch:
                    raise ReplayDetected(
                        f"a ceremony message of key epoch {m.epoch} relayed into epoch {self.epoch}"
                    )
                signed = CeremonyStatement.from_proto(
                    self.roster.deployment_id, m, epoch=self.epoch
                )
                signed.verify(self.roster)
                bodies[m.sender] = m.body
            if len(bodies) >= count:
                return bodies
            stop.wait(C.POLL_SECONDS)
        raise InterruptedError("stopped during the key ceremony")


def _decoded(bodies: dict[int, bytes], decode: Callable[[int, bytes], X]) -> dict[int, X]:
    """Every sender's body decoded; a body that does not decode aborts, naming its sender."""
    out = {}
    for sender, body in bodies.items():
        try:
            out[sender] = decode(sender, body)
        except InvalidKeyMaterial as exc:
            raise CeremonyAborted(str(exc), culprits=(sender,)) from None
    return out


def _checked_contributions(
    relay: CeremonyRelay, commits: dict[int, tuple[bytes, tuple[bytes, ...]]], stop: threading.Event
) -> dict[int, U64]:
    """Every ``b_i``, each checked against its sender's KEY_COMMIT."""
    roster = relay.roster
    bodies = relay.collect(pb.KEY_CONTRIBUTION, roster.policy.keyholders, stop)
    for sender, body in bodies.items():
        hashed = codec.contribution_hash(roster.deployment_id, sender, body, epoch=relay.epoch)
        if hashed != commits[sender][0]:
            raise CommitmentMismatch(
                f"key holder {relay.index}: the public-key contribution of key holder {sender} "
                "does not match its commitment",
                culprits=(sender,),
            )
    return _decoded(bodies, lambda _, body: codec.decode_key_contribution(body, roster.params))


def _exchange_shares(
    relay: CeremonyRelay,
    exchange_key: X25519PrivateKey,
    outgoing: dict[int, bytes],
    commits: dict[int, tuple[bytes, tuple[bytes, ...]]],
    public_key: JointPublicKey,
    stop: threading.Event,
) -> dict[int, U64]:
    """Seal ``outgoing`` share plaintexts to their recipients; open and check the received."""
    roster, index = relay.roster, relay.index

    def context(sender: int, recipient: int) -> bytes:
        return codec.share_context(
            roster.deployment_id, sender, recipient, public_key.id_bytes, epoch=relay.epoch
        )

    for j, plain in outgoing.items():
        if j == index:
            continue
        recipient_key = X25519PublicKey.from_public_bytes(roster.keyholder(j).exchange_public_key)
        sealed = seal_to(recipient_key, plain, context=context(index, j))
        relay.post(pb.ENCRYPTED_SHARE, codec.encode_sealed(*sealed), recipient=j)

    def opened(sender: int, body: bytes) -> U64:
        plain = open_sealed(
            exchange_key, *codec.decode_sealed(body), context=context(sender, index)
        )
        committed = commits[sender][1][index - 1]
        hashed = codec.share_hash(roster.deployment_id, sender, index, plain, epoch=relay.epoch)
        if hashed != committed:
            raise CommitmentMismatch(
                f"key holder {index}: the share from key holder {sender} does not match "
                "its commitment",
                culprits=(sender,),
            )
        return codec.decode_share(plain, roster.params, sender=sender)

    received = _decoded(relay.collect(pb.ENCRYPTED_SHARE, len(outgoing) - 1, stop), opened)
    received[index] = codec.decode_share(outgoing[index], roster.params, sender=index)
    return received


def _test_decryption(
    relay: CeremonyRelay,
    public_key: JointPublicKey,
    contributions: dict[int, U64],
    share: KeyShare,
    received: dict[int, U64],
    stop: threading.Event,
) -> None:
    """Post a probe and this key holder's partials of every probe; check them all."""
    params, n, t = public_key.params, share.keyholders, share.threshold
    probe, values = make_probe(public_key, contributions)
    relay.post(pb.TEST_CIPHERTEXT, codec.encode_probe(probe))
    probes = _decoded(
        relay.collect(pb.TEST_CIPHERTEXT, n, stop),
        lambda sender, body: codec.decode_probe(
            body, params, keyholders=n, public_key_id=public_key.id_bytes, sender=sender
        ),
    )
    relay.post(
        pb.TEST_PARTIAL, codec.encode_probe_partials(probe_partials(probes, share, received))
    )
    received.clear()  # the f_i(j) are not needed any more
    partials = _decoded(
        relay.collect(pb.TEST_PARTIAL, n, stop),
        lambda sender, body: codec.decode_probe_partials(
            body, params, keyholders=n, threshold=t, sender=sender
        ),
    )
    check_probes(relay.index, probes, values, partials, threshold=t)


def run_ceremony(
    relay: CeremonyRelay,
    exchange_key: X25519PrivateKey,
    *,
    keep: Callable[[KeyShare], None],
    stop: threading.Event,
) -> KeyShare:
    """Run the dealerless key generation; ``keep`` stores the share before the endorsement.

    Raises
    ------
    CeremonyAborted
        A contribution or share does not match its commitment, a message does not decode,
        or the test decryption failed; ``culprits`` names who may have deviated. Nothing
        was endorsed.
    """
    roster, index = relay.roster, relay.index
    params, policy = roster.params, roster.policy
    n = policy.keyholders
    me = DkgParticipant(params, index=index, keyholders=n, threshold=policy.threshold)
    relay.post(pb.SEED_COMMIT, me.commitment())
    seed_commits = relay.collect(pb.SEED_COMMIT, n, stop)
    relay.post(pb.SEED_REVEAL, me.reveal())
    seed = common_seed(seed_commits, relay.collect(pb.SEED_REVEAL, n, stop))
    contribution = codec.encode_key_contribution(me.public_key_contribution(seed))
    outgoing = {j: codec.encode_share(piece) for j, piece in me.outgoing_shares().items()}
    commitment = codec.encode_key_commit(
        roster.deployment_id, index, contribution, outgoing, epoch=relay.epoch
    )
    try:
        relay.post(pb.KEY_COMMIT, commitment)
        commits = _decoded(
            relay.collect(pb.KEY_COMMIT, n, stop), lambda _, b: codec.decode_key_commit(b, n)
        )
        relay.post(pb.KEY_CONTRIBUTION, contribution)  # only once every commitment is in
        contributions = _checked_contributions(relay, commits, stop)
        public_key = combine_public_key(
            params, seed, contributions, keyholders=n, threshold=policy.threshold
        )
        received = _exchange_shares(relay, exchange_key, outgoing, commits, public_key, stop)
        outgoing.clear()
        share = me.finalize(received, public_key)
        _test_decryption(relay, public_key, contributions, share, received, stop)
    except CeremonyAborted as exc:
        log.error("key holder %d: key ceremony of epoch %d aborted: %s", index, relay.epoch, exc)
        raise
    keep(share)
    relay.post(pb.ENDORSEMENT, public_key.id_bytes)
    log.info(
        "key holder %d: ceremony of epoch %d done, joint public key %s",
        index,
        relay.epoch,
        public_key.id[:16],
    )
    return share
