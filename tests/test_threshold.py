"""Threshold decryption end to end: every t-quorum decrypts, t-1 never does.

The shared world (one 3-of-5 key set, ten clients, their aggregate and every quorum's
partials) comes from ``tests/_threshold_world.py``. Weights are tested in
``tests/test_threshold_weights.py``, noise and other parameter sets in
``tests/test_threshold_noise.py``.
"""

from __future__ import annotations

import dataclasses
from itertools import combinations
from types import SimpleNamespace

import pytest
from _support import decrypt, partials_for
from _threshold_world import (
    CLIENTS,
    LENGTH,
    MEAN_TOLERANCE,
    PAIRS,
    QUORUMS,
    T,
    by_quorum_fixture,  # noqa: F401 (fixture)
    max_err,
    world_fixture,  # noqa: F401 (fixture)
)

import secagg
from secagg import threshold

# --- every quorum of t decrypts -----------------------------------------------------------


def test_aggregate_metadata(world: SimpleNamespace) -> None:
    assert world.agg.total_weight == int(world.ws.sum())
    assert world.agg.contributors == CLIENTS
    assert world.agg.weight_scale == 1.0
    assert world.agg.vector.length == LENGTH


@pytest.mark.parametrize("quorum", QUORUMS, ids=lambda q: "".join(map(str, q)))
def test_every_quorum_returns_weighted_mean(
    world: SimpleNamespace, by_quorum: dict, quorum: tuple[int, ...]
) -> None:
    result = by_quorum[quorum].mean
    err = max_err(result, world.weighted_mean)
    print(f"quorum {quorum}: max abs error {err:.3e}")
    assert err <= MEAN_TOLERANCE
    # The library's own promise is tighter: only the 2^-(f+1) rounding remains.
    assert err <= world.params.precision + 1e-12


def test_all_quorums_agree(by_quorum: dict) -> None:
    results = [by_quorum[q].mean for q in QUORUMS]
    spread = max(max_err(a, b) for a, b in combinations(results, 2))
    print(f"largest disagreement between quorums: {spread:.3e}")
    assert spread <= MEAN_TOLERANCE


def test_larger_quorum_decrypts(world: SimpleNamespace) -> None:
    quorum = (1, 2, 4, 5)
    assert max_err(decrypt(world.keys, world.agg, quorum), world.weighted_mean) <= MEAN_TOLERANCE


def test_weighted_sum(world: SimpleNamespace, by_quorum: dict) -> None:
    result = secagg.combine(world.agg, by_quorum[QUORUMS[0]].parts, mean=False)
    # Decryption is exact modulo t, so the decrypted sum is sum_i w_i * round(x_i 2^f) / 2^f.
    # Each rounding is off by at most 2^-(f+1) = params.precision, hence the error is at
    # most sum_i w_i * precision = total_weight * precision. The numpy reference adds a
    # float64 rounding of at most a few ulps of |sum| <= 8 * total_weight (< 1e-10 here).
    bound = world.agg.total_weight * world.params.precision + 1e-9
    err = max_err(result, world.weighted_sum)
    print(f"weighted sum: max abs error {err:.3e}, bound {bound:.3e}")
    assert err <= bound
    # The sum is not the mean: guards against mean=False being ignored.
    assert max_err(result, world.weighted_mean) > 1.0


# --- fewer than t never decrypt -----------------------------------------------------------


@pytest.mark.parametrize("pair", PAIRS, ids=lambda q: "".join(map(str, q)))
def test_two_member_quorum_refused_by_partial_decrypt(
    world: SimpleNamespace, pair: tuple[int, ...]
) -> None:
    for i in pair:
        with pytest.raises(secagg.QuorumNotMet):
            secagg.partial_decrypt(world.keys.shares[i - 1], world.agg, quorum=list(pair))


def test_quorum_with_repeated_member_refused(world: SimpleNamespace) -> None:
    with pytest.raises(secagg.QuorumNotMet):
        secagg.partial_decrypt(world.keys.shares[0], world.agg, quorum=[1, 1, 2])


@pytest.mark.parametrize("quorum", QUORUMS, ids=lambda q: "".join(map(str, q)))
def test_combine_refuses_two_partials(
    world: SimpleNamespace, by_quorum: dict, quorum: tuple[int, ...]
) -> None:
    parts = by_quorum[quorum].parts
    for two in combinations(parts, 2):
        with pytest.raises(secagg.QuorumNotMet):
            secagg.combine(world.agg, list(two))
    with pytest.raises(secagg.QuorumNotMet):
        secagg.combine(world.agg, parts[:1])


def test_combine_refuses_nothing(world: SimpleNamespace) -> None:
    with pytest.raises(secagg.QuorumNotMet):
        secagg.combine(world.agg, [])


