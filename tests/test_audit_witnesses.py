"""Witnessed heads in process: :class:`Witness`, the server's proofs, the verifier.

The synthetic one-round log of ``test_audit_verify.py`` (real keys, no process) is held
to key-holder heads written as the real key holder writes them; the key holder's
:class:`~clients.keyholder.witness.Witness` is driven with proofs from a real
:class:`~server.audit_trail.AuditTrail`. The real agent against a malicious server is in
``tests/adversarial/test_witness.py``; a real run in ``tests/integration/test_audit_witnessed.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import test_audit_verify
from test_audit_verify import edit, write_log

from clients.keyholder.witness import Witness
from secagg.errors import InconsistentLogHead
from secagg.proto import service_pb2 as pb
from secagg.protocol.audit_entries import DecryptionRequestEntry, PartialEntry, RoundOpenEntry
from secagg.protocol.audit_log import AuditLog, merkle_tree, read_entries
from secagg.protocol.audit_verify import verify_log
from secagg.protocol.layout import DeploymentLayout
from secagg.protocol.roster import load_roster
from secagg.protocol.witness_head import WITNESS_FILE, WitnessedHead
from secagg.rpc.transport import identity
from server.audit_trail import AuditTrail

deployment, dep = test_audit_verify.deployment, test_audit_verify.dep  # fixtures


def _witness(directory: Path, keyholder: int) -> Witness:
    state = DeploymentLayout(directory).state_dir(f"kh{keyholder}", "keyholder")
    state.mkdir(parents=True, exist_ok=True)
    return Witness(state, load_roster(directory), keyholder)


def _key(directory: Path, name: str):  # type: ignore[no-untyped-def]
    return identity(directory, name).signing_key()


def _cosign_log(directory: Path, keyholder: int, size: int) -> Path:
    """Key holder ``keyholder`` co-signs the log's head at ``size``, as a first head."""
    entries = list(read_entries(DeploymentLayout(directory).audit_log))
    witness = _witness(directory, keyholder)
    root = merkle_tree(entries).root(size)
    witness.cosign(size, root, [], _key(directory, f"kh{keyholder}"))
    return witness.path


# ----------------------------------------------------------------- the verifier


def test_a_witnessed_log_verifies_and_says_what_is_not_witnessed(dep: Path) -> None:
    seqs = write_log(dep)
    _cosign_log(dep, 1, seqs["partial"] - 1)
    _cosign_log(dep, 2, seqs["release"])
    report = verify_log(dep)
    assert report.ok, report.errors
    assert report.witnesses == [1, 2]
    assert report.warnings[-1] == (
        f"entries after {seqs['release']} are not witnessed by any key holder (the server's word)"
    )


def test_a_log_shorter_than_a_witness_fails(dep: Path) -> None:
    seqs = write_log(dep)
    path = _cosign_log(dep, 2, seqs["checkpoint"])
    log = DeploymentLayout(dep).audit_log
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[: seqs["release"]]))  # cut before the checkpoint
    assert verify_log(dep).errors == [
        f"entry {seqs['release'] + 1} (missing): the log has {seqs['release']} entries, but key "
        f"holder 2 co-signed a head of size {seqs['checkpoint']} ({path}): the log was truncated"
    ]


def test_a_log_with_another_root_fails_naming_the_witnessed_entry(dep: Path) -> None:
    seqs = write_log(dep)
    size = seqs["release"]
    _cosign_log(dep, 3, size)
    edit(dep, seqs["upload_rejected"], lambda e: e["data"].update(reason="nothing to see"))
    errors = verify_log(dep).errors
    assert errors[-1].startswith(f"entry {size} (witnessed by key holder 3): entries 1..{size} ")
    assert errors[-1].endswith("an entry was dropped, altered or forked")


def test_a_witness_file_is_checked_before_it_is_believed(dep: Path, tmp_path: Path) -> None:
    seqs = write_log(dep)
    path = _cosign_log(dep, 1, seqs["release"])
    outside = tmp_path / "kh1-head.json"
    data = json.loads(path.read_bytes())
    path.unlink()
    # given with --witness: checked like the key holders' own files
    data["size"] = seqs["checkpoint"]  # the server cannot move a witness's head
    outside.write_text(json.dumps(data))
    [error] = verify_log(dep, witnesses=[outside]).errors
    assert error.startswith(f"witness {outside}: not a valid witnessed head (")
    assert "invalid signature by key holder 1" in error
    data["size"], data["keyholder"] = seqs["release"], 2  # and it is key holder 1's signature
    outside.write_text(json.dumps(data))
    assert "invalid signature by key holder 2" in verify_log(dep, witnesses=[outside]).errors[0]
    outside.write_text("{")
    assert verify_log(dep, witnesses=[outside]).errors[0].startswith(f"witness {outside}: ")


# ----------------------------------------------------------------- rejected uploads


def test_a_rejected_upload_is_signed_by_its_client(dep: Path) -> None:
    seqs = write_log(dep)
    at = f"entry {seqs['upload_rejected']} (upload_rejected): "

    def forged(entry: dict[str, object]) -> None:
        entry["data"]["weight"] = 11  # type: ignore[index]

    edit(dep, seqs["upload_rejected"], forged)
    assert at + "invalid signature by c4" in verify_log(dep).errors


