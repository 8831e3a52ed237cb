"""The key holder's endorsement of a model: combine the partials itself, then vouch for it.

An ENDORSE task lists the round's certified aggregate (with its lock certificate), the
signed partials of every quorum the server combined, and the model hash the server
proposes to release. :func:`endorsed_model` downloads everything, checks every partial
(its shape against the aggregate, its quorum, its key holder's signature), combines each
quorum itself, requires every quorum to give the same model blob and every value to lie
within the parameter set's value bound, and returns the model's hash and the quorums it
checked; the agent then signs an
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
from dataclasses import dataclass

import numpy as np

from clients.connection import Connection
from clients.keyholder.checks import download_aggregate
from secagg.aggregate import EncryptedAggregate
from secagg.errors import (
    AggregateMismatch,
    InvalidPartialDecryption,
    PartialsDisagree,
)
from secagg.proto import service_pb2 as pb
from secagg.protocol.certificates import check_locks
from secagg.protocol.model_blob import encode_model
from secagg.protocol.quorums import check_cross_checked, flatten
from secagg.protocol.roster import Roster
from secagg.protocol.statements import PartialStatement, Signed
from secagg.threshold import PartialDecryption, check_partial, combine


@dataclass(frozen=True)
class Endorsed:
    """What an endorsement vouches for: the model's hash and the quorums that agreed on it."""

    model_hash: bytes
    checked_quorums: tuple[int, ...]


def _quorum_partials(
    conn: Connection,
    roster: Roster,
    task: pb.DecryptionTask,
    aggregate: EncryptedAggregate,
    listed: pb.QuorumPartials,
) -> list[PartialDecryption]:
    """One quorum's partials, each checked against the aggregate and its signer."""
    quorum = tuple(listed.quorum)
    if len(quorum) != roster.policy.threshold or len(set(quorum)) != len(quorum):
        raise InvalidPartialDecryption(f"quorum {quorum} is not {roster.policy.threshold} members")
    if not len(listed.partial_hashes) == len(listed.partial_signatures) == len(quorum):
        raise InvalidPartialDecryption(f"quorum {quorum}: one partial and signature per member")
    parts = []
    for member, blob_hash, signature in zip(
        quorum, listed.partial_hashes, listed.partial_signatures, strict=True
    ):
        part = PartialDecryption.from_bytes(conn.download(blob_hash), roster.params)
        check_partial(aggregate, part)
        if part.keyholder_index != member or tuple(sorted(part.quorum)) != tuple(sorted(quorum)):
            raise InvalidPartialDecryption(f"partial of key holder {member} answers another quorum")
        statement = PartialStatement(
            roster.deployment_id, task.round, member, part.digest, aggregate.digest
        )
        Signed(statement, signature).verify(roster)
        parts.append(part)
    return parts


def endorsed_model(conn: Connection, roster: Roster, task: pb.DecryptionTask) -> Endorsed:
    """The model an ENDORSE task's partials decrypt to, after every check.

    Raises
    ------
    LockMissing
        The aggregate is not the round's certified one.
    AggregateMismatch
        The aggregate's digest differs from the task's, or the server's model hash is not
        the hash of the model the partials give.
    InvalidPartialDecryption, SignatureInvalid
        A partial that does not fit the aggregate or its quorum, or is not signed by its
        key holder.
    PartialsDisagree
        Two quorums give different models, or a value lies outside the value bound.
    """
    check_locks(roster, task.round, task.aggregate_digest, task.locks)
    if not task.partials:
        raise InvalidPartialDecryption("no partials to combine")
    check_cross_checked([tuple(q.quorum) for q in task.partials], roster.policy.threshold)
    aggregate = download_aggregate(conn, roster, task)
    bound = roster.params.value_bound
    models: list[bytes] = []
    for listed in task.partials:
        parts = _quorum_partials(conn, roster, task, aggregate, listed)
        mean = combine(aggregate, parts)
        if not bool(np.all(np.abs(mean) <= bound)):
            raise PartialsDisagree(
                f"quorum {tuple(listed.quorum)} decrypts values beyond the bound {bound:g}"
            )
        models.append(encode_model(task.round + 1, mean))
    if len(set(models)) != 1:
        raise PartialsDisagree(
            f"{len(models)} quorums decrypt the aggregate to {len(set(models))} different models"
        )
    model_hash = hashlib.sha256(models[0]).digest()
    if model_hash != task.model_hash:
        raise AggregateMismatch("the proposed model is not the decryption of the aggregate")
    return Endorsed(model_hash, flatten([tuple(q.quorum) for q in task.partials]))
