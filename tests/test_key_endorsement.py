"""Clients encrypt only under a joint public key that every key holder endorsed."""

from __future__ import annotations

from pathlib import Path

import pytest

import secagg
from clients.client import verify_public_key_bundle
from secagg.errors import UnknownParty
from secagg.proto import service_pb2 as pb
from secagg.protocol.deployment import init_deployment
from secagg.protocol.roster import Roster
from secagg.protocol.statements import CeremonyStatement, Signed
from secagg.rpc.transport import identity


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Roster, secagg.KeySet]:
    dep = tmp_path_factory.mktemp("dep")
    roster = init_deployment(dep, clients=2, keyholders=3, threshold=2)
    keys = secagg.dealerless_keygen(n=3, t=2, params=roster.params)
    return dep, roster, keys


def _endorsement(dep: Path, roster: Roster, index: int, body: bytes) -> pb.CeremonyMessage:
    signing_key = identity(dep, f"kh{index}").signing_key()
    endorsement = Signed.create(
        CeremonyStatement.of_body(
            roster.deployment_id, kind=pb.ENDORSEMENT, sender=index, recipient=0, body=body
        ),
        signing_key,
    )
    return endorsement.statement.to_proto(body, endorsement.signature)


def _bundle(
    dep: Path, roster: Roster, key: secagg.JointPublicKey, signers: list[int]
) -> pb.PublicKeyBundle:
    return pb.PublicKeyBundle(
        public_key=key.to_bytes(),
        endorsements=[_endorsement(dep, roster, i, key.id_bytes) for i in signers],
    )


def test_fully_endorsed_key_is_accepted(world: tuple[Path, Roster, secagg.KeySet]) -> None:
    dep, roster, keys = world
    key = verify_public_key_bundle(_bundle(dep, roster, keys.public_key, [1, 2, 3]), roster)
    assert key.id_bytes == keys.public_key.id_bytes


def test_missing_endorsement_is_refused(world: tuple[Path, Roster, secagg.KeySet]) -> None:
    dep, roster, keys = world
    with pytest.raises(secagg.InvalidKeyMaterial, match="not endorsed by every key holder"):
        verify_public_key_bundle(_bundle(dep, roster, keys.public_key, [1, 2]), roster)


def test_substituted_key_is_refused(world: tuple[Path, Roster, secagg.KeySet]) -> None:
    dep, roster, keys = world
    server_key = secagg.dealerless_keygen(n=3, t=2, params=roster.params).public_key
    bundle = _bundle(dep, roster, keys.public_key, [1, 2, 3])
    bundle.public_key = server_key.to_bytes()  # endorsements name the real key
    with pytest.raises(secagg.InvalidKeyMaterial):
        verify_public_key_bundle(bundle, roster)


def test_forged_endorsement_is_refused(world: tuple[Path, Roster, secagg.KeySet]) -> None:
    dep, roster, keys = world
    bundle = _bundle(dep, roster, keys.public_key, [1, 2, 3])
    forged = bundle.endorsements[2]
    forged.signature = bundle.endorsements[0].signature  # kh1's signature claimed as kh3's
    with pytest.raises(secagg.errors.SignatureInvalid):
        verify_public_key_bundle(bundle, roster)


def test_key_with_other_threshold_is_refused(world: tuple[Path, Roster, secagg.KeySet]) -> None:
    dep, roster, _ = world
    other = secagg.dealerless_keygen(n=3, t=3, params=roster.params).public_key
    with pytest.raises(secagg.InvalidKeyMaterial, match="threshold"):
        verify_public_key_bundle(_bundle(dep, roster, other, [1, 2, 3]), roster)


def test_endorsement_by_unknown_keyholder_is_refused(
    world: tuple[Path, Roster, secagg.KeySet],
) -> None:
    dep, roster, keys = world
    bundle = _bundle(dep, roster, keys.public_key, [1, 2, 3])
    bundle.endorsements[2].sender = 9  # no key holder 9 in the roster
    with pytest.raises(UnknownParty, match="no key holder with index 9"):
        verify_public_key_bundle(bundle, roster)
