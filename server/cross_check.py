"""The cross-check of a round's quorums: every one decrypts, all must agree, else evidence.

Decryption is exact modulo the plaintext modulus, so every honest quorum decodes the
round's aggregate to the same model bytes. :func:`decrypt_family` combines each quorum's
stored partials with the stored aggregate chunk by chunk (every chunk checked against
its file's head), all quorums in one pass, comparing their values chunk by chunk: memory
is the model (8 bytes per value) plus O(chunk). :func:`record_disagreement` is what the
server does when the models differ: it logs a
:class:`~secagg.protocol.audit_entries.DisagreementEntry` (the tasks, their quorums, the
digests of the signed partials already in the log as ``partial`` entries, and the
deviating key holder when :func:`~secagg.protocol.quorums.deviator` can name it), marks
the tasks DISAGREED so the round gets no further task, and sets the round's status to
:class:`~secagg.errors.PartialsDisagree`. Nothing is released.

Security
--------
The models of a disagreeing family are never stored or sent: only their SHA-256 is
logged. Which of them is right is not decided by majority (with one deviator most
quorums may contain it); the operator acts on the named key holder and the evidence.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from contextlib import ExitStack

import numpy as np

from secagg.chunk_file import ChunkFile
from secagg.chunked import AggregateHead, PartialHead
from secagg.errors import PartialsDisagree
from secagg.protocol.audit_entries import DisagreementEntry
from secagg.protocol.model_blob import encode_model
from secagg.protocol.quorums import deviator, flatten
from secagg.protocol.status import RoundStatus
from secagg.protocol.stored_chunks import (
    check_quorum,
    decrypt_stored,
    decrypted_chunks,
    open_aggregate,
    open_partial,
)
from server.context import Context
from server.state import Task, TaskState
from server.store.base import PartialRecord

log = logging.getLogger("secagg.server")


def partial_records(ctx: Context, task: Task) -> list[PartialRecord]:
    """A task's stored partials in quorum order."""
    by_keyholder = {r.keyholder: r for r in ctx.store.answers(task.task_id, PartialRecord)}
    return [by_keyholder[i] for i in task.quorum]


def _open_family(
    ctx: Context, stack: ExitStack, tasks: Sequence[Task]
) -> tuple[tuple[ChunkFile, AggregateHead], list[list[tuple[ChunkFile, PartialHead]]]]:
    """The family's aggregate file and each quorum's partial files, heads checked."""
    params, digest = ctx.params, tasks[0].aggregate_hash
    file, head = open_aggregate(ctx.blobs.path(digest), params, tasks[0].aggregate_digest)
    stack.callback(file.close)
    quorums = []
    for task in tasks:
        members = []
        for record in partial_records(ctx, task):
            path = ctx.blobs.path(record.partial_hash)
            part_file, part_head = open_partial(path, params, record.partial_digest)
            stack.callback(part_file.close)
            members.append((part_file, part_head))
        check_quorum(head, [h for _, h in members], task.quorum)
        quorums.append(members)
    return (file, head), quorums


def decrypt_family(ctx: Context, tasks: Sequence[Task], round_number: int) -> list[bytes]:
    """The model blob (as it would be released) each complete task decrypts, in task order.

    Raises what :func:`~secagg.threshold.combine` raises for partials it cannot combine
    (:class:`~secagg.errors.InvalidPartialDecryption`, :class:`~secagg.errors.QuorumNotMet`),
    and :class:`~secagg.errors.InvalidCiphertext` for a stored aggregate that is not the
    task's.
    """
    if len({t.aggregate_hash for t in tasks}) > 1:
        return [decrypt_family(ctx, [t], round_number)[0] for t in tasks]
    with ExitStack() as stack:
        aggregate, quorums = _open_family(ctx, stack, tasks)
        values = np.empty(aggregate[1].vector.length, dtype=np.float64)
        differs = [False] * len(quorums)
        start = 0
        for per_quorum in decrypted_chunks(aggregate, quorums):
            first = per_quorum[0]
            values[start : start + first.size] = first
            start += first.size
            for k, other in enumerate(per_quorum[1:], 1):
                differs[k] = differs[k] or other.tobytes() != first.tobytes()
        model = encode_model(round_number + 1, values)
        del values
        return [
            encode_model(round_number + 1, decrypt_stored(aggregate, quorums[k])) if bad else model
            for k, bad in enumerate(differs)
        ]


def record_disagreement(ctx: Context, tasks: Sequence[Task], models: Sequence[bytes]) -> None:
    """Log the evidence of disagreeing quorums and halt the round (nothing is released)."""
    first = tasks[0]
    named = deviator({t.quorum: m for t, m in zip(tasks, models, strict=True)})
    who = f"key holder {named} deviates" if named else "the deviating key holder cannot be named"
    exc = PartialsDisagree(
        f"{len(tasks)} quorums decrypted the aggregate to {len(set(models))} different "
        f"models; {who}. Nothing released."
    )
    entry = DisagreementEntry(
        round=first.round,
        aggregate_digest=first.aggregate_digest,
        task_ids=tuple(t.task_id for t in tasks),
        quorums=flatten([t.quorum for t in tasks]),
        model_hashes=tuple(hashlib.sha256(m).digest() for m in models),
        partial_digests=tuple(r.partial_digest for t in tasks for r in partial_records(ctx, t)),
        keyholder=named or 0,
    )
    with ctx.store.transaction():
        ctx.audit.record(entry)
        for task in tasks:
            ctx.store.set_task_state(task.task_id, TaskState.DISAGREED)
        ctx.set_status(first.round, RoundStatus.violation(exc))
    ctx.parsed.forget(task_ids={t.task_id for t in tasks}, aggregate_hashes=set())
    log.error("round %d: %s", first.round, exc)
