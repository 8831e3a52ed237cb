"""The server's ceremony relay: phase order, exact sizes, contributions against commitments.

The relay is not what keeps the key honest (the key holders check everything themselves,
tests/adversarial/test_ceremony_attacks.py); these are its defence-in-depth refusals,
and a refused message leaves the relay serving the honest ones.
"""

from __future__ import annotations

import hashlib

import pytest

from secagg.dkg import DkgParticipant, common_seed
from secagg.errors import CommitmentMismatch, PolicyViolation
from secagg.proto import service_pb2 as pb
from secagg.protocol import ceremony as codec
from secagg.protocol.audit_entries import CeremonyEntry, parse_entry
from secagg.protocol.audit_log import read_entries
from secagg.protocol.statements import CeremonyStatement, Signed
from server.ceremony import Ceremony

from ._epochs import exchange_key
from .conftest import Server, World


def _message(world: World, kind: int, sender: int, body: bytes) -> pb.CeremonyMessage:
    statement = CeremonyStatement.of_body(
        world.roster.deployment_id, kind=kind, sender=sender, recipient=0, body=body
    )
    return statement.to_proto(
        body, Signed.create(statement, world.keyholder_keys[sender]).signature
    )


def _post(ceremony: Ceremony, world: World, kind: int, bodies: dict[int, bytes]) -> None:
    for sender, body in bodies.items():
        ceremony.post(sender, _message(world, kind, sender, body))


def _up_to_commitments(world: World, ceremony: Ceremony) -> dict[int, bytes]:
    """Seeds and key commitments of every key holder posted; their contributions' bodies."""
    n, t = world.roster.policy.keyholders, world.roster.policy.threshold
    parties = {
        i: DkgParticipant(world.roster.params, index=i, keyholders=n, threshold=t)
        for i in range(1, n + 1)
    }
    with pytest.raises(PolicyViolation, match="previous ceremony phase"):
        _post(ceremony, world, pb.SEED_COMMIT, {1: parties[1].commitment()})  # no exchange keys
    _post(ceremony, world, pb.EXCHANGE_KEY, {i: exchange_key() for i in parties})
    _post(ceremony, world, pb.SEED_COMMIT, {i: p.commitment() for i, p in parties.items()})
    _post(ceremony, world, pb.SEED_REVEAL, {i: p.reveal() for i, p in parties.items()})
    seed = common_seed(
        {i: p.commitment() for i, p in parties.items()}, {i: p.reveal() for i, p in parties.items()}
    )
    bodies = {
        i: codec.encode_key_contribution(p.public_key_contribution(seed))
        for i, p in parties.items()
    }
    dep = world.roster.deployment_id
    commits = {}
    for i, p in parties.items():
        plains = {j: codec.encode_share(piece) for j, piece in p.outgoing_shares().items()}
        commits[i] = codec.encode_key_commit(dep, i, bodies[i], plains)
    with pytest.raises(PolicyViolation, match="previous ceremony phase"):
        _post(ceremony, world, pb.KEY_CONTRIBUTION, {1: bodies[1]})  # before every commitment
    _post(ceremony, world, pb.KEY_COMMIT, commits)
    return bodies


def test_contribution_not_matching_its_commitment_is_refused(server: Server) -> None:
    world, ceremony = server.world, server.manager.ceremony
    bodies = _up_to_commitments(world, ceremony)
    _post(ceremony, world, pb.KEY_CONTRIBUTION, {1: bodies[1]})
    with pytest.raises(CommitmentMismatch, match="key holder 3") as refused:
        _post(ceremony, world, pb.KEY_CONTRIBUTION, {3: bodies[2]})  # not what 3 committed to
    assert refused.value.culprits == (3,) and refused.value.reason == "COMMITMENT_MISMATCH"
    assert ceremony.count(pb.KEY_CONTRIBUTION) == 1
    _post(ceremony, world, pb.KEY_CONTRIBUTION, {2: bodies[2], 3: bodies[3]})  # still serving
    assert ceremony.joint_public_key() is not None
    assert server.info().round == 1


def test_bodies_of_the_wrong_size_and_early_phases_are_refused(server: Server) -> None:
    world, ceremony = server.world, server.manager.ceremony
    with pytest.raises(PolicyViolation, match="wrong size"):
        _post(ceremony, world, pb.KEY_COMMIT, {1: bytes(32)})  # n + 1 hashes expected
    with pytest.raises(PolicyViolation, match="wrong size"):
        _post(ceremony, world, pb.TEST_PARTIAL, {1: b"x"})
    bodies = _up_to_commitments(world, ceremony)
    _post(ceremony, world, pb.KEY_CONTRIBUTION, bodies)
    params, n = world.roster.params, world.roster.policy.keyholders
    probe = bytes(codec.probe_size(params, n))
    with pytest.raises(PolicyViolation, match="previous ceremony phase"):
        _post(ceremony, world, pb.TEST_CIPHERTEXT, {1: probe})  # before every transcript
    _post(ceremony, world, pb.TRANSCRIPT, {i: bytes(32) for i in range(1, n + 1)})
    with pytest.raises(PolicyViolation, match="previous ceremony phase"):
        _post(ceremony, world, pb.TEST_PARTIAL, {1: bytes(codec.probe_partials_size(params, n, 2))})
    _post(ceremony, world, pb.TEST_CIPHERTEXT, {1: probe})
    with pytest.raises(PolicyViolation, match="previous ceremony phase"):
        _post(ceremony, world, pb.ENDORSEMENT, {1: ceremony.joint_public_key().id_bytes})  # type: ignore[union-attr]


def test_shares_wait_for_every_transcript_and_key_commitments_are_logged_in_full(
    server: Server,
) -> None:
    world, ceremony = server.world, server.manager.ceremony
    bodies = _up_to_commitments(world, ceremony)
    _post(ceremony, world, pb.KEY_CONTRIBUTION, bodies)
    share = _message(world, pb.ENCRYPTED_SHARE, 1, b"sealed")
    share.recipient = 2
    with pytest.raises(PolicyViolation, match="previous ceremony phase"):
        ceremony.post(1, share)  # the transcript is what makes a failed share its sender's
    entries = [parse_entry(e.type, e.data) for e in read_entries(server.audit_path)]
    logged = [e for e in entries if isinstance(e, CeremonyEntry) and e.kind in _FULL]
    assert len(logged) == 2 * world.roster.policy.keyholders
    assert all(hashlib.sha256(e.body).digest() == e.body_sha256 for e in logged)


_FULL = ("EXCHANGE_KEY", "KEY_COMMIT")
