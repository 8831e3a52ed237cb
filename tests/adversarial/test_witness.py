"""A malicious server against the real key holder as a witness of the audit log (issue 11.3).

The server double shows the REAL key-holder agent DECRYPT tasks whose audit-log head
(size, Merkle root) the test chooses, with the consistency proofs it chooses. The key
holder co-signs a first head (trust on first use) and keeps it; then a truncated head,
a forked one (with a valid proof *of the fork*), an extension without a proof, and a
pruned log re-hashed by the server are each refused with ``INCONSISTENT_LOG_HEAD``; an
honest extension, proven from the head it kept (among decoy proofs from other sizes), is
co-signed and kept. Every task asks the same decryption, so the key holder answers with
its stored partial: what is exercised is the co-signature alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from secagg.errors import InconsistentLogHead
from secagg.proto import service_pb2 as pb
from secagg.protocol.layout import DeploymentLayout
from secagg.protocol.merkle import MerkleTree, leaf_hash
from secagg.protocol.statements import CheckpointStatement, Signed
from secagg.protocol.witness_head import WITNESS_FILE, WitnessedHead

from ._expect import partial, refused
from .conftest import Attack, Upload

PARKED = 99  # a queue no key holder polls: tasks wait there until the test edits them


def _log(leaves: Sequence[bytes]) -> MerkleTree:
    return MerkleTree(leaf_hash(leaf) for leaf in leaves)


def _decrypt(
    attack: Attack,
    uploads: Sequence[Upload],
    tree: MerkleTree,
    size: int,
    proofs_from: Sequence[int] = (),
) -> pb.DecryptionTask:
    """Give key holder 1 a DECRYPT task showing ``tree``'s head at ``size``, with proofs."""
    task = attack.task(*uploads, to=PARKED)
    task.log_size, task.log_head = size, tree.root(size)
    task.consistency.extend(
        pb.ConsistencyProof(from_size=m, hashes=tree.consistency_proof(m, size))
        for m in proofs_from
    )
    attack.double.give(task, to=1)
    return task


def _cosigned(attack: Attack, task: pb.DecryptionTask) -> WitnessedHead:
    """Key holder 1 answered ``task`` and co-signed its head; the head it now keeps."""
    answer = partial(attack, task)
    checkpoint = CheckpointStatement(attack.roster.deployment_id, task.log_size, task.log_head)
    Signed(checkpoint, answer.header.checkpoint_signature).verify_by(attack.roster.keyholder(1))
    state = DeploymentLayout(attack.directory).state_dir("kh1", "keyholder")
    return WitnessedHead.load(state / WITNESS_FILE)


def test_the_key_holder_cosigns_only_heads_that_extend_its_last(attack: Attack) -> None:
    uploads = [attack.upload("c1", attack.encrypt(1)), attack.upload("c2", attack.encrypt(2))]
    entries = [b"entry %d" % i for i in range(12)]
    honest = _log(entries)
    forked = _log([*entries[:2], b"another entry 2", *entries[3:]])
    pruned = _log(entries[:2] + entries[3:])  # entry 3 dropped, the rest re-hashed
    attack.start_keyholder(1)

    first = _cosigned(attack, _decrypt(attack, uploads, honest, 5))  # no head yet: accepted
    assert (first.size, first.head) == (5, honest.root(5))

    attacks = {
        "truncated": _decrypt(attack, uploads, honest, 4),
        "forked (its own valid proof)": _decrypt(attack, uploads, forked, 8, [5]),
        "pruned and re-hashed": _decrypt(attack, uploads, pruned, 8, [5]),
        "another root at the same size": _decrypt(attack, uploads, forked, 5),
        "extended without a proof": _decrypt(attack, uploads, honest, 8, [4, 6]),
    }
    for name, task in attacks.items():
        reason = refused(attack, task, InconsistentLogHead)
        assert "co-signed" in reason or "two different" in reason, (name, reason)

    kept = _cosigned(attack, _decrypt(attack, uploads, honest, 9, [3, 5, 7]))
    assert (kept.size, kept.head) == (9, honest.root(9))
    kept.verify(attack.roster)
