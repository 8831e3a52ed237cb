"""The shared policy functions: each rule raises its own error with its own reason code."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from secagg.errors import (
    DuplicateContributor,
    EpsilonOverBudget,
    MixedGlobalModels,
    RoundOutOfRange,
    SecAggError,
    SizeLimitExceeded,
    TooFewContributors,
    WeightBudgetExceeded,
    WeightShareExceeded,
)
from secagg.protocol.policy import check_decryption, check_upload
from secagg.protocol.roster import Roster
from secagg.protocol.statements import UploadStatement


def _set(roster: Roster, weights: dict[str, int]) -> list[UploadStatement]:
    return [
        UploadStatement(
            deployment_id=roster.deployment_id,
            round=1,
            client_id=name,
            nonce=bytes([n]) * 16,
            global_model_hash=roster.initial_model_hash,
            ciphertext_hash=hashlib.sha256(name.encode()).digest(),
            weight=w,
            epsilon=1.0,
        )
        for n, (name, w) in enumerate(weights.items())
    ]


def test_an_acceptable_set_passes(roster: Roster) -> None:
    acceptable = _set(roster, {"c1": 10, "c2": 10})
    check_decryption(
        roster.policy, roster.params, 1, acceptable, initial_model_hash=roster.initial_model_hash
    )


def _violations(roster: Roster) -> dict[str, tuple[type[SecAggError], list[UploadStatement]]]:
    two = _set(roster, {"c1": 10, "c2": 10})
    return {
        "too few": (TooFewContributors, two[:1]),
        "duplicate": (DuplicateContributor, [two[0], replace(two[1], client_id="c1")]),
        "mixed models": (MixedGlobalModels, [two[0], replace(two[1], global_model_hash=bytes(32))]),
        "weight share": (WeightShareExceeded, _set(roster, {"c1": 100, "c2": 10, "c3": 10})),
        "epsilon": (EpsilonOverBudget, [two[0], replace(two[1], epsilon=3.5)]),
        "zero weight": (WeightBudgetExceeded, [two[0], replace(two[1], weight=0)]),
        "total weight": (
            WeightBudgetExceeded,
            _set(roster, {f"c{i}": roster.params.max_total_weight // 3 + 1 for i in (1, 2, 3, 4)}),
        ),
        "round": (RoundOutOfRange, [two[0], replace(two[1], round=2)]),
    }


@pytest.mark.parametrize(
    "rule",
    [
        "too few",
        "duplicate",
        "mixed models",
        "weight share",
        "epsilon",
        "zero weight",
        "total weight",
        "round",
    ],
)
def test_each_rule_raises_its_own_error(roster: Roster, rule: str) -> None:
    error, contributions = _violations(roster)[rule]
    with pytest.raises(error) as info:
        check_decryption(
            roster.policy,
            roster.params,
            1,
            contributions,
            initial_model_hash=roster.initial_model_hash,
        )
    assert info.value.reason == error.reason and info.value.reason.isupper()


def test_rounds_beyond_the_policy_are_refused(roster: Roster) -> None:
    late = _set(roster, {"c1": 1, "c2": 1})
    late = [replace(c, round=roster.policy.rounds + 1) for c in late]
    with pytest.raises(RoundOutOfRange):
        check_decryption(
            roster.policy,
            roster.params,
            roster.policy.rounds + 1,
            late,
            initial_model_hash=roster.initial_model_hash,
        )


def test_upload_size_cap(roster: Roster) -> None:
    upload = _set(roster, {"c1": 1})[0]
    check_upload(roster.policy, roster.params, upload, size=roster.policy.max_upload_bytes)
    with pytest.raises(SizeLimitExceeded, match="exceeds the cap"):
        check_upload(roster.policy, roster.params, upload, size=roster.policy.max_upload_bytes + 1)
