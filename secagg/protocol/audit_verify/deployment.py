"""Checks of the entries that set a deployment up: roster, key ceremony, joint public key."""

from __future__ import annotations

import hashlib

from secagg.proto import service_pb2 as pb
from secagg.protocol.audit_entries import CeremonyEntry, PublicKeyEntry, RosterEntry
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
    """A key holder signed the relayed message; a logged body matches its hash.

    Endorsements (the body is the joint public key's id) are remembered for
    :func:`check_public_key`.
    """
    kind = pb.CeremonyKind.Value(entry.kind)  # ValueError: an unknown kind is malformed
    v.signature(at, entry.signed(v.deployment_id, kind))
    if entry.body and hashlib.sha256(entry.body).digest() != entry.body_sha256:
        v.fail(at, "body does not match its hash")
    if kind == pb.ENDORSEMENT:
        v.seen.endorsed.add(entry.sender)
        v.seen.endorsement = entry.body


def check_public_key(v: Verification, at: At, entry: PublicKeyEntry) -> None:
    """Every key holder endorsed exactly this joint public key."""
    v.seen.public_key_id = entry.id
    if v.seen.endorsed != {k.index for k in v.roster.keyholders}:
        v.fail(at, "the joint public key lacks endorsements from some key holders")
    if v.seen.endorsement != entry.id:
        v.fail(at, "endorsements name another public key")
