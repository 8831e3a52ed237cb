"""Checks of the cross-checking quorums: a release's checked quorums and a disagreement.

A release lists every quorum that decrypted the round's aggregate before it
(``checked_quorums``; empty means its own quorum only); each one must have logged,
signed partials of all its members over the released aggregate, and, with the blobs at
hand, each must recombine to the released model. A ``disagreement`` entry must point at
logged tasks and partials, list models that do differ, and name the deviator exactly
when :func:`~secagg.protocol.quorums.deviator` can.
"""

from __future__ import annotations

from secagg.protocol.audit_entries import (
    AggregateEntry,
    DisagreementEntry,
    PartialEntry,
    ReleaseEntry,
)
from secagg.protocol.quorums import Quorum, deviator, unflatten

from .context import At, Verification
from .recompute import recombined_hash


def _quorums(v: Verification, at: At, flat: tuple[int, ...]) -> tuple[Quorum, ...]:
    try:
        return unflatten(flat, v.roster.policy.threshold)
    except ValueError as exc:
        v.fail(at, f"quorums are malformed: {exc}")
        return ()


def _task_partials(
    v: Verification, task_id: int, round_number: int, quorum: Quorum, aggregate_digest: bytes
) -> dict[int, PartialEntry] | None:
    """The logged partials of every member of a logged task of that quorum and aggregate."""
    task = v.seen.tasks.get(task_id)
    if (
        task is None
        or task.round != round_number
        or tuple(task.quorum) != quorum
        or task.aggregate_digest != aggregate_digest
    ):
        return None
    partials = v.seen.partials.get(task_id, {})
    found = {k: partials[k] for k in quorum if k in partials}
    if len(found) != len(quorum) or any(
        p.aggregate_digest != aggregate_digest for p in found.values()
    ):
        return None
    return found


def _quorum_partials(
    v: Verification, round_number: int, quorum: Quorum, aggregate_digest: bytes
) -> dict[int, PartialEntry] | None:
    for task_id in sorted(v.seen.tasks):
        found = _task_partials(v, task_id, round_number, quorum, aggregate_digest)
        if found is not None:
            return found
    return None


def check_checked_quorums(
    v: Verification, at: At, entry: ReleaseEntry, aggregate: AggregateEntry | None
) -> None:
    """Every checked quorum answered over the released aggregate and decrypts its model."""
    r = entry.round
    if not entry.checked_quorums:
        return  # only the release's own quorum decrypted (checked by check_release)
    quorums = _quorums(v, at, entry.checked_quorums)
    if tuple(entry.quorum) not in quorums:
        v.fail(at, f"release of round {r}: its quorum is not among its checked quorums")
    for quorum in quorums:
        partials = _quorum_partials(v, r, quorum, entry.aggregate_digest)
        if partials is None:
            v.fail(
                at,
                f"release of round {r}: checked quorum {list(quorum)} has no logged partials "
                "over the released aggregate",
            )
        elif aggregate is not None and quorum != tuple(entry.quorum):
            digest = recombined_hash(v, at, r, aggregate, partials, warn_missing=False)
            if digest is not None and digest != entry.model_hash:
                v.fail(
                    at, f"released model of round {r} is not what quorum {list(quorum)} decrypted"
                )


def check_disagreement(v: Verification, at: At, entry: DisagreementEntry) -> None:
    """The evidence of disagreeing quorums is logged, differs, and names the right deviator."""
    r = entry.round
    quorums = _quorums(v, at, entry.quorums)
    t = v.roster.policy.threshold
    if not (
        len(entry.task_ids) == len(quorums) == len(entry.model_hashes)
        and len(entry.partial_digests) == len(quorums) * t
    ):
        v.fail(at, f"disagreement of round {r}: tasks, quorums and digests do not line up")
        return
    aggregate = v.seen.aggregates.get(r)
    for i, (task_id, quorum) in enumerate(zip(entry.task_ids, quorums, strict=True)):
        partials = _task_partials(v, task_id, r, quorum, entry.aggregate_digest)
        listed = entry.partial_digests[i * t : (i + 1) * t]
        if partials is None or tuple(partials[k].partial_digest for k in quorum) != listed:
            v.fail(at, f"disagreement of round {r}: task {task_id}'s partials are not logged")
        elif aggregate is not None:
            digest = recombined_hash(v, at, r, aggregate, partials, warn_missing=i == 0)
            if digest is not None and digest != entry.model_hashes[i]:
                v.fail(at, f"disagreement of round {r}: task {task_id} decrypts another model")
    if len(set(entry.model_hashes)) < 2:
        v.fail(at, f"disagreement of round {r} lists models that agree")
    named = deviator(dict(zip(quorums, entry.model_hashes, strict=True))) or 0
    if named != entry.keyholder:
        v.fail(at, f"disagreement of round {r} names key holder {entry.keyholder}, not {named}")
    who = f"key holder {named}" if named else "a key holder that cannot be named"
    v.warn(at, f"round {r}: quorums disagree, nothing released; {who} deviated")
