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
   weighted sum of the listed ciphertexts, recomputed here (O(clients x model) work),
   no ciphertext is listed twice under another encoding, and none was decrypted over
   before in another (round, aggregate) — the key holder's own durable record.

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

from clients.connection import Connection
from clients.keyholder.record import Decryption
from secagg.aggregate import Aggregator, EncryptedAggregate
from secagg.ciphertext import EncryptedVector
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


def download_aggregate(
    conn: Connection, roster: Roster, task: pb.DecryptionTask
) -> EncryptedAggregate:
    """The task's aggregate, parsed; raises :class:`AggregateMismatch` if its digest differs."""
    aggregate = EncryptedAggregate.from_bytes(conn.download(task.aggregate_hash), roster.params)
    if aggregate.digest != task.aggregate_digest:
        raise AggregateMismatch("aggregate digest does not match the task")
    return aggregate


@dataclass(frozen=True)
class Recomputed:
    """An aggregate this key holder recomputed, and the content digests of its ciphertexts."""

    aggregate: EncryptedAggregate
    ciphertext_digests: tuple[bytes, ...]


def recompute_aggregate(
    conn: Connection,
    roster: Roster,
    task: pb.DecryptionTask,
    contributions: Sequence[UploadStatement],
    *,
    public_key_id: bytes,
) -> Recomputed:
    """The task's aggregate, once it equals the weighted sum of the listed ciphertexts.

    Raises
    ------
    AggregateMismatch
        The aggregate or a listed ciphertext does not parse, the aggregate's digest is
        not the task's, or it is not the weighted sum of the listed ciphertexts.
    DuplicateCiphertext
        Two listed blobs (different hashes) hold the same ciphertext: a copy re-encoded
        to pass the policy's hash comparison.
    """
    params = roster.params
    aggregate = download_aggregate(conn, roster, task)
    recomputed = Aggregator(params, public_key_id=public_key_id, length=aggregate.vector.length)
    digests: list[bytes] = []
    for c in contributions:
        vector = EncryptedVector.from_bytes(conn.download(c.ciphertext_hash), params)
        if vector.digest in digests:
            raise DuplicateCiphertext(
                f"{c.client_id}'s ciphertext is another listed one, re-encoded (a copied upload)"
            )
        digests.append(vector.digest)
        recomputed.add(vector, c.weight)
    if recomputed.result().digest != aggregate.digest:
        raise AggregateMismatch("aggregate does not equal the weighted sum of the listed uploads")
    return Recomputed(aggregate, tuple(digests))


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
