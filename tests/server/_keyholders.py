"""Honest key holders for the in-process server tier: lock, decrypt, endorse.

The tests play the key holders with the real threshold cryptography, the roster's
signing keys and the policy checks, reading the server's chunk files straight from its
blob store instead of over gRPC (every head compared with the task's digests, every chunk
checked against its head, as :mod:`secagg.protocol.stored_chunks` does). An honest key
holder here:

* LOCK: checks the contributor set against the policy, recomputes the aggregate from the
  listed ciphertexts (a file-backed accumulator) and signs a
  :class:`~secagg.protocol.statements.LockStatement`;
* DECRYPT: requires a valid lock certificate in the task, then signs its partial (the
  in-memory :func:`secagg.partial_decrypt` on these small vectors, sent as a head and
  chunks) and the audit checkpoint the task shows (``mangle`` plays a dishonest one);
* ENDORSE: combines every listed quorum's partials itself chunk by chunk, checks that
  they agree and that the model is the one the server proposes, and signs an
  :class:`~secagg.protocol.statements.EndorsementStatement`.

It keeps no record of its own (one aggregate per round, the budget): the server tier
tests the server, the key holder's record is tested with the agent. For speed, a LOCK
task's aggregate is recomputed once per blob store: every honest key holder would get
the same answer from the same bytes.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Iterable, Mapping
from contextlib import ExitStack
from pathlib import Path

import numpy as np

import secagg
from clients.keyholder.checks import check_task
from secagg import constants as C
from secagg.accumulator import ChunkedAggregator
from secagg.aggregate import EncryptedAggregate
from secagg.chunked import PartialHead, payload_chunks
from secagg.ciphertext import EncryptedVector
from secagg.errors import AggregateMismatch, InvalidPartialDecryption, PartialsDisagree
from secagg.proto import service_pb2 as pb
from secagg.protocol.certificates import check_locks
from secagg.protocol.model_blob import encode_model
from secagg.protocol.quorums import check_cross_checked, flatten
from secagg.protocol.statements import (
    CheckpointStatement,
    EndorsementStatement,
    LockStatement,
    PartialStatement,
    RefusalStatement,
    Signed,
    UploadStatement,
)
from secagg.protocol.stored_chunks import (
    check_quorum,
    decrypt_stored,
    fold_stored,
    open_aggregate,
    open_partial,
    stored_chunks,
)
from secagg.threshold import PartialDecryption

from .conftest import Server

Mangle = Callable[[PartialDecryption], PartialDecryption]

#: The audit entries that end a round once two key holders (``t = 2``) endorsed its model.
ENDORSED_RELEASE = ["endorsement", "endorsement", "release", "checkpoint", "round_open"]


def flip(signature: bytes) -> bytes:
    """A signature with its first bit flipped (no longer valid)."""
    return bytes([signature[0] ^ 1]) + signature[1:]


# ---------------------------------------------------------------------------- reading
def recompute(server: Server, task: pb.DecryptionTask, uploads: list[UploadStatement]) -> None:
    """Raise AggregateMismatch unless the task's aggregate is the weighted sum of ``uploads``."""
    params, blobs = server.world.roster.params, server.ctx.blobs
    file, _ = open_aggregate(blobs.path(task.aggregate_hash), params, task.aggregate_digest)
    file.close()
    with tempfile.TemporaryDirectory() as scratch:
        acc = ChunkedAggregator(
            params,
            public_key_id=server.world.keys.public_key.id_bytes,
            length=server.world.roster.policy.model_length,
            path=Path(scratch) / "acc",
        )
        try:
            for u in uploads:
                fold_stored(acc, blobs.path(u.ciphertext_hash), params, u.ciphertext_hash, u.weight)
            digest = acc.write(Path(scratch) / "aggregate").digest
        finally:
            acc.close()
    if digest != task.aggregate_digest:
        raise AggregateMismatch("aggregate does not equal the weighted sum of the listed uploads")


def stored_aggregate(server: Server, digest: bytes) -> EncryptedAggregate:
    """The stored aggregate as an in-memory object (small vectors only)."""
    params = server.world.roster.params
    file, head = open_aggregate(server.ctx.blobs.path(digest), params, digest)
    with file:
        residues = np.concatenate([r for _, r in stored_chunks(file, head.vector)])
    v = head.vector
    vector = EncryptedVector(params, v.public_key_id, v.length, residues)
    aggregate = EncryptedAggregate(vector, head.total_weight, head.weight_scale, head.contributors)
    assert aggregate.digest == digest
    return aggregate


