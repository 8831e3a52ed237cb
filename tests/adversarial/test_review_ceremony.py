"""Review of the key ceremony (issue 11): culprit naming turned against honest key holders.

Key holders run the REAL ceremony (:func:`clients.keyholder.ceremony.run_ceremony`) over
mTLS against relay doubles. Aborting is fine (a malicious server can always stall the
ceremony); naming an honest key holder as the culprit is not.

* Kind confusion, the server alone. The relay answers the KEY_COMMIT query with key
  holder 2's genuine, validly signed SEED_COMMIT. :meth:`CeremonyRelay.collect` verifies
  the signature over the message's *own* kind, never that it is the kind it asked for,
  so the 32-byte body fails :func:`secagg.protocol.ceremony.decode_key_commit` and
  :func:`~clients.keyholder.ceremony._decoded` blames its signer: all three key holders
  name key holder 2.
* Equivocation, key holder 3 with the server. Key holder 3 signs two KEY_COMMITs and two
  KEY_CONTRIBUTIONs (``b_3`` and ``b_3 + 1``); the relay shows one to key holder 1, the
  other to key holder 2. Each checks ``b_3`` against the commitment it was shown: both
  pass, but they now hold different joint keys, so each one's share, sealed under its own
  key id, fails to open at the other, and :func:`_exchange_shares` names the *sender*:
  key holders 1 and 2 blame each other, key holder 3 is named by nobody.

Now: a key holder reads a relayed message only once its signature verified as the kind,
epoch and recipient it asked for (another kind aborts naming nobody), and before any
share is sealed the key holders compare TRANSCRIPT hashes of everything they used; views
that differ abort naming nobody (:class:`~secagg.errors.TranscriptMismatch`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import secagg
from secagg.dkg import DkgParticipant, combine_public_key
from secagg.errors import TranscriptMismatch
from secagg.proto import service_pb2 as pb
from secagg.protocol import ceremony as codec
from secagg.protocol.statements import CeremonyStatement, Signed
from secagg.rpc.transport import identity, peer_name

from ._ceremony_relay import CeremonyRelayDouble
from .test_ceremony_attacks import HONEST, ROGUE, N, T, World, _sealed_share, ceremony_world

FRAMED = 2


class KindConfusingRelay(CeremonyRelayDouble):
    """Serves key holder 2's SEED_COMMIT (a genuine signed message) as its KEY_COMMIT."""

    def GetCeremonyMessages(  # noqa: N802
        self, request: pb.CeremonyQuery, context: grpc.ServicerContext
    ) -> pb.CeremonyMessages:
        reply = super().GetCeremonyMessages(request, context)
        if request.kind != pb.KEY_COMMIT:
            return reply
        with self.changed:
            seed_commit = self.messages[pb.SEED_COMMIT, FRAMED, 0]
        kept = [m for m in reply.messages if m.sender != FRAMED]
        return pb.CeremonyMessages(messages=[*kept, seed_commit])


@pytest.fixture
def confused(tmp_path: Path) -> Iterator[World]:
    with ceremony_world(tmp_path, KindConfusingRelay) as made:
        yield made


def test_server_alone_cannot_get_an_honest_key_holder_named(confused: World) -> None:
    for index in range(1, N + 1):
        confused.start_honest(index)
    confused.join()
    assert confused.endorsers() == set()  # the relay stalled the ceremony: nothing endorsed
    blamed = {
        index: outcome.culprits
        for index, outcome in confused.outcomes.items()
        if isinstance(outcome, secagg.errors.CeremonyAborted) and outcome.culprits
    }
    assert blamed == {}, f"honest key holders named on the server's word alone: {blamed}"


