"""Checks of the entries of a collecting round: opening, uploads, withdrawals, aggregate.

The rules an upload and a contributor set must meet come from
:mod:`secagg.protocol.policy`, the functions the server and the key holders call; a
violation is reported with its reason code. Across rounds, each client's ε must never
decrease (:func:`~secagg.protocol.policy.check_epsilon_progress`): a decrease is an error
naming the upload entry and the earlier one it falls below.
"""

from __future__ import annotations

from secagg.errors import EpsilonDecreased, SecAggError
from secagg.protocol.audit_entries import (
    AggregateEntry,
    RoundOpenEntry,
    UploadEntry,
    UploadRejectedEntry,
    WithdrawalEntry,
)
from secagg.protocol.policy import check_decryption, check_epsilon_progress, check_upload
from secagg.protocol.statements import UploadStatement

from .context import SIGNATURE_REFUSED, At, Verification
from .recompute import recompute_aggregate


def check_round_open(v: Verification, at: At, entry: RoundOpenEntry) -> None:
    """Round 1 starts from the roster's initial model, later ones from the last release."""
    r = entry.round
    if r == 1 and entry.global_model_hash != v.roster.initial_model_hash:
        v.fail(at, "round 1 starts from another model than the roster's initial model")
    if r > 1 and v.seen.released.get(r - 1) != entry.global_model_hash:
        v.fail(at, f"round {r} starts from a model that round {r - 1} did not release")
    v.seen.round_model[r] = entry.global_model_hash
    v.round(r)


def check_upload_entry(v: Verification, at: At, entry: UploadEntry) -> None:
    """The client signed it, it is bound to its round's model, fresh, and within policy."""
    r, client = entry.round, entry.client
    if v.roster.role_of(client) != "client":
        v.fail(at, f"{client} is not in the roster")
        return
    signed = entry.signed(v.deployment_id)
    v.signature(at, signed)
    if v.seen.round_model.get(r) != entry.global_model_hash:
        v.fail(at, f"upload of {client} is bound to another global model than round {r}'s")
    uploads = v.seen.uploads.setdefault(r, {})
    if client in uploads or (client, entry.nonce) in v.seen.nonces:
        v.fail(at, f"second upload (or reused nonce) of {client} in round {r}")
    v.policy(at, lambda: check_upload(v.roster.policy, v.roster.params, signed.statement))
    _check_epsilon_progress(v, at, signed.statement)
    uploads[client] = signed.statement
    v.seen.nonces.add((client, entry.nonce))
    report = v.round(r)
    report.uploads += 1
    report.max_epsilon = max(report.max_epsilon, signed.statement.epsilon)
    if signed.statement.dp:
        report.dp_uploads += 1


def _check_epsilon_progress(v: Verification, at: At, s: UploadStatement) -> None:
    """The client's ε is not below the largest of its earlier accepted uploads."""
    earlier = v.seen.max_epsilon.get(s.client_id)
    try:
        check_epsilon_progress(None if earlier is None else earlier[0], s)
    except EpsilonDecreased as exc:
        assert earlier is not None
        v.fail(at, f"{exc.reason}: {exc} (entry {earlier[1]})")
        return
    v.seen.max_epsilon[s.client_id] = (s.epsilon, at.seq)


def check_upload_rejected(v: Verification, at: At, entry: UploadRejectedEntry) -> None:
    """The refused upload's statement is checked like an accepted one's signature.

    The client must have signed it, unless the server refused it for its signature
    (reason ``SignatureInvalid: ...``), in which case the signature must indeed fail. A
    refusal with no statement (the upload brought none) is the server's word only: a
    warning.
    """
    v.round(entry.round).rejected += 1
    if v.roster.role_of(entry.client) != "client":
        v.fail(at, f"{entry.client} is not in the roster")
        return
    if not entry.signature and "signature" not in at.unreadable:
        v.warn(at, f"refusal of an upload by {entry.client} carries no signed statement")
        return
    signed = entry.signed(v.deployment_id)
    if not entry.reason.startswith(SIGNATURE_REFUSED):
        v.signature(at, signed)
        return
    try:
        signed.verify(v.roster)
    except (SecAggError, ValueError):
        return  # refused for a bad signature, and it is bad
    v.fail(at, f"upload of {entry.client} refused for its signature, which is valid")


def check_withdrawal(v: Verification, at: At, entry: WithdrawalEntry) -> None:
    """The client signed its withdrawal."""
    v.signature(at, entry.signed(v.deployment_id))


def check_aggregate(v: Verification, at: At, entry: AggregateEntry) -> None:
    """The aggregate lists exactly the accepted uploads, and they may be decrypted together.

    The contributor set passed to :func:`~secagg.protocol.policy.check_decryption` is
    made of the clients' own signed upload statements (the server cannot forge those),
    one per input the aggregate lists. With the ciphertexts at hand the aggregate is
    recomputed and compared with the logged digest.
    """
    r = entry.round
    accepted = v.seen.uploads.get(r, {})
    expected = {c: (u.ciphertext_hash, u.weight) for c, u in accepted.items()}
    listed = {i.client: (i.ciphertext_hash, i.weight) for i in entry.inputs}
    if listed != expected or len(entry.inputs) != len(listed):
        v.fail(at, f"aggregate of round {r} does not list exactly the accepted uploads")
    total = sum(i.weight for i in entry.inputs)
    if total != entry.total_weight:
        v.fail(at, "total weight does not match the inputs")
    contributors = [accepted[i.client] for i in entry.inputs if i.client in accepted]
    policy, params = v.roster.policy, v.roster.params
    initial = v.roster.initial_model_hash
    v.policy(
        at,
        lambda: check_decryption(policy, params, r, contributors, initial_model_hash=initial),
    )
    report = v.round(r)
    report.contributors, report.total_weight = len(listed), total
    v.seen.aggregates[r] = entry
    report.aggregate_recomputed = recompute_aggregate(v, at, entry)
