"""The upload and decryption policy: one function per decision, shared by every party.

The server calls :func:`check_upload` before it accepts an upload and
:func:`check_decryption` before it asks for a decryption; every key holder calls
:func:`check_decryption` before it answers; ``secagg audit verify`` calls both on what
the log records. Each rule raises its own :class:`~secagg.errors.PolicyViolation`
child, whose ``reason`` code is what crosses the wire and lands in refusals and reports,
so the three can be compared rule by rule.

Security
--------
These functions check statements; they do not verify signatures (use
:meth:`~secagg.protocol.statements.Signed.verify` first) and they know nothing of the
server's view of round state. A key holder must not take the server's word for
anything these functions are given: it passes statements whose signatures it checked.

Being stateless, they cannot see a ciphertext replayed from an earlier round nor a
ciphertext re-encoded to another hash: each key holder checks those on its own record
(:mod:`clients.keyholder.checks`). Nor do they prove a ciphertext well formed: a client
may still upload a linear combination of other ciphertexts (no zero-knowledge proofs).
"""

from __future__ import annotations

from collections.abc import Sequence

from secagg.errors import (
    DPRequired,
    DuplicateCiphertext,
    DuplicateContributor,
    EpsilonDecreased,
    EpsilonOverBudget,
    MixedGlobalModels,
    RoundOutOfRange,
    SizeLimitExceeded,
    TooFewContributors,
    UnexpectedGlobalModel,
    WeightBudgetExceeded,
    WeightShareExceeded,
)
from secagg.params import Parameters
from secagg.protocol.roster import Policy
from secagg.protocol.statements import UploadStatement


def check_round(policy: Policy, round_number: int) -> None:
    """A round must lie in ``1..policy.rounds`` (raises :class:`RoundOutOfRange`)."""
    if not 1 <= round_number <= policy.rounds:
        raise RoundOutOfRange(f"round {round_number} is outside 1..{policy.rounds}")


def check_upload(
    policy: Policy, params: Parameters, upload: UploadStatement, *, size: int | None = None
) -> None:
    """The rules one upload must meet on its own.

    Raises
    ------
    RoundOutOfRange
        The round is beyond the deployment's rounds.
    EpsilonOverBudget
        The reported ε is negative, not finite or above the budget.
    DPRequired
        The policy requires DP (``policy.require_dp``) and the client did not sign
        ``dp=True``.
    WeightBudgetExceeded
        The weight is below ``policy.min_weight`` or above the parameter set's maximum
        total weight, or above ``policy.max_client_weight`` (the per-upload cap that
        keeps one client from exhausting the round's budget and starving the others).
    SizeLimitExceeded
        ``size`` (the packed bytes of the ciphertext's chunks,
        :attr:`secagg.chunked.VectorHead.payload_bytes`, known from its head before any
        chunk arrives) is above the policy's cap.
    """
    check_round(policy, upload.round)
    if not 0.0 <= upload.epsilon <= policy.epsilon_budget:
        raise EpsilonOverBudget(
            f"reported epsilon {upload.epsilon:g} exceeds the deployment's budget "
            f"{policy.epsilon_budget:g}"
        )
    if policy.require_dp and not upload.dp:
        raise DPRequired(
            f"the deployment requires differential privacy; {upload.client_id}'s upload "
            "is signed as trained without it"
        )
    if not policy.min_weight <= upload.weight <= params.max_total_weight:
        raise WeightBudgetExceeded(
            f"weight must lie in {policy.min_weight}..{params.max_total_weight}"
        )
    if upload.weight > policy.max_client_weight:
        raise WeightBudgetExceeded(
            f"weight {upload.weight} exceeds the per-client cap of {policy.max_client_weight}"
        )
    if size is not None and size > policy.max_upload_bytes:
        raise SizeLimitExceeded(
            f"upload of {size} bytes exceeds the cap of {policy.max_upload_bytes} bytes"
        )


def check_decryption(
    policy: Policy,
    params: Parameters,
    round_number: int,
    contributions: Sequence[UploadStatement],
    *,
    initial_model_hash: bytes,
) -> None:
    """The rules a contributor set must meet before its aggregate may be decrypted.

    Every contribution must also pass :func:`check_upload` and belong to
    ``round_number``; in round 1 every contributor must have trained from the roster's
    initial model (``initial_model_hash``).

    Raises
    ------
    DuplicateContributor
        The same client is listed twice.
    DuplicateCiphertext
        The same ciphertext (by hash) is listed twice: a client signed another's
        ciphertext as its own, to count as a contributor without adding an update.
    TooFewContributors
        Fewer distinct clients than ``policy.min_contributors``.
    MixedGlobalModels
        Contributors trained from different global models.
    UnexpectedGlobalModel
        Round 1 contributors trained from another model than the roster's initial one.
    WeightShareExceeded
        One client holds more than ``policy.max_weight_share`` of the total weight.
    WeightBudgetExceeded
        The total weight exceeds the parameter set's budget.
    """
    check_round(policy, round_number)
    for c in contributions:
        if c.round != round_number:
            raise RoundOutOfRange(f"contribution of {c.client_id} is for round {c.round}")
        check_upload(policy, params, c)
    clients = {c.client_id for c in contributions}
    if len(clients) != len(contributions):
        raise DuplicateContributor("the same client is listed twice")
    if len({c.ciphertext_hash for c in contributions}) != len(contributions):
        raise DuplicateCiphertext("the same ciphertext is listed twice (a copied upload)")
    if len(clients) < policy.min_contributors:
        raise TooFewContributors(
            f"{len(clients)} contributor(s); the policy requires at least {policy.min_contributors}"
        )
    if len({c.global_model_hash for c in contributions}) != 1:
        raise MixedGlobalModels("contributors trained from different global models")
    if round_number == 1 and contributions[0].global_model_hash != initial_model_hash:
        raise UnexpectedGlobalModel("round 1 did not start from the roster's initial model")
    total = sum(c.weight for c in contributions)
    if total > params.max_total_weight:
        raise WeightBudgetExceeded(
            f"total weight {total} exceeds the budget of {params.max_total_weight}"
        )
    heaviest = max(c.weight for c in contributions)
    if heaviest > policy.max_weight_share * total:
        raise WeightShareExceeded(
            f"a client holds {heaviest}/{total} of the weight; cap {policy.max_weight_share}"
        )


def check_epsilon_progress(previous: float | None, upload: UploadStatement) -> None:
    """A client's ε never decreases: ``upload.epsilon`` is at least ``previous``.

    ``previous`` is the largest ε the same client reported in an upload accepted before
    (None: none). Each enforcer keeps it from what it saw itself: the server from its
    store (durable across restarts), ``secagg audit verify`` from the client's earlier
    upload entries in the log.

    Raises
    ------
    EpsilonDecreased
        ``upload.epsilon`` is below ``previous``.

    Security
    --------
    ε composes and can only grow; a smaller one means the client's ledger was lost or
    reset (e.g. its state directory was deleted), so its reports no longer bound what it
    released. The check sees reports only: a client that lies about ε consistently is not
    caught, and a server that drops a client's uploads from the log hides the earlier ε
    from the verifier (the key holders' witnessed heads bound that).
    """
    if previous is not None and upload.epsilon < previous:
        raise EpsilonDecreased(
            f"{upload.client_id} reports epsilon {upload.epsilon:g} in round {upload.round} "
            f"after {previous:g} in an earlier upload: its privacy ledger was reset"
        )
