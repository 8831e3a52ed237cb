"""The randomness of local DP-SGD (``clients/dp_noise.py``): ChaCha20 streams, Gaussians, masks.

The statistical checks read fixed keys, so they are deterministic (no flaky p-values);
the freshness checks read ``os.urandom`` keys.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats  # type: ignore[import-untyped]

from clients.dp_noise import (
    KEY_BYTES,
    NoiseStream,
    RoundKey,
    SamplingPlan,
    noisy_count,
    poisson_batches,
)

DRAWS = 1_000_000
FIXED = RoundKey(bytes(range(KEY_BYTES)))


def test_gaussian_passes_mean_variance_and_ks_over_a_million_draws() -> None:
    sigma = 1.7
    x = FIXED.noise().gaussian(DRAWS, std=sigma)
    assert x.shape == (DRAWS,) and x.dtype == np.float64
    # 5 standard errors: the mean's is sigma / sqrt(n), the variance's sigma^2 sqrt(2 / n).
    assert abs(x.mean()) < 5 * sigma / math.sqrt(DRAWS)
    assert abs(x.var() - sigma**2) < 5 * sigma**2 * math.sqrt(2 / DRAWS)
    assert stats.kstest(x, "norm", args=(0.0, sigma)).pvalue > 1e-3
    # Tails: 4-sigma events at the normal rate (0.0063%, ~63 of a million), not cut off.
    tail = np.count_nonzero(np.abs(x) > 4 * sigma)
    assert 30 < tail < 110
    # The same draw against a wrong sigma is rejected: the test has power.
    assert stats.kstest(x, "norm", args=(0.0, 1.01 * sigma)).pvalue < 1e-6


def test_box_muller_alone_is_standard_normal() -> None:
    z = FIXED.noise().standard_normal(DRAWS)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert abs(z.mean()) < 5 / math.sqrt(DRAWS)


def test_uniforms_are_exact_53_bit_grid_points_in_the_half_open_interval() -> None:
    u = FIXED.sampling().uniform(DRAWS)
    assert (u > 0).all() and (u <= 1).all()
    grid = u * 2.0**53
    assert np.array_equal(grid, np.round(grid))
    assert stats.kstest(u, "uniform").pvalue > 1e-3


@pytest.mark.parametrize("rate", [64 / 329, 0.01, 0.5])
def test_bernoulli_mask_rate_lies_within_the_binomial_bound(rate: float) -> None:
    hits = np.count_nonzero(FIXED.sampling().bernoulli(DRAWS, probability=rate))
    assert abs(hits - DRAWS * rate) < 5 * math.sqrt(DRAWS * rate * (1 - rate))


def test_bernoulli_extremes() -> None:
    stream = RoundKey.fresh().sampling()
    assert stream.bernoulli(1000, probability=1.0).all()
    assert not stream.bernoulli(1000, probability=0.0).any()
    with pytest.raises(ValueError):
        stream.bernoulli(1, probability=1.5)


def test_poisson_batches_include_every_sample_at_the_planned_rate() -> None:
    plan = SamplingPlan.for_dataset(size=329, public_size=329, batch_size=64, local_epochs=1)
    assert plan.sample_rate == 64 / 329 and plan.steps == 5
    assert plan.expected_batch_size == pytest.approx(64)
    many = SamplingPlan(size=329, sample_rate=plan.sample_rate, steps=4000, public_size=329)
    counts = np.zeros(329)
    sizes = []
    for idx in poisson_batches(FIXED.sampling(), many):
        assert np.array_equal(idx, np.unique(idx)) and (idx < 329).all()
        counts[idx] += 1
        sizes.append(idx.size)
    n = many.steps * many.size
    assert abs(counts.sum() - n * plan.sample_rate) < 5 * math.sqrt(n * plan.sample_rate)
    assert np.mean(sizes) == pytest.approx(64, abs=0.5)
    # Every sample is drawn at the same rate (binomial, 4000 trials each).
    assert counts.min() > 4000 * plan.sample_rate - 6 * math.sqrt(4000 * 0.16)


def test_sampling_plan_caps_the_rate_at_one_and_refuses_nonsense() -> None:
    small = SamplingPlan.for_dataset(size=10, public_size=10, batch_size=64, local_epochs=3)
    assert (small.sample_rate, small.steps, small.expected_batch_size) == (1.0, 3, 10)
    for size, public_size in ((0, 10), (10, 0)):
        with pytest.raises(ValueError):
            SamplingPlan.for_dataset(
                size=size, public_size=public_size, batch_size=64, local_epochs=1
            )


def test_two_unseeded_rounds_differ_in_noise_and_masks() -> None:
    plan = SamplingPlan.for_dataset(size=329, public_size=329, batch_size=64, local_epochs=1)
    a, b = RoundKey.fresh(), RoundKey.fresh()
    assert a.key != b.key
    masks = [[i.tolist() for i in poisson_batches(k.sampling(), plan)] for k in (a, b)]
    assert masks[0] != masks[1]
    assert not np.allclose(a.noise().gaussian(1000, std=1.0), b.noise().gaussian(1000, std=1.0))


def test_seeded_round_key_reproduces_and_separates_seeds_clients_and_rounds() -> None:
    def key(seed: int, client: int, rnd: int) -> bytes:
        return RoundKey.insecure_seeded(seed, client_seed=client, round_number=rnd).key

    assert key(7, 0, 1) == key(7, 0, 1)
    assert len({key(7, 0, 1), key(8, 0, 1), key(7, 1, 1), key(7, 0, 2)}) == 4
    a = RoundKey.insecure_seeded(7, client_seed=0, round_number=1)
    b = RoundKey.insecure_seeded(7, client_seed=0, round_number=1)
    assert np.array_equal(a.noise().gaussian(100, std=1.0), b.noise().gaussian(100, std=1.0))
    assert np.array_equal(a.sampling().uniform(100), b.sampling().uniform(100))


def test_the_streams_of_a_key_are_independent_and_the_key_stays_out_of_repr() -> None:
    draws = [s.uniform(64).tobytes() for s in (FIXED.sampling(), FIXED.noise(), FIXED.count())]
    assert len(set(draws)) == 3
    assert FIXED.key.hex() not in repr(FIXED) and "secret" in repr(FIXED)


def test_noise_stream_refuses_bad_keys_and_parameters() -> None:
    with pytest.raises(ValueError):
        NoiseStream(bytes(16), stream=0)
    with pytest.raises(ValueError):
        NoiseStream(bytes(32), stream=-1)
    with pytest.raises(ValueError):
        NoiseStream(bytes(32), stream=0).gaussian(3, std=float("nan"))
    assert not NoiseStream(bytes(32), stream=0).gaussian(3, std=0.0).any()


def test_noisy_count_is_the_rounded_clamped_gaussian_mechanism() -> None:
    """round(N + N(0, std^2)) from the count stream, clamped to the weight range."""
    z = float(FIXED.count().gaussian(1, std=20.0)[0])
    assert noisy_count(300, std=20.0, low=1, high=10_000, stream=FIXED.count()) == round(300 + z)
    assert noisy_count(300, std=20.0, low=1, high=10, stream=FIXED.count()) == 10
    assert noisy_count(3, std=1e6, low=1, high=10, stream=FIXED.count()) in (1, 10)
    assert noisy_count(300, std=0.0, low=1, high=10_000, stream=FIXED.count()) == 300
    with pytest.raises(ValueError):
        noisy_count(300, std=20.0, low=0, high=10, stream=FIXED.count())
