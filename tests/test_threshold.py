"""Threshold decryption end to end: every t-quorum decrypts, t-1 never does.

One 3-of-5 key set, ten clients with 10^5 values each in [-8, 8] and integer weights in
1..1000 are built once for the module (about 2 s); every test reuses them.
"""

from __future__ import annotations

import dataclasses
import math
from itertools import combinations
from types import SimpleNamespace

import numpy as np
import pytest
from _support import centered, crt, decrypt, intt, joint_secret, ntt, partials_for

import secagg
from secagg import threshold
from secagg.encoding import encode
from secagg._internal.modarith import add_mod, mul_mod
from secagg.params import fresh_noise_bound

N_HOLDERS, T = 5, 3
CLIENTS, LENGTH = 10, 100_000
QUORUMS = list(combinations(range(1, N_HOLDERS + 1), T))
PAIRS = list(combinations(range(1, N_HOLDERS + 1), T - 1))
MEAN_TOLERANCE = 1e-7


@pytest.fixture(scope="module")
def world(params: secagg.Parameters) -> SimpleNamespace:
    rng = np.random.default_rng(20250101)
    keys = secagg.dealerless_keygen(n=N_HOLDERS, t=T, params=params)
    xs = rng.uniform(-8.0, 8.0, size=(CLIENTS, LENGTH))
    ws = rng.integers(1, 1001, size=CLIENTS)
    cts = [secagg.encrypt(keys.public_key, x) for x in xs]
    agg = secagg.aggregate(cts, weights=[int(w) for w in ws])
    weighted_sum = (ws[:, None].astype(np.float64) * xs).sum(axis=0)
    return SimpleNamespace(
        params=params,
        keys=keys,
        xs=xs,
        ws=ws,
        cts=cts,
        agg=agg,
        weighted_sum=weighted_sum,
        weighted_mean=weighted_sum / ws.sum(),
    )


@pytest.fixture(scope="module")
def by_quorum(world: SimpleNamespace) -> dict[tuple[int, ...], SimpleNamespace]:
    """Partials and the decrypted mean for every 3-member quorum (computed once)."""
    out = {}
    for quorum in QUORUMS:
        parts = partials_for(world.keys, world.agg, quorum)
        out[quorum] = SimpleNamespace(parts=parts, mean=secagg.combine(world.agg, parts))
    return out


def max_err(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.max(np.abs(a - b)))


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


# --- noise ------------------------------------------------------------------------------------


def _phase(params: secagg.Parameters, vec: secagg.EncryptedVector, s_ntt: np.ndarray) -> np.ndarray:
    """``c0 + c1 * s`` per ciphertext (data primes, coefficient form, residues)."""
    out = np.empty_like(vec.residues[:, 0])
    for k in range(vec.ciphertext_count):
        c0, c1 = vec.residues[k]
        c1_ntt = ntt(params, c1)
        prod = np.stack([mul_mod(c1_ntt[j], s_ntt[j], q) for j, q in enumerate(params.data_primes)])
        prod = intt(params, prod)
        out[k] = np.stack([add_mod(c0[j], prod[j], q) for j, q in enumerate(params.data_primes)])
    return out


