"""Honest key holders for the in-process server tier: lock, decrypt, endorse.

The tests play the key holders with the real threshold cryptography, the roster's
signing keys and the key holder's own checks (:mod:`clients.keyholder.checks`,
:mod:`clients.keyholder.endorse`), downloading blobs straight from the server's blob
store instead of over gRPC. An honest key holder here:

* LOCK: checks the contributor set against the policy, recomputes the aggregate from the
  listed ciphertexts and signs a :class:`~secagg.protocol.statements.LockStatement`;
* DECRYPT: requires a valid lock certificate in the task, then signs its partial and the
  audit checkpoint the task shows (``mangle`` plays a dishonest one);
* ENDORSE: combines every listed quorum's partials itself, checks that they agree and
  that the model is the one the server proposes, and signs an
  :class:`~secagg.protocol.statements.EndorsementStatement`.

It keeps no record of its own (one aggregate per round, the budget): the server tier
tests the server, the key holder's record is tested with the agent. For speed, a LOCK
task's aggregate is recomputed once per blob store: every honest key holder would get
the same answer from the same bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import cast

import secagg
from clients.connection import Connection
from clients.keyholder.checks import check_task, recompute_aggregate
from clients.keyholder.endorse import endorsed_model
from secagg import constants as C
from secagg.aggregate import EncryptedAggregate
from secagg.proto import service_pb2 as pb
from secagg.protocol.certificates import check_locks
from secagg.protocol.statements import (
    CheckpointStatement,
    EndorsementStatement,
    LockStatement,
    PartialStatement,
    RefusalStatement,
    Signed,
)
from secagg.threshold import PartialDecryption

from .conftest import Server

Mangle = Callable[[PartialDecryption], PartialDecryption]

#: The audit entries that end a round once two key holders (``t = 2``) endorsed its model.
ENDORSED_RELEASE = ["endorsement", "endorsement", "release", "checkpoint", "round_open"]


class _Blobs:
    """Stands for a key holder's :class:`~clients.connection.Connection`: downloads only."""

    def __init__(self, server: Server) -> None:
        self.blobs = server.ctx.blobs

    def download(self, sha256: bytes) -> bytes:
        return self.blobs.get(sha256)


def _conn(server: Server) -> Connection:
    return cast(Connection, _Blobs(server))


def flip(signature: bytes) -> bytes:
    """A signature with its first bit flipped (no longer valid)."""
    return bytes([signature[0] ^ 1]) + signature[1:]


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
        recompute_aggregate(
            _conn(server),
            world.roster,
            task,
            contributions,
            public_key_id=world.keys.public_key.id_bytes,
        )
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
) -> tuple[pb.PartialHeader, bytes]:
    """What ``keyholder`` sends for a DECRYPT task (``mangle``: a dishonest one's partial).

    The task must carry a valid lock certificate (else ``LockMissing`` is raised, as the
    real key holder refuses); ``tamper`` flips a bit of the partial's signature.
    """
    assert task.kind == pb.TASK_DECRYPT and task.task_id != 0, task
    world = server.world
    deployment = world.roster.deployment_id
    check_locks(world.roster, task.round, task.aggregate_digest, task.locks)
    aggregate = EncryptedAggregate.from_bytes(
        server.ctx.blobs.get(task.aggregate_hash), world.roster.params
    )
    share = world.keys.shares[keyholder - 1]
    part = secagg.partial_decrypt(share, aggregate, quorum=task.quorum)
    if mangle is not None:
        part = mangle(part)
    blob = part.to_bytes()
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
        blob=pb.BlobHeader(total_size=len(blob), sha256=hashlib.sha256(blob).digest()),
        signature=flip(signature) if tamper else signature,
        checkpoint_signature=Signed.create(checkpoint, key).signature,
    )
    return header, blob


def endorsement(server: Server, task: pb.DecryptionTask, keyholder: int) -> pb.Endorsement:
    """What an honest ``keyholder`` sends for an ENDORSE task, after combining it itself."""
    assert task.kind == pb.TASK_ENDORSE and task.task_id == 0, task
    roster = server.world.roster
    endorsed = endorsed_model(_conn(server), roster, task)
    statement = EndorsementStatement(
        roster.deployment_id,
        task.round,
        keyholder,
        task.aggregate_digest,
        endorsed.model_hash,
        endorsed.checked_quorums,
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
        header, blob = partial(server, task, keyholder, mangle=mangle)
        assert manager.submit_partial(keyholder, header, blob) == "accepted"
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
