"""Distributed DP (``--dp distributed``): integer noise shares, central epsilon, model updates.

The attacker sees the decrypted aggregate of a round (sum of integer uploads carrying
the honest contributors' Skellam shares), the public configuration and each client's
reported epsilon. These tests drive the real trainer (:class:`clients.dist_dp.DistributedDPTrainer`)
and its sampler: the noise is Skellam of the planned variance, fresh per run, the upload
is an integer vector within the plaintext range whose single-record sensitivity is the one
accounted, and every reported epsilon is recomputed independently from the ledger.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from _dp_reference import TOLERANCE, pld_epsilon, skellam_reference_epsilon
from scipy import stats  # type: ignore[import-untyped]

from clients.data import ClientData, load_federation, scale_pixels
from clients.dist_dp import DistributedDPConfig, DistributedDPTrainer
from clients.dist_dp_grad import integer_gradient_sum, sensitivities
from clients.dist_dp_policy import honest_contributors
from clients.dp_model import build_model
from clients.dp_noise import KEY_BYTES, RoundKey
from clients.skellam_accounting import ledger_epsilon, skellam_entry
from clients.skellam_noise import poisson, randomized_round, skellam
from secagg.encoding import encode, encode_integers, integer_limit
from secagg.errors import ConfigError, PrivacyBudgetExhausted
from secagg.params import Parameters
from secagg.protocol.roster import Policy

pytestmark = pytest.mark.filterwarnings("ignore")
PARAMS = Parameters.default()
DRAWS = 1_000_000
FIXED = RoundKey(bytes(range(KEY_BYTES)))
HIDDEN = 16


@pytest.fixture(scope="module")
def client() -> ClientData:
    return load_federation(clients=5, seed=0).clients[0]


def trainer(data: ClientData, state: Path, **changes: object) -> DistributedDPTrainer:
    settings: dict[str, object] = {"rounds": 3, "hidden": HIDDEN, "honest_contributors": 2}
    settings.update(changes)
    config = DistributedDPConfig(**settings)  # type: ignore[arg-type]
    return DistributedDPTrainer(data, config, params=PARAMS, state_dir=state, client_seed=0)


# --- the sampler ----------------------------------------------------------------------------


@pytest.mark.parametrize("mu", [12.5, 4.0e6])
def test_skellam_passes_mean_variance_and_ks_over_a_million_draws(mu: float) -> None:
    x = skellam(FIXED.noise(), mu, DRAWS)
    assert x.dtype == np.int64
    sd = math.sqrt(2 * mu)
    assert abs(x.mean()) < 5 * sd / math.sqrt(DRAWS)
    assert abs(x.var() - 2 * mu) < 5 * 2 * mu * math.sqrt(2 / DRAWS)
    # KS distance of the empirical CDF to Sk(mu, mu) at every integer of the support
    # (discrete, so the continuous KS critical value is conservative).
    support = np.arange(x.min(), x.max() + 1)
    empirical = np.searchsorted(np.sort(x), support, side="right") / DRAWS
    distance = float(np.abs(empirical - stats.skellam.cdf(support, mu, mu)).max())
    assert distance < 1.95 / math.sqrt(DRAWS)  # KS at p = 0.001
    # Power: the same draws against a 2% wider Skellam are rejected.
    wider = np.abs(empirical - stats.skellam.cdf(support, 1.02 * mu, 1.02 * mu)).max()
    assert wider > 1.95 / math.sqrt(DRAWS)


def test_poisson_mean_and_variance() -> None:
    x = poisson(FIXED.sampling(), 10.0, DRAWS)
    assert abs(x.mean() - 10) < 5 * math.sqrt(10 / DRAWS)
    assert abs(x.var() - 10) < 5 * 10 * math.sqrt(2 / DRAWS)
    with pytest.raises(ValueError):
        poisson(FIXED.sampling(), 9.0, 1)


def test_randomized_rounding_is_unbiased_and_within_one() -> None:
    x = np.full(DRAWS, 2.3)
    r = randomized_round(FIXED.sampling(), x)
    assert set(np.unique(r).tolist()) == {2, 3}
    assert abs(r.mean() - 2.3) < 5 * math.sqrt(0.21 / DRAWS)


def test_two_unseeded_runs_differ_in_noise_and_rounding() -> None:
    a, b = RoundKey.fresh(), RoundKey.fresh()
    assert not np.array_equal(skellam(a.noise(), 1e4, 1000), skellam(b.noise(), 1e4, 1000))
    half = np.full(1000, 0.5)
    assert not np.array_equal(
        randomized_round(a.sampling(), half), randomized_round(b.sampling(), half)
    )


# --- sensitivity and range ------------------------------------------------------------------


def test_one_records_contribution_is_within_the_accounted_sensitivities(client: ClientData) -> None:
    model = build_model(HIDDEN, 3)
    d = sum(p.numel() for p in model.parameters())
    l2, l1 = sensitivities(scale=4096.0, max_grad_norm=1.0, dimension=d)
    data = (scale_pixels(client.x_train), client.y_train)
    for record in range(5):
        z = integer_gradient_sum(
            model,
            data,
            np.array([record]),
            max_grad_norm=1.0,
            scale=4096.0,
            bound=2**29,
            rounding=RoundKey.fresh().sampling(),
        )
        assert z.dtype == np.int64 and z.shape == (d,)
        assert np.linalg.norm(z) <= l2 and np.abs(z).sum() <= l1
        assert np.linalg.norm(z) > 4096.0 * 0.9  # clipped to norm 1 (its gradient is larger)
    empty = integer_gradient_sum(
        model,
        data,
        np.array([], dtype=np.int64),
        max_grad_norm=1.0,
        scale=4096.0,
        bound=2**29,
        rounding=FIXED.sampling(),
    )
    assert not empty.any()


def test_clamping_keeps_the_sum_in_range(client: ClientData) -> None:
    model = build_model(HIDDEN, 3)
    data = (scale_pixels(client.x_train), client.y_train)
    z = integer_gradient_sum(
        model,
        data,
        np.arange(50),
        max_grad_norm=1.0,
        scale=4096.0,
        bound=100,
        rounding=FIXED.sampling(),
    )
    assert np.abs(z).max() == 100


# --- the trainer: uploads, ledger, model ------------------------------------------------------


def test_a_round_uploads_noisy_integers_of_weight_one(client: ClientData, tmp_path: Path) -> None:
    t = trainer(client, tmp_path, noise_seed=7)
    theta0 = np.zeros(t.layout.size)
    upload, weight = t.train_integers(theta0, 1)
    assert weight == 1 and upload.dtype == np.int64 and upload.shape == (t.layout.size,)
    assert np.abs(upload).max() < integer_limit(PARAMS)
    # The noise dominates coordinates without signal: its spread is the share's.
    assert np.std(upload) > 0.5 * math.sqrt(2 * t.share_mu)
    # The float view the generic client encrypts encodes to exactly these integers.
    again = trainer(client, tmp_path / "again", noise_seed=7)
    vector, _ = again.train(theta0, 1)
    assert np.array_equal(
        encode(PARAMS, vector, vector.size), encode_integers(PARAMS, upload, upload.size)
    )


def test_noise_share_is_sized_for_the_honest_contributors(
    client: ClientData, tmp_path: Path
) -> None:
    t = trainer(client, tmp_path / "h4", honest_contributors=4)
    one = trainer(client, tmp_path / "h1", honest_contributors=1)
    assert t.state["mu"] == pytest.approx(one.state["mu"])  # central noise: the same
    assert t.share_mu == pytest.approx(one.share_mu / 4)  # shared among 4 honest
    assert t.state["noise_multiplier"] * t.l2 == pytest.approx(math.sqrt(2 * t.state["mu"]))


def test_reported_epsilon_matches_an_independent_recomputation(
    client: ClientData, tmp_path: Path
) -> None:
    t = trainer(client, tmp_path, rounds=3)
    for rnd in (1, 2, 3):
        t.train_integers(np.zeros(t.layout.size), rnd)
    state = json.loads((tmp_path / "privacy.json").read_text())
    assert state["mode"] == "distributed" and state["unit"].startswith("add/remove one record")
    for k, name in enumerate(("1", "2", "3"), start=1):
        reference = skellam_reference_epsilon(state["history"][:k], delta=1e-5)
        assert state["epsilon"][name] == pytest.approx(reference, rel=TOLERANCE)
    assert state["epsilon"]["3"] <= 3.0 * (1 + 1e-6)
    with pytest.raises(PrivacyBudgetExhausted):
        t.train_integers(np.zeros(t.layout.size), 4)


def test_subsampled_entry_matches_and_is_never_below_the_gaussian_pld() -> None:
    entry = skellam_entry(mu=(2.0 * 4194.0) ** 2 / 2, l2=4194.0, l1=4e5, sample_rate=0.2, steps=10)
    ours = ledger_epsilon([entry], delta=1e-5)
    assert ours == pytest.approx(skellam_reference_epsilon([entry], delta=1e-5), rel=TOLERANCE)
    assert ours >= pld_epsilon([[2.0, 0.2, 10]], delta=1e-5)


def test_model_moves_by_the_release_and_persists(client: ClientData, tmp_path: Path) -> None:
    t = trainer(client, tmp_path, noise_seed=1)
    theta1 = np.ones(t.layout.size)
    t.train_integers(theta1, 1)
    release = np.full(t.layout.size, 2.0**-PARAMS.fractional_bits * 4096.0 * 300)
    t.train_integers(release, 2)
    theta2 = np.load(tmp_path / "theta-2.npy")
    assert np.allclose(theta2, theta1 - t.config.learning_rate_of(1) * 1.0)
    restarted = trainer(client, tmp_path, noise_seed=1)
    assert np.array_equal(restarted.theta(np.zeros(t.layout.size), 2), theta2)
    with pytest.raises(ConfigError, match="missed"):
        trainer(client, tmp_path / "late").theta(release, 3)


# --- policy -----------------------------------------------------------------------------------


def test_policy_must_admit_weight_one_and_leave_honest_contributors() -> None:
    policy = Policy(threshold=2, keyholders=3, min_contributors=5)
    assert honest_contributors(policy, colluders=1) == 4
    for bad in (
        replace(policy, min_contributors=1),
        replace(policy, min_weight=2),
        replace(policy, max_weight_share=0.1),
    ):
        with pytest.raises(ConfigError, match="unfit for distributed DP"):
            honest_contributors(bad, colluders=1)


def test_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="honest_contributors"):
        DistributedDPConfig(honest_contributors=0)
    assert DistributedDPConfig(batch_size=64, nominal_size=256).sample_rate == 0.25
    assert DistributedDPConfig().sample_rate == 1.0


# --- utility (slow; the numbers are in the README's sweep) --------------------------------------


@pytest.mark.slow
def test_distributed_dp_reaches_sane_accuracy_at_epsilon_3() -> None:
    from clients.demo.baselines import distributed

    federation = load_federation(clients=5, alpha=0.5, seed=0)
    config = DistributedDPConfig(honest_contributors=4)
    accuracy = [
        distributed(federation, replace(config, noise_seed=s), PARAMS, model_seed=s).accuracy[-1]
        for s in (11, 12)
    ]
    assert np.mean(accuracy) >= 0.88
