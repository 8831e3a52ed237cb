"""Signed statements: one digest each, domain-separated, bound to their signer."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace

import pytest

from secagg.errors import MalformedStatement, SignatureInvalid, UnknownParty
from secagg.proto import service_pb2 as pb
from secagg.protocol.roster import Roster
from secagg.protocol.statements import (
    CeremonyStatement,
    CheckpointStatement,
    PartialStatement,
    RefusalStatement,
    ReleaseStatement,
    Signed,
    UploadStatement,
    WithdrawalStatement,
)
from secagg.rpc.transport import Identity

H = hashlib.sha256(b"x").digest()


def _upload(roster: Roster, client: str = "c1", **over: object) -> UploadStatement:
    fields: dict[str, object] = {
        "deployment_id": roster.deployment_id,
        "round": 1,
        "client_id": client,
        "nonce": bytes(16),
        "global_model_hash": H,
        "ciphertext_hash": hashlib.sha256(b"ct").digest(),
        "weight": 10,
        "epsilon": 1.5,
    }
    fields.update(over)
    return UploadStatement(**fields)  # type: ignore[arg-type]


def test_every_field_of_an_upload_is_signed(roster: Roster) -> None:
    base = _upload(roster)
    changes = {
        "deployment_id": "other",
        "round": 2,
        "client_id": "c2",
        "nonce": b"\x01" * 16,
        "global_model_hash": hashlib.sha256(b"y").digest(),
        "ciphertext_hash": H,
        "weight": 11,
        "epsilon": 1.25,
    }
    digests = {base.digest()}
    for name, value in changes.items():
        digests.add(replace(base, **{name: value}).digest())  # type: ignore[arg-type]
    assert len(digests) == len(changes) + 1


def test_statement_kinds_are_domain_separated(roster: Roster) -> None:
    dep = roster.deployment_id
    statements = [
        _upload(roster),
        WithdrawalStatement(dep, "c1", 1, "r"),
        CeremonyStatement(dep, 1, 1, 0, H),
        PartialStatement(dep, 1, 1, H, H),
        RefusalStatement(dep, 1, 1, "r"),
        ReleaseStatement(dep, 1, H, H, (1, 2), (H, H)),
        CheckpointStatement(dep, 1, H),
    ]
    assert len({s.digest() for s in statements}) == len(statements)
    assert len({type(s).DOMAIN for s in statements}) == len(statements)


def test_signed_upload_round_trips_through_the_wire_forms(
    roster: Roster, parties: dict[str, Identity]
) -> None:
    signed = Signed.create(_upload(roster), parties["c1"].signing_key())
    header = signed.statement.to_header(signed.signature, head=b"the ciphertext's head")
    assert header.head == b"the ciphertext's head"
    again = UploadStatement.from_header(
        roster.deployment_id, header, signed.statement.ciphertext_hash
    )
    assert again == signed and again.verify(roster) == signed.statement
    elsewhere = UploadStatement.from_header(roster.deployment_id, header, bytes(32))
    with pytest.raises(SignatureInvalid):  # another ciphertext than the one signed
        elsewhere.verify(roster)
    contribution = signed.statement.to_contribution(signed.signature)
    listed = UploadStatement.from_contribution(roster.deployment_id, 1, contribution)
    assert listed == signed


def test_a_statement_verifies_only_under_its_signers_key(
    roster: Roster, parties: dict[str, Identity]
) -> None:
    by_c2 = Signed.create(_upload(roster, "c1"), parties["c2"].signing_key())
    with pytest.raises(SignatureInvalid, match="invalid signature by c1"):
        by_c2.verify(roster)
    good = Signed.create(_upload(roster, "c1"), parties["c1"].signing_key())
    tampered = Signed(replace(good.statement, weight=11), good.signature)
    with pytest.raises(SignatureInvalid):
        tampered.verify(roster)
    stranger = Signed.create(_upload(roster, "mallory"), parties["c1"].signing_key())
    with pytest.raises(UnknownParty):
        stranger.verify(roster)


def test_release_and_checkpoint_are_the_servers(
    roster: Roster, parties: dict[str, Identity]
) -> None:
    release = ReleaseStatement(roster.deployment_id, 3, H, H, (1, 3), (H, H))
    signed = Signed.create(release, parties["server"].signing_key())
    wire = release.to_proto(signed.signature)
    assert ReleaseStatement.from_proto(roster.deployment_id, wire).verify(roster) == release
    forged = Signed.create(release, parties["kh1"].signing_key())
    with pytest.raises(SignatureInvalid, match="by server"):
        forged.verify(roster)
    checkpoint = CheckpointStatement(roster.deployment_id, 7, H)
    cosigned = Signed.create(checkpoint, parties["kh2"].signing_key())
    assert cosigned.verify_by(roster.keyholder(2)) == checkpoint
    with pytest.raises(SignatureInvalid):
        cosigned.verify_by(roster.keyholder(1))


def test_ceremony_message_binds_its_body(roster: Roster, parties: dict[str, Identity]) -> None:
    body = os.urandom(32)
    statement = CeremonyStatement.of_body(
        roster.deployment_id, kind=pb.SEED_COMMIT, sender=2, recipient=0, body=body
    )
    signed = Signed.create(statement, parties["kh2"].signing_key())
    msg = statement.to_proto(body, signed.signature)
    assert CeremonyStatement.from_proto(roster.deployment_id, msg).verify(roster) == statement
    msg.body = os.urandom(32)
    with pytest.raises(SignatureInvalid, match="key holder 2"):
        CeremonyStatement.from_proto(roster.deployment_id, msg).verify(roster)


@pytest.mark.parametrize(
    "field,value",
    [("nonce", bytes(15)), ("global_model_hash", b"short"), ("ciphertext_hash", b"")],
)
def test_malformed_upload_fields_are_refused(roster: Roster, field: str, value: bytes) -> None:
    with pytest.raises(MalformedStatement):
        _upload(roster, **{field: value})
