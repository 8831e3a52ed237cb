"""The noise behind threshold decryption: measured against the bound, and other sets.

The aggregate's real noise is computed from the joint secret and compared with the
parameter set's bound, before and after flooding; other calculated parameter sets must
decrypt at their budget limits. Uses the shared world of ``tests/_threshold_world.py``.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from _support import centered, crt, decrypt, intt, joint_secret, ntt
from _threshold_world import (
    N_HOLDERS,
    QUORUMS,
    T,
    by_quorum_fixture,  # noqa: F401 (fixture)
    max_err,
    world_fixture,  # noqa: F401 (fixture)
)

import secagg
from secagg._internal.modarith import add_mod, mul_mod
from secagg.encoding import encode
from secagg.noise import fresh_noise_bound

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
    params = secagg.Parameters.calculate(max_total_weight=2**10, decryption_budget_bits=0)
    assert params.flooding_bits == 62
    err = _round_trip(params, 3, 2, [1000, 24])
    assert err <= params.precision + 1e-12
