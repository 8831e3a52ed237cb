"""The key holder's endorsement of a model: combine the partials itself, then vouch for it.

An ENDORSE task lists the round's certified aggregate (with its lock certificate), the
signed partials of every quorum the server combined, and the model hash the server
proposes to release. :func:`endorsed_model` streams each quorum's partials
(``DownloadChunked``), checks each partial's head (its digest is the one its key holder
signed, its shape fits the aggregate, its quorum) and each chunk against its head,
combines them chunk by chunk in lockstep with the ``c0`` chunks of its own aggregate
file (the one it recomputed; a certified one streamed from the server if it has none),
requires every quorum to give the same model blob and every value to lie within the
parameter set's value bound, and returns the model's hash and the quorums it checked;
the agent then signs an
:class:`~secagg.protocol.statements.EndorsementStatement`.

Security
--------
Clients accept a global model only with ``t`` endorsements, so at least one honest key
holder did this work: a server cannot release a model that is not the decryption of the
certified aggregate (a crafted "trap" model), nor one whose quorums disagreed. An
endorsement reveals nothing new: the partials were already sent to the server. The model
must have been cross-checked fully
(:func:`secagg.protocol.quorums.check_cross_checked`): the quorums leave every ``t - 1``
key holders out of one, so one of them is all honest whoever the corrupt ones are (else
a server and one corrupt key holder could list only quorums that contain it and have a
shifted model endorsed). That needs ``2t - 1`` live key holders.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from clients.connection import Connection
from clients.keyholder.aggregates import aggregate_chunks, fetch_aggregate, own_head
from clients.keyholder.fold import served
from secagg.chunked import AggregateHead, PartialHead, checked_chunks
from secagg.chunked_threshold import check_partial_head, combine_chunk
from secagg.errors import (
    AggregateMismatch,
    InvalidPartialDecryption,
    PartialsDisagree,
)
from secagg.proto import service_pb2 as pb
from secagg.protocol.certificates import check_locks
from secagg.protocol.model_blob import model_blob_prefix
from secagg.protocol.quorums import check_cross_checked, flatten
from secagg.protocol.roster import Roster
from secagg.protocol.statements import PartialStatement, Signed


@dataclass(frozen=True)
class Endorsed:
    """What an endorsement vouches for: the model's hash and the quorums that agreed on it."""

    model_hash: bytes
    checked_quorums: tuple[int, ...]


def _partial_streams(
    conn: Connection,
    roster: Roster,
    task: pb.DecryptionTask,
    aggregate: AggregateHead,
    listed: pb.QuorumPartials,
) -> list[Iterator[tuple[int, npt.NDArray[np.uint64]]]]:
    """One quorum's partials as checked chunk streams, each head checked against the
    aggregate, its quorum and its signer's partial statement first."""
    quorum = tuple(listed.quorum)
    threshold = roster.policy.threshold
    if len(quorum) != threshold or len(set(quorum)) != len(quorum):
        raise InvalidPartialDecryption(f"quorum {quorum} is not {threshold} members")
    if not len(listed.partial_hashes) == len(listed.partial_signatures) == len(quorum):
        raise InvalidPartialDecryption(f"quorum {quorum}: one partial and signature per member")
    streams = []
    for member, digest, signature in zip(
        quorum, listed.partial_hashes, listed.partial_signatures, strict=True
    ):
        statement = PartialStatement(
            roster.deployment_id, task.round, member, digest, aggregate.digest
        )
        Signed(statement, signature).verify(roster)
        stream = served(conn, digest, InvalidPartialDecryption, f"key holder {member}'s partial")
        first = next(stream, None)
        if first is None:
            raise InvalidPartialDecryption(f"the server sent nothing of key holder {member}'s")
        head = PartialHead.from_bytes(first, roster.params)
        if head.digest != digest:
            raise InvalidPartialDecryption(f"key holder {member}'s partial is not the signed one")
        check_partial_head(aggregate, head)
        if (
            head.keyholder_index != member
            or tuple(sorted(head.quorum)) != tuple(sorted(quorum))
            or head.threshold != threshold
        ):
            raise InvalidPartialDecryption(f"partial of key holder {member} answers another quorum")
        streams.append(checked_chunks(head, stream))
    return streams


def _quorum_model_hash(
    conn: Connection,
    roster: Roster,
    task: pb.DecryptionTask,
    aggregate: AggregateHead,
    path: Path,
    listed: pb.QuorumPartials,
) -> bytes:
    """The SHA-256 of the model blob a quorum's partials decrypt the aggregate (file at
    ``path``) to, combined and hashed chunk by chunk, each value within the value bound."""
    vector = aggregate.vector
    bound = roster.params.value_bound
    digest = hashlib.sha256(model_blob_prefix(task.round + 1, vector.length))
    streams = _partial_streams(conn, roster, task, aggregate, listed)
    rows = zip(aggregate_chunks(aggregate, path), *streams, strict=True)
    for index, (own, *parts) in enumerate(rows):
        values = combine_chunk(aggregate, index, own[:, 0], [residues for _, residues in parts])
        if not bool(np.all(np.abs(values) <= bound)):
            raise PartialsDisagree(
                f"quorum {tuple(listed.quorum)} decrypts values beyond the bound {bound:g}"
            )
        digest.update(values.astype("<f8").tobytes())
    return digest.digest()


def certified_aggregate(
    conn: Connection, roster: Roster, task: pb.DecryptionTask, path: Path
) -> AggregateHead:
    """The task's aggregate from the own file at ``path``, else streamed from the server
    into it (checked against the certified digest)."""
    head = own_head(path, roster.params, task.aggregate_digest)
    if head is None:
        head = fetch_aggregate(conn, roster.params, task.aggregate_digest, path)
    return head


def endorsed_model(
    conn: Connection, roster: Roster, task: pb.DecryptionTask, path: Path
) -> Endorsed:
    """The model an ENDORSE task's partials decrypt to, after every check.

    ``path`` is where this key holder keeps its own aggregate of the task's round and
    digest (:func:`clients.keyholder.aggregates.aggregate_path`).

    Raises
    ------
    LockMissing
        The aggregate is not the round's certified one.
    AggregateMismatch
        The aggregate's digest differs from the task's, or the server's model hash is not
        the hash of the model the partials give.
    InvalidPartialDecryption, SignatureInvalid
        A partial that does not fit the aggregate or its quorum, is not signed by its
        key holder, or whose chunks do not match its head.
    PartialsDisagree
        Two quorums give different models, or a value lies outside the value bound.

    Security
    --------
    Memory: one chunk of the aggregate and of each partial at a time; each quorum's model
    blob is hashed as it is combined, never held.
    """
    check_locks(roster, task.round, task.aggregate_digest, task.locks)
    if not task.partials:
        raise InvalidPartialDecryption("no partials to combine")
    check_cross_checked([tuple(q.quorum) for q in task.partials], roster.policy.threshold)
    aggregate = certified_aggregate(conn, roster, task, path)
    hashes = {
        _quorum_model_hash(conn, roster, task, aggregate, path, listed) for listed in task.partials
    }
    if len(hashes) != 1:
        raise PartialsDisagree(
            f"{len(task.partials)} quorums decrypt the aggregate to {len(hashes)} different models"
        )
    (model_hash,) = hashes
    if model_hash != task.model_hash:
        raise AggregateMismatch("the proposed model is not the decryption of the aggregate")
    return Endorsed(model_hash, flatten([tuple(q.quorum) for q in task.partials]))
