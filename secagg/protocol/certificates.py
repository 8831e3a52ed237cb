"""The two certificates key holders give: a round's lock, and a released model's endorsement.

Rules, enforced by whoever holds the certificate (key holders, clients, ``secagg audit
verify``); the server only relays them:

* **Lock certificate.** A key holder decrypts an aggregate only when at least
  :func:`lock_size` = ``ceil((n + t) / 2)`` distinct key holders signed a
  :class:`~secagg.protocol.statements.LockStatement` for it. Any two such sets share at
  least ``t`` key holders, hence at least one honest one (at most ``t - 1`` collude), and
  an honest key holder locks one aggregate per round. So a round has at most one
  decryptable aggregate, whatever the server says about the round's state.
* **Endorsements.** A client (or auditor) believes a released model only with ``t``
  distinct key holders' :class:`~secagg.protocol.statements.EndorsementStatement` on the
  release's (round, aggregate digest, model hash). At least one of them is honest: it
  combined the partials itself, so the model is the aggregate's decryption.

Liveness cost
-------------
A round needs ``ceil((n + t) / 2)`` reachable key holders to lock its set, more than the
``t`` a decryption needs: all 3 of the default 3-of-2 deployment, 3 of 4 with ``t = 2``,
4 of 5 with ``t = 3``. Choose ``n >= t + 2`` to tolerate one key holder down at lock time.
"""

from __future__ import annotations

from collections.abc import Iterable

from secagg.errors import EndorsementMissing, LockMissing, SecAggError
from secagg.proto import service_pb2 as pb
from secagg.protocol.roster import Roster
from secagg.protocol.statements import (
    EndorsementStatement,
    LockStatement,
    ReleaseStatement,
    Signed,
)


def lock_size(keyholders: int, threshold: int) -> int:
    """How many key holders must lock a round's aggregate: ``ceil((n + t) / 2)``."""
    return (keyholders + threshold + 1) // 2


def _signers(
    roster: Roster,
    signed: Iterable[tuple[bool, Signed[LockStatement] | Signed[EndorsementStatement]]],
) -> set[int]:
    """Key holders whose statement is about the right thing (the flag) and verifies."""
    valid: set[int] = set()
    for relevant, statement in signed:
        if not relevant:
            continue
        try:
            valid.add(statement.verify(roster).keyholder)
        except SecAggError:
            continue
    return valid


def check_locks(
    roster: Roster, round_number: int, aggregate_digest: bytes, locks: Iterable[pb.Lock]
) -> frozenset[int]:
    """The key holders whose valid locks certify this aggregate for this round.

    Locks on another round or aggregate, from unknown key holders or with bad signatures
    are ignored (the server cannot block a certificate with garbage, nor complete one).

    Raises
    ------
    LockMissing
        Fewer than :func:`lock_size` distinct key holders locked this aggregate.
    """
    valid = _signers(
        roster,
        (
            (
                (lock.round, lock.aggregate_digest) == (round_number, aggregate_digest),
                LockStatement.from_proto(roster.deployment_id, lock),
            )
            for lock in locks
        ),
    )
    need = lock_size(roster.policy.keyholders, roster.policy.threshold)
    if len(valid) < need:
        raise LockMissing(
            f"round {round_number}: {len(valid)} valid locks on this aggregate, {need} needed"
        )
    return frozenset(valid)


def check_endorsements(
    roster: Roster,
    round_number: int,
    aggregate_digest: bytes,
    model_hash: bytes,
    endorsements: Iterable[pb.Endorsement],
) -> frozenset[int]:
    """The key holders whose valid endorsements vouch for this model of this aggregate.

    Raises
    ------
    EndorsementMissing
        Fewer than ``t`` distinct key holders endorsed exactly (round, aggregate, model).
    """
    wanted = (round_number, aggregate_digest, model_hash)
    valid = _signers(
        roster,
        (
            (
                (e.round, e.aggregate_digest, e.model_hash) == wanted,
                EndorsementStatement.from_proto(roster.deployment_id, e),
            )
            for e in endorsements
        ),
    )
    need = roster.policy.threshold
    if len(valid) < need:
        raise EndorsementMissing(
            f"round {round_number}: {len(valid)} key holders endorsed the model, {need} needed"
        )
    return frozenset(valid)


def verify_release(release: pb.Release, roster: Roster) -> ReleaseStatement:
    """The release's statement, once the server's signature and ``t`` endorsements check out.

    Raises
    ------
    SignatureInvalid
        The server's signature does not verify under the roster's server key.
    EndorsementMissing
        Fewer than ``t`` key holders validly endorsed the release's (round, aggregate
        digest, model hash) (:func:`secagg.protocol.certificates.check_endorsements`).

    Security
    --------
    This is the one check every party (clients, the test harness) applies before it
    believes a release; never read a release's fields before it passed. The server's
    signature alone proves nothing about the model: the endorsements do (at least one
    endorser is honest and combined the partials itself). The caller must still check
    that the model it downloads has ``model_hash``.
    """
    statement = ReleaseStatement.from_proto(roster.deployment_id, release).verify(roster)
    check_endorsements(
        roster,
        statement.round,
        statement.aggregate_digest,
        statement.model_hash,
        release.endorsements,
    )
    return statement
