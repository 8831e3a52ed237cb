"""Review of the witnessed audit log (issue 11): what the witnesses must force.

On the synthetic one-round log of ``test_audit_verify.py`` (real keys), the key
holders' REAL :class:`~clients.keyholder.witness.Witness` co-signs what a malicious
server shows it, and the REAL verifier judges the log the server then keeps.

* Stale heads. A DECRYPT task's head is the server's choice, and a witness accepts any
  head that extends its last one, the very same head included. So the server shows round
  1's decryption a head from before the round's uploads, later drops the round's
  ``upload_rejected`` entry and re-signs its checkpoint. ``audit verify`` must fail: a
  partial's co-signed head has to cover the decryption request it answers.
* Omitted witness files. The log itself proves which key holders co-signed heads (their
  co-signatures are in the partial entries); a verifier given only some witness files
  must name the missing ones.
"""

from __future__ import annotations

from pathlib import Path

import test_audit_verify
from test_audit_verify import write_log

from clients.keyholder.witness import Witness
from secagg.protocol.audit_entries import CheckpointEntry
from secagg.protocol.audit_log import AuditLog, merkle_tree, read_entries
from secagg.protocol.audit_verify import verify_log
from secagg.protocol.layout import DeploymentLayout
from secagg.protocol.roster import load_roster
from secagg.protocol.statements import CheckpointStatement, Signed
from secagg.rpc.transport import identity

deployment, dep = test_audit_verify.deployment, test_audit_verify.dep  # fixtures


def _witness(directory: Path, keyholder: int) -> Witness:
    state = DeploymentLayout(directory).state_dir(f"kh{keyholder}", "keyholder")
    state.mkdir(parents=True, exist_ok=True)
    return Witness(state, load_roster(directory), keyholder)


def _cosign(directory: Path, keyholder: int, size: int, root: bytes) -> bytes:
    """Key holder ``keyholder``'s real witness co-signs the head (size, root) it is shown."""
    key = identity(directory, f"kh{keyholder}").signing_key()
    return _witness(directory, keyholder).cosign(size, root, [], key)


def test_stale_heads_let_the_server_drop_a_rejected_upload(dep: Path) -> None:
    seqs = write_log(dep)
    path = DeploymentLayout(dep).audit_log
    entries = list(read_entries(path))
    stale = seqs["round_open"]  # before the round's uploads and its rejected upload
    root = merkle_tree(entries).root(stale)
    cosigned = {}
    for k in (1, 2):
        _cosign(dep, k, stale, root)  # an earlier task (its first head)
        cosigned[k] = _cosign(dep, k, stale, root)  # round 1's task: the same head
    # the server's log: the rejection dropped, the partials' co-signatures of the stale
    # head, the checkpoint re-signed with its own key
    path.unlink()
    log, server = AuditLog(path), identity(dep, "server").signing_key()
    deployment_id = load_roster(dep).deployment_id
    for entry in entries:
        data = dict(entry.data)
        if entry.type == "upload_rejected":
            continue
        if entry.type == "partial":
            data.update(
                checkpoint_size=stale,
                checkpoint_head=root.hex(),
                checkpoint_signature=cosigned[data["keyholder"]].hex(),
            )
        if entry.type == "checkpoint":
            size, head = log.size, log.head
            signed = Signed.create(CheckpointStatement(deployment_id, size, head), server)
            data = CheckpointEntry(size, head, signed.signature).to_data()
        log.append(entry.type, data)
    report = verify_log(dep)
    assert report.witnesses == [1, 2]
    assert report.rounds[1].rejected == 0  # the refused upload is gone from the record
    assert not report.ok, f"a pruned log verified; warnings only: {report.warnings}"


def test_a_cosigning_key_holder_without_a_witness_file_is_reported(dep: Path) -> None:
    seqs = write_log(dep)
    entries = list(read_entries(DeploymentLayout(dep).audit_log))
    size = seqs["decryption_request"]  # what key holders 1 and 2 co-signed (partials)
    for k in (1, 2):
        _cosign(dep, k, size, merkle_tree(entries).root(size))
    _witness(dep, 2).path.unlink()  # the verifier is not given key holder 2's head
    report = verify_log(dep)
    assert report.witnesses == [1]
    assert any("key holder 2" in w for w in report.warnings + report.errors), report.warnings