# ------------------------------------------------------------------ equivocation
class EquivocatingRelay(CeremonyRelayDouble):
    """Serves key holder 2 the messages in ``shown_to_2`` instead of the stored ones."""

    def __init__(self, deployment_id: str) -> None:
        super().__init__(deployment_id)
        self.shown_to_2: dict[tuple[int, int], pb.CeremonyMessage] = {}

    def sign_for_2(self, key: Ed25519PrivateKey, kind: int, sender: int, body: bytes) -> None:
        """A second, validly signed message of ``kind`` by ``sender``, shown to key holder 2."""
        statement = CeremonyStatement.of_body(
            self.deployment_id, kind=kind, sender=sender, recipient=0, body=body
        )
        signature = Signed.create(statement, key).signature
        self.shown_to_2[kind, sender] = statement.to_proto(body, signature)

    def GetCeremonyMessages(  # noqa: N802
        self, request: pb.CeremonyQuery, context: grpc.ServicerContext
    ) -> pb.CeremonyMessages:
        reply = super().GetCeremonyMessages(request, context)
        if peer_name(context) != "kh2":
            return reply
        messages = [self.shown_to_2.get((m.kind, m.sender), m) for m in reply.messages]
        return pb.CeremonyMessages(messages=messages)


@pytest.fixture
def equivocation(tmp_path: Path) -> Iterator[World]:
    with ceremony_world(tmp_path, EquivocatingRelay) as made:
        yield made


def _equivocate(world: World, relay: EquivocatingRelay) -> None:
    """Key holder 3 commits to and reveals ``b_3`` to key holder 1, ``b_3 + 1`` to 2."""
    params, dep = world.roster.params, world.roster.deployment_id
    key = identity(world.directory, f"kh{ROGUE}").signing_key()
    me = DkgParticipant(params, index=ROGUE, keyholders=N, threshold=T)
    seed = world.rogue_seed(me)
    b3 = me.public_key_contribution(seed)
    other = b3.copy()
    other[0, 0] = (other[0, 0] + np.uint64(1)) % np.uint64(params.coeff_modulus[0])
    outgoing = me.outgoing_shares()
    plains = {j: codec.encode_share(outgoing[j]) for j in outgoing}
    bodies = {}
    # key holder 2's view is in place before key holder 1's is posted: otherwise key holder
    # 2 may fetch both commitments and abort at once (also right, but not this test's case)
    for view, b in ((2, other), (1, b3)):
        bodies[view] = codec.encode_key_contribution(b)
        commit = codec.encode_key_commit(dep, ROGUE, bodies[view], plains)
        if view == 1:
            world.post(pb.KEY_COMMIT, commit)
        else:
            relay.sign_for_2(key, pb.KEY_COMMIT, ROGUE, commit)
    relay.sign_for_2(key, pb.KEY_CONTRIBUTION, ROGUE, bodies[2])
    world.post(pb.KEY_CONTRIBUTION, bodies[1])
    honest = world.relay.wait(pb.KEY_CONTRIBUTION, N)
    parts = {i: codec.decode_key_contribution(honest[i], params) for i in HONEST}
    transcript = world.transcript()  # of key holder 1's view (what the relay stores)
    world.post(pb.TRANSCRIPT, transcript)
    for view, b in ((1, b3), (2, other)):  # its own shares open under each view's key
        pk = combine_public_key(params, seed, {**parts, ROGUE: b}, keyholders=N, threshold=T)
        sealed = _sealed_share(world, outgoing[view], view, pk.id_bytes, transcript)
        world.post(pb.ENCRYPTED_SHARE, sealed, view)


def test_an_equivocating_key_holder_is_not_hidden_behind_honest_culprits(
    equivocation: World,
) -> None:
    relay = equivocation.relay
    assert isinstance(relay, EquivocatingRelay)
    for index in HONEST:
        equivocation.start_honest(index)
    _equivocate(equivocation, relay)
    equivocation.join()
    assert equivocation.endorsers() == set()
    named = {index: getattr(equivocation.outcomes[index], "culprits", None) for index in HONEST}
    for culprits in named.values():
        assert culprits is not None, equivocation.outcomes
        assert set(culprits) <= {ROGUE}, f"honest key holders blamed: {named}"
    for index in HONEST:  # caught by comparing transcripts, before any share was sealed
        assert isinstance(equivocation.outcomes[index], TranscriptMismatch), equivocation.outcomes
    assert relay.bodies(pb.ENCRYPTED_SHARE).keys() <= {ROGUE}