# ---------------------------------------------------------------------------- answers
#: LOCK tasks whose aggregate was recomputed from their uploads, by blob store (speed only).
_RECOMPUTED: set[tuple[Path, bytes, bytes]] = set()


def lock(server: Server, task: pb.DecryptionTask, keyholder: int) -> pb.Lock:
    """What an honest ``keyholder`` sends for a LOCK task, after checking the set."""
    assert task.kind == pb.TASK_LOCK and task.task_id == 0, task
    world = server.world
    contributions = check_task(world.roster, task)
    checked = (server.ctx.blobs.root, task.aggregate_hash, task.SerializeToString())
    if checked not in _RECOMPUTED:  # the same bytes recompute the same way for everyone
        recompute(server, task, contributions)
        _RECOMPUTED.add(checked)
    statement = LockStatement(
        world.roster.deployment_id, task.round, keyholder, task.aggregate_digest
    )
    return statement.to_proto(Signed.create(statement, world.keyholder_keys[keyholder]).signature)


def partial(
    server: Server,
    task: pb.DecryptionTask,
    keyholder: int,
    *,
    tamper: bool = False,
    mangle: Mangle | None = None,
) -> tuple[pb.PartialHeader, list[bytes]]:
    """What ``keyholder`` sends for a DECRYPT task (``mangle``: a dishonest one's partial):
    the header with the partial's head, and its chunks.

    The task must carry a valid lock certificate (else ``LockMissing`` is raised, as the
    real key holder refuses); ``tamper`` flips a bit of the partial's signature.
    """
    assert task.kind == pb.TASK_DECRYPT and task.task_id != 0, task
    world = server.world
    deployment = world.roster.deployment_id
    check_locks(world.roster, task.round, task.aggregate_digest, task.locks)
    aggregate = stored_aggregate(server, task.aggregate_hash)
    share = world.keys.shares[keyholder - 1]
    part = secagg.partial_decrypt(share, aggregate, quorum=task.quorum)
    if mangle is not None:
        part = mangle(part)
    key = world.keyholder_keys[keyholder]
    statement = PartialStatement(
        deployment, task.round, keyholder, part.digest, task.aggregate_digest
    )
    checkpoint = CheckpointStatement(deployment, task.log_size, task.log_head)
    signature = Signed.create(statement, key).signature
    header = pb.PartialHeader(
        task_id=task.task_id,
        round=task.round,
        keyholder=keyholder,
        head=PartialHead.of(part).to_bytes(),
        signature=flip(signature) if tamper else signature,
        checkpoint_signature=Signed.create(checkpoint, key).signature,
    )
    return header, [bytes(c) for c in payload_chunks(part)]


def _quorum_model(server: Server, task: pb.DecryptionTask, listed: pb.QuorumPartials) -> bytes:
    """The model one listed quorum's partials decrypt to, after checking heads and signers."""
    roster = server.world.roster
    params, blobs = roster.params, server.ctx.blobs
    quorum = tuple(listed.quorum)
    if not len(listed.partial_hashes) == len(listed.partial_signatures) == len(quorum):
        raise InvalidPartialDecryption(f"quorum {quorum}: one partial and signature per member")
    with ExitStack() as stack:
        agg = open_aggregate(blobs.path(task.aggregate_hash), params, task.aggregate_digest)
        stack.callback(agg[0].close)
        members = []
        for member, digest, signature in zip(
            quorum, listed.partial_hashes, listed.partial_signatures, strict=True
        ):
            file, head = open_partial(blobs.path(digest), params, digest)
            stack.callback(file.close)
            if head.keyholder_index != member:
                raise InvalidPartialDecryption(f"partial of key holder {member} is another's")
            statement = PartialStatement(
                roster.deployment_id, task.round, member, head.digest, task.aggregate_digest
            )
            Signed(statement, signature).verify(roster)
            members.append((file, head))
        check_quorum(agg[1], [h for _, h in members], members[0][1].quorum)
        mean = decrypt_stored(agg, members)
    bound = roster.params.value_bound
    if not bool(np.all(np.abs(mean) <= bound)):
        raise PartialsDisagree(f"quorum {quorum} decrypts values beyond the bound {bound:g}")
    return encode_model(task.round + 1, mean)


