"""Aggregation weights end to end: integer and real weights, budgets and refusals.

Uses the shared world of ``tests/_threshold_world.py`` (see ``tests/test_threshold.py``).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from _support import decrypt
from _threshold_world import (
    LENGTH,
    MEAN_TOLERANCE,
    max_err,
    world_fixture,  # noqa: F401 (fixture)
)

import secagg

# --- weights ------------------------------------------------------------------------------


def test_dyadic_real_weights_give_weighted_mean(world: SimpleNamespace) -> None:
    alphas = [0.5, 0.25, 0.125, 0.0625, 0.0625]
    agg = secagg.aggregate(world.cts[:5], weights=alphas)
    assert agg.weight_scale != 1.0
    expected = (np.array(alphas)[:, None] * world.xs[:5]).sum(axis=0) / sum(alphas)
    err = max_err(decrypt(world.keys, agg), expected)
    print(f"dyadic real weights: max abs error {err:.3e}")
    assert err <= 1e-6
    weighted_sum = decrypt(world.keys, agg, mean=False)
    assert max_err(weighted_sum, expected * sum(alphas)) <= 1e-6


REAL_ALPHAS = [0.1, 0.25, 0.3, 0.35]


def test_real_weights_match_quantized_weights(world: SimpleNamespace) -> None:
    """Non-dyadic weights: exact mean for the integer weights the library documents."""
    agg = secagg.aggregate(world.cts[:4], weights=REAL_ALPHAS)
    ints = np.array([round(a * agg.weight_scale) for a in REAL_ALPHAS])
    assert agg.total_weight == ints.sum() <= world.params.max_total_weight
    result = decrypt(world.keys, agg)
    xs = world.xs[:4]
    quantized_mean = (ints[:, None] * xs).sum(axis=0) / ints.sum()
    assert max_err(result, quantized_mean) <= 1e-7
    # Versus the exact real weights: with w_i = alpha_i * s + d_i (|d_i| <= 1/2),
    # mean_w - mean_alpha = sum_i d_i (x_i - mean_alpha) / sum_i w_i.
    exact = (np.array(REAL_ALPHAS)[:, None] * xs).sum(axis=0) / sum(REAL_ALPHAS)
    d = ints - np.array(REAL_ALPHAS) * agg.weight_scale
    bound = float(np.abs(d).sum() * np.abs(xs - exact).max() / ints.sum())
    err = max_err(result, exact)
    print(f"real weights: error vs exact {err:.3e}, weight-rounding bound {bound:.3e}")
    assert err <= bound + world.params.precision + 1e-12
    # Each normalized weight is within (about) weight_resolution of the exact one.
    rel = np.abs(ints / ints.sum() - np.array(REAL_ALPHAS) / sum(REAL_ALPHAS))
    assert rel.max() <= 2 * world.params.weight_resolution


def test_real_weights_meet_the_stated_weight_resolution(world: SimpleNamespace) -> None:
    # Real weights are rounded to multiples of 1/weight_scale (documented: the resolution is
    # Parameters.weight_resolution of their sum, within a factor 2 from the power-of-two
    # scale). Each weight is off by at most 1/(2 scale), so the mean of values bounded by
    # max|x| moves by at most 2 * max|x| * n / (2 scale * sum(alpha)) plus the quantization.
    agg = secagg.aggregate(world.cts[:4], weights=REAL_ALPHAS)
    alphas = np.array(REAL_ALPHAS)
    exact = (alphas[:, None] * world.xs[:4]).sum(axis=0) / alphas.sum()
    bound = (
        2 * np.abs(world.xs[:4]).max() * len(alphas) / (2 * agg.weight_scale * alphas.sum())
        + world.params.precision
    )
    assert agg.weight_scale * alphas.sum() >= world.params.max_total_weight / 4
    assert max_err(decrypt(world.keys, agg), exact) <= bound


@pytest.mark.parametrize(
    "weights",
    [
        [65_536, 1],
        [40_000, 30_000],
        [2**40, 1],
        [-1, 2],
        [-0.5, 1.5],
        [float("nan"), 1],
        [1.0, float("nan")],
        [float("inf"), 1],
        [0, 0],
        [0.0, 0.0],
        [True, 1],
        ["3", 1],
        [1],  # one weight for two vectors
    ],
    ids=repr,
)
def test_invalid_weights_refused(world: SimpleNamespace, weights: list) -> None:
    with pytest.raises(secagg.WeightBudgetExceeded):
        secagg.aggregate(world.cts[:2], weights=weights)


def test_budget_exactly_reached_is_accepted(world: SimpleNamespace) -> None:
    limit = world.params.max_total_weight
    agg = secagg.aggregate(world.cts[:2], weights=[limit - 1, 1])
    assert agg.total_weight == limit
    expected = ((limit - 1) * world.xs[0] + world.xs[1]) / limit
    assert max_err(decrypt(world.keys, agg), expected) <= MEAN_TOLERANCE


def _state(agg: secagg.Aggregator) -> tuple:
    return agg.total_weight, agg.contributors, agg._low.copy(), agg._high.copy()


def test_refused_add_leaves_aggregator_unchanged(
    world: SimpleNamespace, other_keys32: secagg.KeySet
) -> None:
    params = world.params
    agg = secagg.Aggregator(params, public_key_id=world.keys.public_key.id_bytes, length=LENGTH)
    assert agg.add(world.cts[0], 3) == 3
    assert agg.add(world.cts[1], 5) == 5
    before = _state(agg)
    foreign_key = secagg.encrypt(other_keys32.public_key, world.xs[2])
    short = secagg.encrypt(world.keys.public_key, world.xs[2][:-1])
    refusals = [
        (world.cts[2], params.max_total_weight, secagg.WeightBudgetExceeded),
        (world.cts[2], params.max_total_weight - 7, secagg.WeightBudgetExceeded),
        (world.cts[2], -1, secagg.WeightBudgetExceeded),
        (world.cts[2], float("nan"), secagg.WeightBudgetExceeded),
        (world.cts[2], float("inf"), secagg.WeightBudgetExceeded),
        (world.cts[2], 0.5, secagg.WeightBudgetExceeded),  # not an integer at scale 1
        (foreign_key, 1, secagg.InvalidCiphertext),
        (short, 1, secagg.InvalidCiphertext),
    ]
    for vec, weight, error in refusals:
        with pytest.raises(error):
            agg.add(vec, weight)
        after = _state(agg)
        assert after[:2] == before[:2]
        assert np.array_equal(after[2], before[2]) and np.array_equal(after[3], before[3])
    assert agg.add(world.cts[3], 2) == 2
    result = agg.result()
    assert (result.total_weight, result.contributors) == (10, 3)
    expected = (3 * world.xs[0] + 5 * world.xs[1] + 2 * world.xs[3]) / 10
    assert max_err(decrypt(world.keys, result), expected) <= MEAN_TOLERANCE


def test_empty_aggregator_has_no_result(world: SimpleNamespace) -> None:
    agg = secagg.Aggregator(
        world.params, public_key_id=world.keys.public_key.id_bytes, length=LENGTH
    )
    agg.add(world.cts[0], 0)
    with pytest.raises(secagg.WeightBudgetExceeded):
        agg.result()