def test_a_rejection_for_a_valid_signature_is_a_lie(dep: Path) -> None:
    seqs = write_log(dep)
    edit(dep, seqs["upload_rejected"], lambda e: e["data"].update(reason="SignatureInvalid: x"))
    at = f"entry {seqs['upload_rejected']} (upload_rejected): "
    assert at + "upload of c4 refused for its signature, which is valid" in verify_log(dep).errors


def test_an_unsigned_rejection_is_the_servers_word(dep: Path) -> None:
    seqs = write_log(dep)

    def unsigned(entry: dict[str, object]) -> None:
        data = entry["data"]
        assert isinstance(data, dict)
        data.update(nonce="", global_model_hash="", weight=0, epsilon="", signature="")

    edit(dep, seqs["upload_rejected"], unsigned)
    report = verify_log(dep)
    assert not [e for e in report.errors if "upload_rejected" in e]
    assert (
        f"entry {seqs['upload_rejected']} (upload_rejected): refusal of an upload by c4 "
        "carries no signed statement"
    ) in report.warnings


# ----------------------------------------------------------------- the key holder's witness


@pytest.fixture
def trail(dep: Path, tmp_path: Path) -> AuditTrail:
    return AuditTrail(AuditLog(tmp_path / "audit.log"), load_roster(dep), _key(dep, "server"))


def _grow(trail: AuditTrail, n: int, quorum: tuple[int, ...] = (1, 2)) -> int:
    for r in range(n):
        trail.record(RoundOpenEntry(r + 1, bytes(32)))
    size, _ = trail.record(
        DecryptionRequestEntry(1, trail.size, quorum, bytes(32), bytes(32), (), False)
    )
    return size


def test_the_witness_follows_a_growing_log(dep: Path, trail: AuditTrail) -> None:
    witness, key = _witness(dep, 1), _key(dep, "kh1")
    first = _grow(trail, 2)
    signature = witness.cosign(first, trail.audit.tree.root(first), [], key)  # first: trusted
    kept = WitnessedHead.load(witness.path)
    assert (kept.size, kept.head, kept.signature) == (first, trail.audit.head, signature)
    kept.verify(load_roster(dep))
    assert witness.path.name == WITNESS_FILE and witness.path.stat().st_mode & 0o777 == 0o600
    # the same head again, then a longer log with the server's proofs
    witness.cosign(first, trail.audit.tree.root(first), [], key)
    later = _grow(trail, 5)
    proofs = trail.consistency_proofs(1, later)
    assert [p.from_size for p in proofs] == [first]
    witness.cosign(later, trail.audit.tree.root(later), proofs, key)
    assert WitnessedHead.load(witness.path).size == later


def test_the_witness_refuses_what_does_not_extend_its_head(dep: Path, trail: AuditTrail) -> None:
    witness, key = _witness(dep, 1), _key(dep, "kh1")
    size = _grow(trail, 3)
    root = trail.audit.tree.root(size)
    witness.cosign(size, root, [], key)
    kept = witness.path.read_bytes()
    longer = _grow(trail, 2)
    good = trail.consistency_proofs(1, longer)
    fork = trail.audit.tree.root(longer - 1)  # any other root
    refused = {
        "older than the head": (size - 1, trail.audit.tree.root(size - 1), []),
        "two different log heads": (size, fork, []),
        "no consistency proof from size": (longer, trail.audit.tree.root(longer), []),
        "does not extend": (longer, fork, good),
        "no consistency proof from size ": (
            longer,
            trail.audit.tree.root(longer),
            [pb.ConsistencyProof(from_size=size - 1, hashes=good[0].hashes)],
        ),
    }
    for message, (s, head, proofs) in refused.items():
        with pytest.raises(InconsistentLogHead, match=message.strip()):
            witness.cosign(s, head, proofs, key)
        assert witness.path.read_bytes() == kept, "a refused head is never kept"


def test_another_key_holders_head_is_not_ours(dep: Path, trail: AuditTrail) -> None:
    size = _grow(trail, 1)
    mine, theirs = _witness(dep, 1), _witness(dep, 2)
    theirs.cosign(size, trail.audit.head, [], _key(dep, "kh2"))
    mine.path.write_bytes(theirs.path.read_bytes())
    with pytest.raises(InconsistentLogHead, match="not this key holder's"):
        mine.cosign(size, trail.audit.head, [], _key(dep, "kh1"))


def test_the_server_proves_from_every_size_since_the_last_cosigned(
    dep: Path, trail: AuditTrail, tmp_path: Path
) -> None:
    a = _grow(trail, 1, (1, 2))
    b = _grow(trail, 1, (2, 3))  # not shown to key holder 1
    c = _grow(trail, 1, (1, 3))
    trail.record(
        PartialEntry(
            1, 1, 1, bytes(32), bytes(32), bytes(32), b"", a, trail.audit.tree.root(a), b""
        )
    )
    d = _grow(trail, 1, (1, 2))
    assert [p.from_size for p in trail.consistency_proofs(1, d)] == [a, c]
    assert [p.from_size for p in trail.consistency_proofs(2, d)] == [a, b]
    # and the same after a restart (read back from the log)
    again = AuditTrail(AuditLog(tmp_path / "audit.log"), trail.roster, trail.signing_key)
    assert [p.from_size for p in again.consistency_proofs(1, d)] == [a, c]
