"""The key holder's side of the dealerless key ceremony, relayed by the server.

Phases (every message signed by its sender as a
:class:`~secagg.protocol.statements.CeremonyStatement`, every received one verified
against the roster before it is used):

1. SEED_COMMIT, then SEED_REVEAL: the key holders agree on a common random seed;
2. KEY_CONTRIBUTION: each posts ``b_i``; everyone combines the joint public key;
3. ENCRYPTED_SHARE: each seals a Shamir share of its secret to every other key holder,
   bound to the route and the joint public key;
4. ENDORSEMENT: once its own share is stored, each key holder signs the joint key's id.

Bodies are built and read with the codecs of :mod:`secagg.protocol.ceremony`.

Security
--------
The server only relays: it cannot forge a message (signatures), read a share (sealed to
the recipient's roster X25519 key) or move a share to another route or key (context).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from clients.connection import Connection
from secagg import constants as C
from secagg.dkg import DkgParticipant, combine_public_key, common_seed
from secagg.keys import KeyShare
from secagg.proto import service_pb2 as pb
from secagg.protocol import ceremony as codec
from secagg.protocol.roster import Roster
from secagg.protocol.sealing import open_sealed, seal_to
from secagg.protocol.statements import CeremonyStatement, Signed

log = logging.getLogger("secagg.keyholder")


@dataclass(eq=False)
class CeremonyRelay:
    """Signed ceremony messages posted to and collected from the server.

    Messages go out as key holder ``index``, signed with ``signing_key``; received ones
    are verified against ``roster``.
    """

    conn: Connection
    roster: Roster
    _: KW_ONLY
    index: int
    signing_key: Ed25519PrivateKey

    def post(self, kind: pb.CeremonyKind, body: bytes, recipient: int = 0) -> None:
        """Sign and post one message."""
        message = Signed.create(
            CeremonyStatement.of_body(
                self.roster.deployment_id,
                kind=kind,
                sender=self.index,
                recipient=recipient,
                body=body,
            ),
            self.signing_key,
        )
        self.conn.call(
            self.conn.stub.PostCeremonyMessage, message.statement.to_proto(body, message.signature)
        )

    def collect(self, kind: pb.CeremonyKind, count: int, stop: threading.Event) -> dict[int, bytes]:
        """Sender -> body of ``count`` messages of a kind, each verified against the roster.

        Shares addressed to other key holders are skipped. Raises SignatureInvalid or
        UnknownParty on a message that does not verify, InterruptedError once ``stop`` is set.
        """
        while not stop.is_set():
            reply = self.conn.call(self.conn.stub.GetCeremonyMessages, pb.CeremonyQuery(kind=kind))
            bodies: dict[int, bytes] = {}
            for m in reply.messages:
                if kind == pb.ENCRYPTED_SHARE and m.recipient != self.index:
                    continue
                CeremonyStatement.from_proto(self.roster.deployment_id, m).verify(self.roster)
                bodies[m.sender] = m.body
            if len(bodies) >= count:
                return bodies
            stop.wait(C.POLL_SECONDS)
        raise InterruptedError("stopped during the key ceremony")


def run_ceremony(
    relay: CeremonyRelay,
    exchange_key: X25519PrivateKey,
    *,
    keep: Callable[[KeyShare], None],
    stop: threading.Event,
) -> KeyShare:
    """Run the dealerless key generation; ``keep`` stores the share before the endorsement."""
    roster, index = relay.roster, relay.index
    params, policy = roster.params, roster.policy
    n = policy.keyholders
    me = DkgParticipant(params, index=index, keyholders=n, threshold=policy.threshold)
    relay.post(pb.SEED_COMMIT, me.commitment())
    commits = relay.collect(pb.SEED_COMMIT, n, stop)
    relay.post(pb.SEED_REVEAL, me.reveal())
    reveals = relay.collect(pb.SEED_REVEAL, n, stop)
    seed = common_seed(commits, reveals)
    relay.post(pb.KEY_CONTRIBUTION, codec.encode_key_contribution(me.public_key_contribution(seed)))
    contributions = {
        sender: codec.decode_key_contribution(body, params)
        for sender, body in relay.collect(pb.KEY_CONTRIBUTION, n, stop).items()
    }
    public_key = combine_public_key(
        params, seed, contributions, keyholders=n, threshold=policy.threshold
    )

    def context(sender: int, recipient: int) -> bytes:
        return codec.share_context(roster.deployment_id, sender, recipient, public_key.id_bytes)

    outgoing = me.outgoing_shares()
    for j, piece in outgoing.items():
        if j == index:
            continue
        recipient_key = X25519PublicKey.from_public_bytes(roster.keyholder(j).exchange_public_key)
        sealed = seal_to(recipient_key, codec.encode_share(piece), context=context(index, j))
        relay.post(pb.ENCRYPTED_SHARE, codec.encode_sealed(*sealed), recipient=j)
    received = {index: outgoing[index]}
    for sender, body in relay.collect(pb.ENCRYPTED_SHARE, n - 1, stop).items():
        ephemeral, nonce, ciphertext = codec.decode_sealed(body)
        plain = open_sealed(
            exchange_key, ephemeral, nonce, ciphertext, context=context(sender, index)
        )
        received[sender] = codec.decode_share(plain, params, sender=sender)
    share = me.finalize(received, public_key)
    keep(share)
    relay.post(pb.ENDORSEMENT, public_key.id_bytes)
    log.info("key holder %d: ceremony done, joint public key %s", index, public_key.id[:16])
    return share
