"""The checks a key holder makes before it partially decrypts an aggregate.

Three stages, each raising a precise :class:`~secagg.errors.SecAggError` child whose
``reason`` goes into the signed refusal:

1. :func:`check_task` (no network): every listed contribution is a client's signed
   :class:`~secagg.protocol.statements.UploadStatement` for the task's round, and the
   contributor set passes :func:`secagg.protocol.policy.check_decryption` — the same
   rules the server and ``secagg audit verify`` apply (distinct clients and
   ciphertexts, weights within ``min_weight..max_client_weight``, weight share, ε, one
   global model, round in range).
2. :func:`check_not_decrypted`: this key holder locked no other aggregate of the round
   (its own record); a decryption task must also carry a lock certificate
   (:func:`secagg.protocol.certificates.check_locks`): enough key holders locked this
   aggregate that no other aggregate of the round can ever be certified.
3. :func:`recompute_aggregate` then :func:`check_not_replayed`: the aggregate equals the
   weighted sum of the listed ciphertexts, recomputed here from the round's fold
   (:mod:`clients.keyholder.fold`: most uploads were folded while the round collected,
   so O(one upload) of work is left), no ciphertext is listed twice, and none was
   decrypted over before in another (round, aggregate) — the key holder's own durable
   record. The signed ``ciphertext_hash`` is the ciphertext's content digest (a root
   over its chunks), so a re-encoded copy has the same hash and is a duplicate.

Security
--------
The task comes from the server, which is not trusted: only signatures checked against
the roster, the key holder's own record and its own recomputation count. A refusal
must never be turned into a partial by catching these errors.

Nothing here asks the server about the round's state (collecting, released): its
answers would protect nothing. One aggregate per round is the lock certificate's job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from clients.connection import Connection
from clients.keyholder.aggregates import own_head
from clients.keyholder.fold import FoldedUpload, Folds
from clients.keyholder.record import Decryption
from secagg.chunked import AggregateHead
from secagg.errors import (
    AggregateMismatch,
    AlreadyDecrypted,
    DuplicateCiphertext,
    ReplayedCiphertext,
)
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


def check_not_decrypted(decrypted: Mapping[int, bytes], task: pb.DecryptionTask) -> None:
    """No other aggregate of the round was locked here (raises :class:`AlreadyDecrypted`)."""
    done = decrypted.get(task.round)
    if done is not None and done != task.aggregate_digest:
        raise AlreadyDecrypted(f"round {task.round} is locked to another aggregate here")


@dataclass(frozen=True)
class Recomputed:
    """An aggregate this key holder recomputed: its head, its chunk file, and the content
    digests of the ciphertexts it sums (the signed ``ciphertext_hash`` of each upload)."""

    head: AggregateHead
    path: Path
    ciphertext_digests: tuple[bytes, ...]


def own_aggregate(folds: Folds, roster: Roster, task: pb.DecryptionTask) -> Recomputed | None:
    """The aggregate of ``task`` this key holder recomputed when it locked, if still kept.

    Its ciphertexts were recorded then; none are listed again.
    """
    path = folds.aggregate_path(task.round, task.aggregate_digest)
    head = own_head(path, roster.params, task.aggregate_digest)
    return None if head is None else Recomputed(head, path, ())


def recompute_aggregate(
    conn: Connection,
    folds: Folds,
    task: pb.DecryptionTask,
    contributions: Sequence[UploadStatement],
    *,
    public_key_id: bytes,
) -> Recomputed:
    """The weighted sum of the task's uploads, computed here; it must be the task's aggregate.

    The round's fold (:mod:`clients.keyholder.fold`) is used as it stands if it holds
    exactly the task's uploads; the ones it lacks are folded now; a fold holding anything
    else (an upload the server listed during collection that the task does not) is
    rebuilt from the task's list. The sum is written as the key holder's own aggregate
    file, the one it decrypts (it never downloads the server's).

    Raises
    ------
    DuplicateCiphertext
        The same ciphertext (by its signed content digest) is listed twice.
    AggregateMismatch
        An upload is not served or is not the ciphertext its client signed, or the sum's
        digest is not the task's aggregate digest.
    InvalidCiphertext, InvalidKeyMaterial, WeightBudgetExceeded
        An upload that does not parse, is of another length, under another key than
        ``public_key_id``, or weights that do not fit.
    """
    digests = tuple(c.ciphertext_hash for c in contributions)
    if len(set(digests)) != len(digests):
        raise DuplicateCiphertext("the same ciphertext is listed twice (a copied upload)")
    fold = folds.fold_for(task.round, public_key_id)
    if not fold.folded <= {FoldedUpload.of(c) for c in contributions}:
        fold.reset()
    for upload in contributions:
        fold.fold(conn, upload)
    path = folds.aggregate_path(task.round, task.aggregate_digest)
    head = fold.acc.write(path)
    if head.digest != task.aggregate_digest:
        path.unlink(missing_ok=True)
        raise AggregateMismatch("aggregate does not equal the weighted sum of the listed uploads")
    folds.retire_fold(task.round)  # the aggregate file holds the sum now (disk: one copy)
    return Recomputed(head, path, digests)


def check_not_replayed(
    seen: Mapping[bytes, Decryption], decryption: Decryption, ciphertext_digests: Sequence[bytes]
) -> None:
    """No ciphertext was decrypted over before, except in this very decryption.

    ``seen`` is the key holder's record (content digest -> the round and aggregate it
    was decrypted in). The same (round, aggregate) again is a retry or a new quorum for
    the same aggregate, not a replay.

    Raises
    ------
    ReplayedCiphertext
        A listed ciphertext was decrypted in an earlier round, or in another aggregate.
    """
    for digest in ciphertext_digests:
        earlier = seen.get(digest)
        if earlier is not None and earlier != decryption:
            where = (
                "earlier in this round"
                if earlier.round == decryption.round
                else f"in round {earlier.round}"
            )
            raise ReplayedCiphertext(
                f"ciphertext {digest.hex()[:16]} was already decrypted {where}, "
                f"in aggregate {earlier.aggregate_digest.hex()[:16]}"
            )
