"""A key ceremony of a later key epoch, played in-process by honest key holders.

Each key holder runs the real DKG arithmetic (:class:`~secagg.dkg.DkgParticipant`) and
signs its messages with its roster key for ``epoch``; the messages go through the
server's relay (:meth:`server.rounds.RoundManager.post_ceremony_message`). The test
ciphertexts and their partials are placeholders of the right size (the relay checks
sizes only; the key holders' test decryption is tested with the agent).
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

import secagg
from secagg.dkg import DkgParticipant, combine_public_key, common_seed
from secagg.proto import service_pb2 as pb
from secagg.protocol import ceremony as codec
from secagg.protocol.statements import CeremonyStatement, Signed

from .conftest import Server


def ceremony_message(
    server: Server, kind: int, sender: int, body: bytes, *, epoch: int, recipient: int = 0
) -> pb.CeremonyMessage:
    """A message of ``epoch`` signed by key holder ``sender``."""
    statement = CeremonyStatement.of_body(
        server.world.roster.deployment_id,
        kind=kind,
        sender=sender,
        recipient=recipient,
        body=body,
        epoch=epoch,
    )
    key = server.world.keyholder_keys[sender]
    return statement.to_proto(body, Signed.create(statement, key).signature)


def exchange_key() -> bytes:
    """An EXCHANGE_KEY body: a fresh X25519 public key."""
    return codec.encode_exchange_key(X25519PrivateKey.generate().public_key())


def run_ceremony(server: Server, epoch: int) -> secagg.KeySet:
    """Every key holder takes part in the ceremony of ``epoch``; the key set it produced."""
    roster, manager = server.world.roster, server.manager
    n, t, params = roster.policy.keyholders, roster.policy.threshold, roster.params
    dep = roster.deployment_id
    parties = {
        i: DkgParticipant(params, index=i, keyholders=n, threshold=t) for i in range(1, n + 1)
    }

    posted: dict[int, dict[int, bytes]] = {}

    def post(kind: int, bodies: dict[int, bytes]) -> None:
        posted[kind] = {i: hashlib.sha256(b).digest() for i, b in bodies.items()}
        for sender, body in bodies.items():
            msg = ceremony_message(server, kind, sender, body, epoch=epoch)
            manager.post_ceremony_message(sender, msg)

    commits = {i: p.commitment() for i, p in parties.items()}
    reveals = {i: p.reveal() for i, p in parties.items()}
    post(pb.EXCHANGE_KEY, {i: exchange_key() for i in parties})
    post(pb.SEED_COMMIT, commits)
    post(pb.SEED_REVEAL, reveals)
    seed = common_seed(commits, reveals)
    contributions = {i: p.public_key_contribution(seed) for i, p in parties.items()}
    bodies = {i: codec.encode_key_contribution(b) for i, b in contributions.items()}
    outgoing = {i: p.outgoing_shares() for i, p in parties.items()}
    post(
        pb.KEY_COMMIT,
        {
            i: codec.encode_key_commit(
                dep,
                i,
                bodies[i],
                {j: codec.encode_share(s) for j, s in outgoing[i].items()},
                epoch=epoch,
            )
            for i in parties
        },
    )
    post(pb.KEY_CONTRIBUTION, bodies)
    transcript = codec.transcript_hash(dep, epoch=epoch, digests=posted)
    post(pb.TRANSCRIPT, {i: transcript for i in parties})
    public_key = combine_public_key(params, seed, contributions, keyholders=n, threshold=t)
    shares = tuple(
        parties[j].finalize({i: outgoing[i][j] for i in parties}, public_key) for j in parties
    )
    post(pb.TEST_CIPHERTEXT, {i: bytes(codec.probe_size(params, n)) for i in parties})
    post(pb.TEST_PARTIAL, {i: bytes(codec.probe_partials_size(params, n, t)) for i in parties})
    post(pb.ENDORSEMENT, {i: public_key.id_bytes for i in parties})
    return secagg.KeySet(public_key, shares)
