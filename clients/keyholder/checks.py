"""The checks a key holder makes before it partially decrypts an aggregate.

Two stages, both raising a precise :class:`~secagg.errors.SecAggError` child whose
``reason`` goes into the signed refusal:

1. :func:`check_task` (no network): every listed contribution is a client's signed
   :class:`~secagg.protocol.statements.UploadStatement` for the task's round, and the
   contributor set passes :func:`secagg.protocol.policy.check_decryption` — the same
   rules the server and ``secagg audit verify`` apply.
2. :func:`verified_aggregate` (asks the server, believes nothing it says unsigned): the
   round no longer collects, this key holder decrypted no other aggregate of the round,
   no signed release of the round exists, and the aggregate equals the weighted sum of
   the listed ciphertexts, recomputed here (O(clients x model) work per round).

Security
--------
The task comes from the server, which is not trusted: only signatures checked against
the roster, the key holder's own record and its own recomputation count. A refusal
must never be turned into a partial by catching these errors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import grpc

from clients.connection import Connection, verify_release
from secagg import constants as C
from secagg.aggregate import Aggregator, EncryptedAggregate
from secagg.ciphertext import EncryptedVector
from secagg.errors import AggregateMismatch, AlreadyDecrypted, SignatureInvalid, WrongRound
from secagg.proto import service_pb2 as pb
from secagg.protocol.policy import check_decryption
from secagg.protocol.roster import Roster
from secagg.protocol.statements import UploadStatement


def check_task(roster: Roster, task: pb.DecryptionTask) -> list[UploadStatement]:
    """The task's contributions as signature-checked statements that pass the policy.

    Raises
    ------
    MalformedStatement
        A contribution's fields cannot form an upload statement.
    UnknownParty
        A contribution names a client the roster does not know.
    SignatureInvalid
        A contribution's signature does not verify under the client's roster key.
    PolicyViolation
        A child per rule of :func:`~secagg.protocol.policy.check_decryption` (too few
        contributors, duplicate client, mixed global models, weight share, ε, ...).
    """
    statements = [
        UploadStatement.from_contribution(roster.deployment_id, task.round, c).verify(roster)
        for c in task.contributions
    ]
    check_decryption(
        roster.policy,
        roster.params,
        task.round,
        statements,
        initial_model_hash=roster.initial_model_hash,
    )
    return statements


def check_round_closed(conn: Connection, task: pb.DecryptionTask) -> None:
    """The task's round must no longer collect uploads (raises :class:`WrongRound`)."""
    info = conn.call(conn.stub.GetRound, pb.Empty())
    if info.round == task.round and info.state == pb.COLLECTING:
        raise WrongRound(f"round {task.round} is still collecting uploads")


def check_not_decrypted(decrypted: Mapping[int, bytes], task: pb.DecryptionTask) -> None:
    """No other aggregate of the round was decrypted here (raises :class:`AlreadyDecrypted`)."""
    done = decrypted.get(task.round)
    if done is not None and done != task.aggregate_digest:
        raise AlreadyDecrypted(f"round {task.round} was already decrypted with another aggregate")


def check_not_released(conn: Connection, roster: Roster, task: pb.DecryptionTask) -> None:
    """No validly signed release of the round exists (raises :class:`AlreadyDecrypted`).

    A release whose signature does not verify is ignored (the server cannot block a
    decryption by presenting garbage).
    """
    try:
        release = conn.stub.GetRelease(
            pb.ReleaseQuery(round=task.round), timeout=C.RPC_TIMEOUT_SECONDS
        )
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.NOT_FOUND:
            raise
        return
    try:
        verify_release(release, roster)
    except SignatureInvalid:
        return
    raise AlreadyDecrypted(f"round {task.round} was already decrypted and released")


def recompute_aggregate(
    conn: Connection,
    roster: Roster,
    task: pb.DecryptionTask,
    contributions: Sequence[UploadStatement],
    *,
    public_key_id: bytes,
) -> EncryptedAggregate:
    """The task's aggregate, once it equals the weighted sum of the listed ciphertexts.

    Raises
    ------
    AggregateMismatch
        The aggregate or a listed ciphertext does not parse, the aggregate's digest is
        not the task's, or it is not the weighted sum of the listed ciphertexts.
    """
    params = roster.params
    aggregate = EncryptedAggregate.from_bytes(conn.download(task.aggregate_hash), params)
    if aggregate.digest != task.aggregate_digest:
        raise AggregateMismatch("aggregate digest does not match the task")
    recomputed = Aggregator(params, public_key_id=public_key_id, length=aggregate.vector.length)
    for c in contributions:
        blob = conn.download(c.ciphertext_hash)
        recomputed.add(EncryptedVector.from_bytes(blob, params), c.weight)
    if recomputed.result().digest != aggregate.digest:
        raise AggregateMismatch("aggregate does not equal the weighted sum of the listed uploads")
    return aggregate


def verified_aggregate(
    conn: Connection,
    roster: Roster,
    task: pb.DecryptionTask,
    *,
    decrypted: Mapping[int, bytes],
    public_key_id: bytes,
) -> EncryptedAggregate:
    """Every check, in order; the aggregate this key holder may partially decrypt.

    ``decrypted`` is the key holder's own record (round -> aggregate digest). Raises the
    errors of :func:`check_task`, :func:`check_round_closed`, :func:`check_not_decrypted`,
    :func:`check_not_released` and :func:`recompute_aggregate`.
    """
    contributions = check_task(roster, task)
    check_round_closed(conn, task)
    check_not_decrypted(decrypted, task)
    check_not_released(conn, roster, task)
    return recompute_aggregate(conn, roster, task, contributions, public_key_id=public_key_id)
