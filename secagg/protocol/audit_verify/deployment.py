"""Checks of the entries that set a deployment up: roster, key ceremony, joint public key."""

from __future__ import annotations

import hashlib

from secagg import constants as C
from secagg.proto import service_pb2 as pb
from secagg.protocol.audit_entries import CeremonyEntry, PublicKeyEntry, RosterEntry
from secagg.protocol.ceremony import TRANSCRIPT_KINDS, contribution_digest_hash, transcript_hash
from secagg.protocol.exact_float import exact_json

from .context import At, Verification


def check_roster(v: Verification, at: At, entry: RosterEntry) -> None:
    """The first entry names the roster (by hash), parameters and policy of roster.toml
    (the policy's floats as exact text, :mod:`secagg.protocol.exact_float`)."""
    if at.seq != 1:
        v.fail(at, "the roster must be the first entry")
    roster = v.roster
    if (
        entry.roster_sha256 != hashlib.sha256(v.layout.roster.read_bytes()).digest()
        or entry.deployment_id != roster.deployment_id
        or entry.params_id != roster.params.id
        or entry.policy != exact_json(roster.policy.as_dict())
    ):
        v.fail(at, "logged roster does not match roster.toml")


def check_ceremony(v: Verification, at: At, entry: CeremonyEntry) -> None:
    """A key holder signed the relayed message; a logged body matches its hash; every
    contribution matches its sender's logged commitment ``H(b_i)``.

    The commitment is over the contribution's SHA-256 (:func:`contribution_digest_hash`),
    which the log keeps, so the check needs no contribution body. A log written before
    KEY_COMMIT bodies were logged in full gets a warning instead. Endorsements (the body
    is the joint public key's id) are remembered per key epoch for :func:`check_public_key`.
    Every TRANSCRIPT a key holder signed must hash the logged messages it covers: the log
    shows what the key holders agreed on, not another set of messages.
    """
    kind = pb.CeremonyKind.Value(entry.kind)  # ValueError: an unknown kind is malformed
    v.signature(at, entry.signed(v.deployment_id, kind))
    if entry.body and hashlib.sha256(entry.body).digest() != entry.body_sha256:
        v.fail(at, "body does not match its hash")
    if kind in TRANSCRIPT_KINDS:
        by_kind = v.seen.transcribed.setdefault(entry.epoch, {})
        by_kind.setdefault(kind, {})[entry.sender] = entry.body_sha256
    if kind == pb.TRANSCRIPT:
        _check_transcript(v, at, entry)
    elif kind == pb.KEY_COMMIT:
        v.seen.key_commits[entry.epoch, entry.sender] = entry.body
    elif kind == pb.KEY_CONTRIBUTION:
        _check_contribution(v, at, entry)
    elif kind == pb.ENDORSEMENT:
        v.seen.endorsements.setdefault(entry.epoch, {})[entry.sender] = entry.body


def _check_contribution(v: Verification, at: At, entry: CeremonyEntry) -> None:
    who = f"key holder {entry.sender}"
    commitment = v.seen.key_commits.get((entry.epoch, entry.sender))
    if commitment is None:
        v.fail(at, f"contribution of {who} logged before its commitment")
    elif not commitment:
        v.warn(at, f"contribution of {who} not checked: its commitment's body was not logged")
    elif commitment[: C.DIGEST_BYTES] != contribution_digest_hash(
        v.deployment_id, entry.sender, entry.body_sha256, epoch=entry.epoch
    ):
        v.fail(at, f"contribution of {who} does not match its logged commitment")


def _check_transcript(v: Verification, at: At, entry: CeremonyEntry) -> None:
    digests = v.seen.transcribed.get(entry.epoch, {})
    n = len(v.roster.keyholders)
    if any(len(digests.get(kind, {})) != n for kind in TRANSCRIPT_KINDS):
        v.fail(at, f"transcript of key holder {entry.sender} logged before the messages it covers")
    elif entry.body != transcript_hash(v.deployment_id, epoch=entry.epoch, digests=digests):
        v.fail(at, f"transcript of key holder {entry.sender} does not match the logged messages")


def check_public_key(v: Verification, at: At, entry: PublicKeyEntry) -> None:
    """Every key holder endorsed exactly this joint public key in one key epoch, later
    than the previous joint public key's."""
    v.seen.public_key_id = entry.id
    everyone = {k.index for k in v.roster.keyholders}
    epochs = [
        epoch
        for epoch, by_sender in sorted(v.seen.endorsements.items())
        if epoch > v.seen.public_key_epoch
        and by_sender.keys() == everyone
        and set(by_sender.values()) == {entry.id}
    ]
    if not epochs:
        v.fail(
            at,
            "the joint public key lacks endorsements by every key holder in one key epoch "
            f"after epoch {v.seen.public_key_epoch}",
        )
        return
    v.seen.public_key_epoch = epochs[0]
