"""Checks of the decryption entries: requests, partials, refusals, releases, checkpoints.

What the server cannot forge is what these checks lean on: the key holders' signatures
over their partials, the log heads (Merkle roots) they co-signed when they answered, the lock
certificate logged before every partial, and the threshold of distinct valid partials
and of distinct valid endorsements behind every release (:mod:`.certificates`).
"""

from __future__ import annotations

from secagg.protocol.audit_entries import (
    CheckpointEntry,
    DecryptionRequestEntry,
    PartialEntry,
    RefusalEntry,
    ReleaseEntry,
)

from .certificates import check_endorsed, check_lock_certificate
from .context import At, Verification
from .cross_check import check_checked_quorums
from .recompute import recombined_hash


def check_decryption_request(v: Verification, at: At, entry: DecryptionRequestEntry) -> None:
    """Remembered: partials must answer a logged request, and witness a head that covers it."""
    v.seen.tasks[entry.task_id] = entry
    v.seen.task_seq[entry.task_id] = at.seq


def check_partial(v: Verification, at: At, entry: PartialEntry) -> None:
    """The key holder signed its partial, co-signed the head it was shown, and was shown locks.

    The co-signed head must cover the request the partial answers: a server that showed
    key holders a stale head (from before the round's uploads) could otherwise prune the
    round's entries and re-sign its checkpoints, with every witness head still a prefix.

    A partial with a bad signature is reported here and still counted for its release,
    so that one forged signature yields one error, not two.
    """
    k = entry.keyholder
    keyholder = next((p for p in v.roster.keyholders if p.index == k), None)
    if keyholder is None:
        v.fail(at, f"key holder {k} is not in the roster")
        return
    task = v.seen.tasks.get(entry.task_id)
    if task is None or k not in task.quorum or task.aggregate_digest != entry.aggregate_digest:
        v.fail(at, f"partial of key holder {k} answers no logged decryption request")
    v.signature(at, entry.signed(v.deployment_id))
    check_lock_certificate(v, at, entry)
    requested = v.seen.task_seq.get(entry.task_id, 0)
    if entry.checkpoint_size < requested:
        v.fail(
            at,
            f"key holder {k} co-signed a head of size {entry.checkpoint_size}, older than the "
            f"decryption request it answers (entry {requested}): a stale head witnesses "
            "nothing of the round",
        )
    if not v.head_matches(at, entry.checkpoint_size, entry.checkpoint_head):
        v.fail(
            at,
            f"key holder {k} co-signed a head that is not the Merkle root of entries "
            f"1..{entry.checkpoint_size}",
        )
    v.signature(
        at,
        entry.signed_checkpoint(v.deployment_id),
        field="checkpoint_signature",
        cosigner=keyholder,
        who=f"key holder {k} (checkpoint)",
    )
    v.seen.partials.setdefault(entry.task_id, {})[k] = entry


def check_refusal(v: Verification, at: At, entry: RefusalEntry) -> None:
    """The key holder signed its refusal (task 0: of the round's lock or endorsement)."""
    v.signature(at, entry.signed(v.deployment_id))


def check_release(v: Verification, at: At, entry: ReleaseEntry) -> None:
    """The server signed a release of the round's aggregate, decrypted and endorsed by >= t.

    A key holder counts when its logged partial answers the release's task, is over the
    released aggregate, is one of the release's partial digests and it is in the quorum.
    With the blobs at hand the model is recombined from those partials, and from those of
    every other checked quorum (:mod:`.cross_check`); ``t`` key holders must have
    endorsed the released model (:func:`.certificates.check_endorsed`). The last two are
    checked only when the threshold of partials is met: one error per forged release.
    """
    r = entry.round
    v.signature(at, entry.signed(v.deployment_id), field="server_signature")
    aggregate = v.seen.aggregates.get(r)
    if aggregate is None or aggregate.aggregate_digest != entry.aggregate_digest:
        v.fail(at, f"release of round {r} is not of the round's logged aggregate")
    valid = {
        k: p
        for k, p in v.seen.partials.get(entry.task_id, {}).items()
        if p.aggregate_digest == entry.aggregate_digest
        and p.partial_digest in entry.partial_digests
        and k in entry.quorum
    }
    t = v.roster.policy.threshold
    if len(valid) < t or len(set(entry.quorum)) != len(entry.quorum):
        v.fail(
            at,
            f"release of round {r} has {len(valid)} valid distinct partial decryptions; "
            f"threshold {t}",
        )
    if aggregate is not None and len(valid) >= t:
        digest = recombined_hash(v, at, r, aggregate, valid)
        if digest is not None and digest != entry.model_hash:
            v.fail(at, f"released model of round {r} is not what its quorum decrypted")
    if len(valid) >= t and len(set(entry.quorum)) == len(entry.quorum):
        check_checked_quorums(v, at, entry, aggregate)  # one error per forged release
        check_endorsed(v, at, entry)
    v.seen.released[r] = entry.model_hash
    report = v.round(r)
    report.quorum, report.released_model = sorted(valid), entry.model_hash.hex()


def check_checkpoint(v: Verification, at: At, entry: CheckpointEntry) -> None:
    """The server signed the Merkle root of the entries before it."""
    if not v.head_matches(at, entry.size, entry.head):
        v.fail(at, f"head is not the Merkle root of entries 1..{entry.size}: an entry was altered")
    v.signature(at, entry.signed(v.deployment_id), field="server_signature")
