"""Checks of the key holders' certificates: round locks and model endorsements.

The rules are those of :mod:`secagg.protocol.certificates`, which key holders and
clients enforce on the wire; here they are applied to what the log shows, in log order:

* a ``lock`` entry is signed by its key holder and names its round's logged aggregate;
  a key holder with valid locks on two aggregates of one round equivocated;
* every ``partial`` has, logged before it, valid locks by at least
  :func:`~secagg.protocol.certificates.lock_size` distinct key holders on its round and
  aggregate (the lock certificate the key holder must have seen);
* an ``endorsement`` is signed by its key holder, names its round's logged aggregate and
  lists well-formed quorums;
* a ``release`` has, logged before it, valid endorsements by at least ``t`` distinct key
  holders of exactly its (round, aggregate digest, model hash).

Security
--------
Only signatures that verify against the roster count: the server writes the log and
could log a lock or an endorsement nobody signed. A forged certificate is reported at its
own entry and, since it does not count, again where a certificate it was to complete is
needed. The ``operator`` flag of a decryption request is the server's word, so it exempts
no partial: key holders require a lock certificate for every decryption task.
"""

from __future__ import annotations

from secagg.protocol.audit_entries import EndorsementEntry, LockEntry, PartialEntry, ReleaseEntry
from secagg.protocol.certificates import lock_size
from secagg.protocol.quorums import unflatten

from .context import At, Verification
from .report import EndorsementReport


def _on_logged_aggregate(v: Verification, round_number: int, aggregate_digest: bytes) -> bool:
    aggregate = v.seen.aggregates.get(round_number)
    return aggregate is not None and aggregate.aggregate_digest == aggregate_digest


def check_lock(v: Verification, at: At, entry: LockEntry) -> None:
    """Signed by its key holder, on the round's logged aggregate, and not equivocating."""
    r, k, digest = entry.round, entry.keyholder, entry.aggregate_digest
    valid = v.signature(at, entry.signed(v.deployment_id))
    logged = _on_logged_aggregate(v, r, digest)
    if not logged:
        v.fail(at, f"lock of key holder {k} is not on round {r}'s logged aggregate")
    if not valid:
        return
    if v.seen.locked_to.setdefault((r, k), digest) != digest:
        v.fail(at, f"key holder {k} equivocated: it locked round {r} to two aggregates")
    holders = v.seen.lock_holders.setdefault((r, digest), set())
    holders.add(k)
    if logged:
        v.round(r).locked_by = sorted(holders)


def check_lock_certificate(v: Verification, at: At, entry: PartialEntry) -> None:
    """Enough distinct key holders validly locked the partial's round and aggregate before it."""
    policy = v.roster.policy
    need = lock_size(policy.keyholders, policy.threshold)
    have = len(v.seen.lock_holders.get((entry.round, entry.aggregate_digest), ()))
    if have < need:
        v.fail(
            at,
            f"partial of key holder {entry.keyholder} decrypted without a lock certificate: "
            f"{have} valid locks on its aggregate, {need} needed",
        )


def check_endorsement(v: Verification, at: At, entry: EndorsementEntry) -> None:
    """Signed by its key holder, of the round's logged aggregate, with well-formed quorums."""
    r, k = entry.round, entry.keyholder
    valid = v.signature(at, entry.signed(v.deployment_id))
    if not _on_logged_aggregate(v, r, entry.aggregate_digest):
        v.fail(at, f"endorsement of key holder {k} is not of round {r}'s logged aggregate")
    try:
        quorums = unflatten(entry.checked_quorums, v.roster.policy.threshold)
    except ValueError as exc:
        v.fail(at, f"endorsement of key holder {k} lists malformed quorums: {exc}")
        return
    if valid:
        endorsed = (r, entry.aggregate_digest, entry.model_hash)
        checked = [list(q) for q in quorums]
        v.seen.endorsers.setdefault(endorsed, {}).setdefault(k, checked)


def check_endorsed(v: Verification, at: At, entry: ReleaseEntry) -> None:
    """At least ``t`` distinct key holders validly endorsed exactly this release before it.

    The endorsements that count are reported with the quorums each endorser checked.
    """
    r = entry.round
    endorsers = v.seen.endorsers.get((r, entry.aggregate_digest, entry.model_hash), {})
    v.round(r).endorsements = [
        EndorsementReport(k, checked) for k, checked in sorted(endorsers.items())
    ]
    t = v.roster.policy.threshold
    if len(endorsers) < t:
        v.fail(
            at,
            f"release of round {r} has {len(endorsers)} valid key-holder endorsements of its "
            f"model; threshold {t}",
        )