def endorsement(server: Server, task: pb.DecryptionTask, keyholder: int) -> pb.Endorsement:
    """What an honest ``keyholder`` sends for an ENDORSE task, after combining it itself."""
    assert task.kind == pb.TASK_ENDORSE and task.task_id == 0, task
    roster = server.world.roster
    check_locks(roster, task.round, task.aggregate_digest, task.locks)
    if not task.partials:
        raise InvalidPartialDecryption("no partials to combine")
    check_cross_checked([tuple(q.quorum) for q in task.partials], roster.policy.threshold)
    models = {_quorum_model(server, task, listed) for listed in task.partials}
    if len(models) != 1:
        raise PartialsDisagree(f"quorums decrypt the aggregate to {len(models)} models")
    model_hash = hashlib.sha256(models.pop()).digest()
    if model_hash != task.model_hash:
        raise AggregateMismatch("the proposed model is not the decryption of the aggregate")
    statement = EndorsementStatement(
        roster.deployment_id,
        task.round,
        keyholder,
        task.aggregate_digest,
        model_hash,
        flatten([tuple(q.quorum) for q in task.partials]),
    )
    key = server.world.keyholder_keys[keyholder]
    return statement.to_proto(Signed.create(statement, key).signature)


def refusal(
    server: Server, round_number: int, keyholder: int, reason: str, task_id: int
) -> pb.Refusal:
    """A signed refusal (``task_id`` 0: of the round's LOCK or ENDORSE task)."""
    statement = RefusalStatement(server.world.roster.deployment_id, round_number, keyholder, reason)
    signed = Signed.create(statement, server.world.keyholder_keys[keyholder])
    return statement.to_proto(signed.signature, task_id=task_id)


# ---------------------------------------------------------------------------- driving
def answer(server: Server, keyholder: int, *, mangle: Mangle | None = None) -> int | None:
    """``keyholder`` polls once and does what it is asked; the task's kind, or None."""
    manager = server.manager
    task = manager.task_for(keyholder)
    if not task.pending:
        return None
    if task.kind == pb.TASK_LOCK:
        manager.submit_lock(keyholder, lock(server, task, keyholder))
    elif task.kind == pb.TASK_ENDORSE:
        manager.submit_endorsement(keyholder, endorsement(server, task, keyholder))
    else:
        header, chunks = partial(server, task, keyholder, mangle=mangle)
        assert manager.submit_partial(keyholder, header, chunks) == "accepted"
    return int(task.kind)


def lock_round(server: Server, keyholders: Iterable[int]) -> None:
    """Each of ``keyholders`` polls and locks the round being decrypted."""
    for k in keyholders:
        assert answer(server, k) == pb.TASK_LOCK, f"key holder {k} was not asked to lock"


def endorse_round(server: Server, keyholders: Iterable[int]) -> None:
    """Each of ``keyholders`` polls and endorses the round's proposed model."""
    for k in keyholders:
        assert answer(server, k) == pb.TASK_ENDORSE, f"key holder {k} was not asked to endorse"


def fall_silent(server: Server, live: Iterable[int] = ()) -> None:
    """Time passes: only ``live`` key holders poll again (the others are no longer live)."""
    server.monotonic.advance(C.KEYHOLDER_LIVENESS_SECONDS + 1.0)
    for k in live:
        server.manager.seen(k)


def run(
    server: Server,
    live: Iterable[int],
    deviant: Mapping[int, Mangle] | None = None,
    *,
    locked_by: Iterable[int] = (),
) -> int:
    """Every live key holder does every task it is given until none is left.

    ``locked_by`` lock the round first and then fall silent, before the others poll (a
    round locked by more key holders than are live when it is decrypted). ``deviant``
    key holders send mangled partials. Returns how many partials were sent.
    """
    live = tuple(live)
    silent = tuple(locked_by)
    if silent:
        lock_round(server, silent)
        fall_silent(server)
    for k in live:
        server.manager.seen(k)
    partials = 0
    progress = True
    while progress:
        progress = False
        for k in live:
            kind = answer(server, k, mangle=(deviant or {}).get(k))
            progress = progress or kind is not None
            partials += kind == pb.TASK_DECRYPT
    return partials