def _noise(params: secagg.Parameters, phase: np.ndarray, message: np.ndarray) -> np.ndarray:
    """``phase - round(Q * m / t)`` centered mod Q, per coefficient (Python ints)."""
    primes = params.data_primes
    value, modulus = crt(np.moveaxis(phase, 1, 0), primes)  # (ciphertexts, N)
    t = params.plain_modulus
    scaled = (message.astype(object) * modulus + t // 2) // t
    return centered(value - scaled, modulus)


def test_aggregate_noise_below_bound(world: SimpleNamespace, by_quorum: dict) -> None:
    params, keys, agg = world.params, world.keys, world.agg
    # The joint secret from any t shares; all quorums give the same NTT(s).
    secrets = [joint_secret(keys, q) for q in QUORUMS]
    for s in secrets[1:]:
        assert np.array_equal(s, secrets[0])
    s_ntt = secrets[0]
    # The aggregated plaintext: sum_i w_i * encode(x_i) mod t (uint64 wraps mod 2^64,
    # and t is a power of two, so the masked result is exact).
    n, count = params.poly_modulus_degree, agg.vector.ciphertext_count
    message = np.zeros(count * n, dtype=np.uint64)
    for x, w in zip(world.xs, world.ws, strict=True):
        message += encode(params, x, count * n) * np.uint64(w)
    message &= np.uint64(params.plain_modulus - 1)
    message = message.reshape(count, n)

    noise = _noise(params, _phase(params, agg.vector, s_ntt), message)
    measured = max(abs(int(v)) for v in noise.ravel())
    own_bound = agg.total_weight * fresh_noise_bound(
        params.poly_modulus_degree, N_HOLDERS, params.statistical_security
    )
    print(
        f"aggregate noise: measured {measured} (2^{math.log2(max(measured, 1)):.1f}); "
        f"bound for W={agg.total_weight}, n={N_HOLDERS}: {own_bound:.3g}; "
        f"params.noise_bound {params.noise_bound:.3g} (2^{math.log2(params.noise_bound):.1f})"
    )
    assert 0 < measured < own_bound <= params.noise_bound
    # Decryption of a noise-free phase is exact: the noise is far below q/(2t).
    assert measured < modulus_over_2t(params) / 2**40

    # With the flooded partials of a quorum, the noise grows by at most t * 2^b and
    # stays below q/(2t), which is why decryption is exact.
    parts = by_quorum[QUORUMS[0]].parts
    combined = agg.vector.residues[:, 0].copy()
    for p in parts:
        for j, q in enumerate(params.data_primes):
            combined[:, j] = add_mod(combined[:, j], p.residues[:, j], q)
    flooded = _noise(params, combined, message)
    flooded_max = max(abs(int(v)) for v in flooded.ravel())
    print(f"noise after flooding: 2^{math.log2(flooded_max):.2f}")
    assert flooded_max <= measured + T * 2**params.flooding_bits
    assert flooded_max > 2 ** (params.flooding_bits - 2)  # the flooding is really there
    assert flooded_max < modulus_over_2t(params)


def modulus_over_2t(params: secagg.Parameters) -> int:
    return math.prod(params.data_primes) // (2 * params.plain_modulus)


def test_decryption_margin_and_flooding_width(params: secagg.Parameters) -> None:
    assert params.decryption_margin_bits > 0
    assert params.statistical_security >= 40
    worst = params.noise_bound + params.max_keyholders * 2.0**params.flooding_bits
    assert worst < modulus_over_2t(params)
    assert 2.0**params.flooding_bits >= 2.0**40 * params.noise_bound


# --- other parameter sets -----------------------------------------------------------------


def _round_trip(params: secagg.Parameters, n: int, t: int, weights: list[int]) -> float:
    keys = secagg.dealerless_keygen(n=n, t=t, params=params)
    rng = np.random.default_rng(n * 100 + t)
    bound = params.value_bound / 2
    xs = rng.uniform(-bound, bound, size=(len(weights), 3000))
    agg = secagg.aggregate([secagg.encrypt(keys.public_key, x) for x in xs], weights=weights)
    w = np.array(weights, dtype=np.float64)
    expected = (w[:, None] * xs).sum(axis=0) / w.sum()
    return max_err(decrypt(keys, agg, list(range(1, t + 1))), expected)


def test_full_quorum_at_the_budget_limits(params: secagg.Parameters) -> None:
    """n = t = max_keyholders partials (the most flooding) on a full-weight aggregate."""
    n = params.max_keyholders
    limit = params.max_total_weight
    err = _round_trip(params, n, n, [limit // 2, limit // 4, limit - limit // 2 - limit // 4])
    assert err <= params.precision + 1e-12


@pytest.mark.parametrize("budget_bits", [8, 12, 17])
def test_other_calculated_sets_decrypt(budget_bits: int) -> None:
    params = secagg.Parameters.calculate(max_total_weight=2**budget_bits)
    limit = params.max_total_weight
    err = _round_trip(params, 3, 2, [limit - 1, 1])
    assert err <= params.precision + 1e-12


def test_sixty_two_bit_flooding_set_decrypts() -> None:
    params = secagg.Parameters.calculate(max_total_weight=2**10)
    assert params.flooding_bits == 62
    err = _round_trip(params, 3, 2, [1000, 24])
    assert err <= params.precision + 1e-12
