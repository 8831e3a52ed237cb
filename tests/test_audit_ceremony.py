"""``secagg audit verify`` on key-ceremony entries: commitments and endorsements per epoch.

The server logs every KEY_COMMIT body in full and every contribution's SHA-256; the
commitment ``H(b_i)`` is over that SHA-256, so the verifier holds each logged
contribution to its sender's logged commitment. A joint public key must be endorsed by
every key holder in one key epoch, later than the previous key's: endorsements of
different epochs do not add up, and an old epoch's endorsements do not vouch twice.
Every logged TRANSCRIPT must hash the logged messages it covers.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from secagg.proto import service_pb2 as pb
from secagg.protocol import ceremony as codec
from secagg.protocol.audit_entries import CeremonyEntry, PublicKeyEntry
from secagg.protocol.audit_verify import Report
from secagg.protocol.audit_verify.context import At, Verification
from secagg.protocol.audit_verify.deployment import check_ceremony, check_public_key
from secagg.protocol.deployment import init_deployment
from secagg.protocol.layout import DeploymentLayout
from secagg.protocol.statements import CeremonyStatement, Signed
from secagg.rpc.transport import identity

N = 3


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("audit-ceremony") / "deployment"
    init_deployment(directory, clients=2, keyholders=N, threshold=2, model_length=4)
    return directory


class Log:
    """Ceremony entries signed by the real key holders' keys, checked one by one."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.roster = identity(directory, "server").roster
        self.report = Report()
        self.v = Verification(DeploymentLayout(directory), self.roster, [], self.report)
        self.seq = 0

    def at(self, type_: str) -> At:
        self.seq += 1
        return At(self.seq, type_)

    def ceremony(self, kind: int, sender: int, body: bytes, *, epoch: int = 1) -> None:
        """Log a message of ``kind`` (the body kept as the server keeps it)."""
        statement = CeremonyStatement.of_body(
            self.roster.deployment_id, kind=kind, sender=sender, recipient=0, body=body, epoch=epoch
        )
        key = identity(self.directory, f"kh{sender}").signing_key()
        signature = Signed.create(statement, key).signature
        kept = body if kind in (pb.KEY_COMMIT, pb.ENDORSEMENT, pb.TRANSCRIPT) else b""
        name = pb.CeremonyKind.Name(kind)
        entry = CeremonyEntry(name, sender, 0, statement.body_sha256, kept, signature, epoch)
        check_ceremony(self.v, self.at("ceremony"), entry)

    def commit_and_reveal(self, sender: int, committed: bytes, revealed: bytes) -> None:
        dep = self.roster.deployment_id
        shares = {j: bytes([j]) * 8 for j in range(1, N + 1)}
        self.ceremony(
            pb.KEY_COMMIT, sender, codec.encode_key_commit(dep, sender, committed, shares)
        )
        self.ceremony(pb.KEY_CONTRIBUTION, sender, revealed)

    def endorse(self, key_id: bytes, *, epoch: int, by: tuple[int, ...] = (1, 2, 3)) -> None:
        for sender in by:
            self.ceremony(pb.ENDORSEMENT, sender, key_id, epoch=epoch)

    def public_key(self, key_id: bytes) -> None:
        check_public_key(self.v, self.at("public_key"), PublicKeyEntry(key_id, N, 2))


def _id(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def test_contributions_are_held_to_their_logged_commitments(deployment: Path) -> None:
    log = Log(deployment)
    log.commit_and_reveal(1, b"b_1", b"b_1")
    log.commit_and_reveal(2, b"b_2", b"b_2 changed after the others were seen")
    assert log.report.errors == [
        "entry 4 (ceremony): contribution of key holder 2 does not match its logged commitment"
    ]
    log.ceremony(pb.KEY_CONTRIBUTION, 3, b"b_3")  # no commitment logged
    assert log.report.errors[1:] == [
        "entry 5 (ceremony): contribution of key holder 3 logged before its commitment"
    ]


def test_a_commitment_logged_by_hash_only_is_a_warning(deployment: Path) -> None:
    log = Log(deployment)
    log.v.seen.key_commits[1, 1] = b""  # an older log kept only the commitment's hash
    log.ceremony(pb.KEY_CONTRIBUTION, 1, b"b_1")
    assert log.report.errors == []
    assert log.report.warnings == [
        "entry 1 (ceremony): contribution of key holder 1 not checked: its commitment's body "
        "was not logged"
    ]


def test_a_key_needs_every_endorsement_in_one_epoch_after_the_previous_key(
    deployment: Path,
) -> None:
    log = Log(deployment)
    first, second = _id("K1"), _id("K2")
    log.endorse(first, epoch=1)
    log.public_key(first)
    assert log.report.errors == []
    log.endorse(second, epoch=2, by=(1, 2))
    log.endorse(second, epoch=3, by=(3,))  # endorsements of two epochs do not add up
    log.public_key(second)
    log.public_key(first)  # epoch 1's endorsements do not vouch for a second announcement
    lacking = "the joint public key lacks endorsements by every key holder in one key epoch"
    assert log.report.errors == [
        f"entry 8 (public_key): {lacking} after epoch 1",
        f"entry 9 (public_key): {lacking} after epoch 1",
    ]
    log.endorse(second, epoch=4)
    log.public_key(second)
    assert len(log.report.errors) == 2
    assert log.v.seen.public_key_epoch == 4


def test_a_transcript_must_hash_the_logged_messages(deployment: Path) -> None:
    log = Log(deployment)
    digests: dict[int, dict[int, bytes]] = {}
    for kind in codec.TRANSCRIPT_KINDS:
        for sender in range(1, N + 1):
            body = bytes([kind, sender]) * 16
            digests.setdefault(kind, {})[sender] = hashlib.sha256(body).digest()
            log.ceremony(kind, sender, body)
    dep = log.roster.deployment_id
    agreed = codec.transcript_hash(dep, epoch=1, digests=digests)
    digests[pb.KEY_COMMIT][3] = _id("a commitment the log does not show")
    other = codec.transcript_hash(dep, epoch=1, digests=digests)
    log.ceremony(pb.TRANSCRIPT, 1, agreed)
    log.ceremony(pb.TRANSCRIPT, 2, other)
    errors = [e for e in log.report.errors if "transcript" in e]
    assert errors == [
        f"entry {log.seq} (ceremony): transcript of key holder 2 does not match the logged messages"
    ]