def test_forced_full_quorum_through_internal_api_decrypts(world: SimpleNamespace) -> None:
    """Control for the next test: the internal path itself is sound with t partials."""
    quorum = (1, 3, 5)
    parts = [
        threshold._partial_decrypt_unchecked(world.keys.shares[i - 1], world.agg, quorum)
        for i in quorum
    ]
    result = threshold._combine_unchecked(world.agg, parts, mean=True)
    assert max_err(result, world.weighted_mean) <= MEAN_TOLERANCE


@pytest.mark.parametrize("pair", PAIRS, ids=lambda q: "".join(map(str, q)))
def test_forced_two_partials_give_noise(world: SimpleNamespace, pair: tuple[int, ...]) -> None:
    parts = [
        threshold._partial_decrypt_unchecked(world.keys.shares[i - 1], world.agg, pair)
        for i in pair
    ]
    result = threshold._combine_unchecked(world.agg, parts, mean=True)
    err = max_err(result, world.weighted_mean)
    print(f"forced pair {pair}: max abs error {err:.3g}")
    assert err > 1.0


# --- combine checks its inputs --------------------------------------------------------------


def test_combine_rejects_partial_of_another_aggregate(
    world: SimpleNamespace, by_quorum: dict
) -> None:
    other = secagg.aggregate(world.cts[:4], weights=[1, 2, 3, 4])
    quorum = (1, 2, 3)
    foreign = secagg.partial_decrypt(world.keys.shares[2], other, quorum=quorum)
    parts = by_quorum[quorum].parts
    with pytest.raises(secagg.InvalidPartialDecryption):
        secagg.combine(world.agg, [parts[0], parts[1], foreign])
    with pytest.raises(secagg.InvalidPartialDecryption):
        secagg.combine(world.agg, partials_for(world.keys, other, quorum))


def test_combine_rejects_partial_from_outside_its_quorum(
    world: SimpleNamespace, by_quorum: dict
) -> None:
    # Built in memory (from_bytes already refuses it): key holder 4 claims quorum (1, 2, 3).
    parts = by_quorum[(1, 2, 3)].parts
    intruder = dataclasses.replace(parts[2], keyholder_index=4)
    with pytest.raises(secagg.InvalidPartialDecryption, match="not in the partial's quorum"):
        secagg.combine(world.agg, [parts[0], parts[1], intruder])


def test_combine_rejects_mixed_quorums(world: SimpleNamespace, by_quorum: dict) -> None:
    a = by_quorum[(1, 2, 3)].parts
    b = by_quorum[(1, 2, 4)].parts
    with pytest.raises(secagg.InvalidPartialDecryption):
        secagg.combine(world.agg, [a[0], a[1], b[2]])  # holders 1, 2 of 123 and 4 of 124
    with pytest.raises(secagg.InvalidPartialDecryption):
        secagg.combine(world.agg, [b[0], a[1], a[2]])


def test_duplicates_do_not_count_toward_threshold(world: SimpleNamespace, by_quorum: dict) -> None:
    p1, p2, p3 = by_quorum[(1, 2, 3)].parts
    for parts in ([p1, p1, p2], [p1, p2, p2, p1], [p3, p3, p3]):
        with pytest.raises(secagg.QuorumNotMet):
            secagg.combine(world.agg, parts)
    # A fresh second partial of holder 2 is still holder 2.
    again = secagg.partial_decrypt(world.keys.shares[1], world.agg, quorum=(1, 2, 3))
    with pytest.raises(secagg.QuorumNotMet):
        secagg.combine(world.agg, [p1, p2, again])
    # Repeats next to a full quorum are ignored, not added twice.
    result = secagg.combine(world.agg, [p1, p2, p3, p3, p1])
    assert max_err(result, world.weighted_mean) <= MEAN_TOLERANCE


def test_duplicates_cannot_fake_a_quorum(world: SimpleNamespace, by_quorum: dict) -> None:
    """Partials that claim a 2-member quorum (forged in memory) with t = 3: holder 1 twice
    plus holder 2 is three partials but two key holders, so combine must refuse."""
    p1, p2, _ = by_quorum[(1, 2, 3)].parts
    forged = [dataclasses.replace(p, quorum=(1, 2)) for p in (p1, p1, p2)]
    assert forged[0].threshold == T
    with pytest.raises(secagg.QuorumNotMet):
        secagg.combine(world.agg, forged)


def test_missing_member_of_larger_quorum(world: SimpleNamespace) -> None:
    quorum = (1, 2, 3, 4)
    parts = partials_for(world.keys, world.agg, quorum)
    with pytest.raises(secagg.QuorumNotMet):
        secagg.combine(world.agg, parts[:3])  # t partials, but of a 4-member quorum


def test_keyholder_outside_quorum_refused(world: SimpleNamespace) -> None:
    with pytest.raises(secagg.InvalidPartialDecryption):
        secagg.partial_decrypt(world.keys.shares[3], world.agg, quorum=[1, 2, 3])
