"""Issue 12: DP under its stated unit (add/remove one record), with everything accounted.

The attacker sees what a DP client releases: its signed upload weight, its model update
and its reported epsilon. Before issue 12 the weight was the exact training-set size N
(two add/remove neighbours told apart with certainty), the update carried exact
validation counts, and epsilon covered DP-SGD alone. Each test drives the real trainer
(:class:`clients.dp_trainer.DPTrainer`) and checks what it releases; the epsilon it
reports is recomputed with an independent accountant (Google's ``dp-accounting`` PLD).
"""

from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _dp_reference import assert_ledger_matches

from clients.data import ClientData, load_federation
from clients.dp_model import build_model, model_layout
from clients.dp_noise import RoundKey, SamplingPlan, noisy_count
from clients.dp_sgd import StreamNoiseOptimizer
from clients.dp_trainer import DPConfig, DPTrainer
from secagg.model_vector import flatten_state_dict

HIDDEN = 16


#: Opacus warns about its own internals (full backward hooks, secure mode) on every run.
pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def client() -> ClientData:
    """The first client of the 3-client split (411 records)."""
    return load_federation(clients=3, seed=0).clients[0]


@pytest.fixture(scope="module")
def global_model() -> np.ndarray:
    """The model a round starts from (seed 5: not the trainer's own initialization)."""
    return flatten_state_dict(build_model(HIDDEN, 5).state_dict())[0]


def removed_one(data: ClientData) -> ClientData:
    """The add/remove neighbour: the same dataset without its first record."""
    return ClientData(data.x_train[1:], data.y_train[1:])


def dp_trainer(data: ClientData, state_dir: Path, **changes: object) -> DPTrainer:
    settings: dict[str, object] = {"rounds": 3, "hidden": HIDDEN, "accountant": "rdp"}
    settings.update(changes)
    return DPTrainer(data, DPConfig(**settings), state_dir=state_dir, client_seed=0)  # type: ignore[arg-type]


def test_reported_epsilon_matches_an_independent_pld_accountant(
    client: ClientData, global_model: np.ndarray, tmp_path: Path
) -> None:
    """Acceptance 1 (unit): epsilon after each round of a short run, recomputed by PLD
    from the stored ledger (noisy count included), within 2% of what the client reports."""
    t = dp_trainer(client, tmp_path, accountant="prv", rounds=2, noise_seed=None)
    for rnd in (1, 2):
        t.train(global_model, rnd)
    state = json.loads((tmp_path / "privacy.json").read_text())
    assert state["unit"] == "add/remove one record of the client's local dataset"
    rows = assert_ledger_matches(state)
    assert [r[0] for r in rows] == [1, 2]
    assert rows[-1][1] == pytest.approx(3.0, abs=0.011)  # the plan spends the budget


def test_neighbours_upload_the_noisy_count_not_their_size(
    client: ClientData, global_model: np.ndarray, tmp_path: Path
) -> None:
    """Attack: the signed weight was N, so weight == N vs. N - 1 told the neighbours apart.
    Now the weight is the noisy count the ledger accounts for, drawn from the count
    stream; with the same (seeded) draw, neighbours' weights differ by the sensitivity."""
    weights = {}
    for name, data in (("d", client), ("d_minus_one", removed_one(client))):
        t = dp_trainer(data, tmp_path / name, noise_seed=1)
        _, weight = t.train(global_model, 1)
        state = json.loads((tmp_path / name / "privacy.json").read_text())
        assert weight == state["noisy_count"] and state["history"][0] == [20.0, 1.0, 1]
        z = RoundKey.insecure_seeded(1, client_seed=0, round_number=0).count().gaussian(1, std=20)
        assert weight == round(len(data.y_train) + float(z[0])) != len(data.y_train)
        weights[name] = weight
    assert weights["d"] - weights["d_minus_one"] in (0, 1)


def test_the_count_hides_one_record_statistically() -> None:
    """The distinguisher that was perfect (total variation 1 between the weights of N and
    N - 1) now faces two rounded Gaussians of sd 20: total variation about 0.02."""
    draws = 20_000

    def counts(size: int) -> np.ndarray:
        stream = RoundKey.fresh().count()
        return np.array(
            [noisy_count(size, std=20.0, low=1, high=10_000, stream=stream) for _ in range(draws)]
        )

    a, b = counts(411), counts(410)
    assert abs(a.mean() - 411) < 5 * 20 / math.sqrt(draws)
    assert a.std() == pytest.approx(20.0, rel=0.03)
    bins = np.arange(300, 522)
    pa, pb = (np.histogram(x, bins=bins)[0] / draws for x in (a, b))
    # Exact TV of N(0, 20^2) shifted by 1 is 0.020; sampling adds about 0.08 here.
    assert 0.5 * np.abs(pa - pb).sum() < 0.15


def test_the_normaliser_is_public_not_the_dataset_size(
    client: ClientData, global_model: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DP-SGD divides the noisy gradient sum by the expected batch size; were it q * N
    with q = 64 / N~, it would scale the released model by N / N~, a function of N."""
    seen: list[float] = []
    real_init = StreamNoiseOptimizer.__init__

    def recording(self: StreamNoiseOptimizer, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        seen.append(self.expected_batch_size)

    monkeypatch.setattr(StreamNoiseOptimizer, "__init__", recording)
    small = ClientData(client.x_train[:40], client.y_train[:40])  # N~ near 64: q may be 1
    for name, data in (("d", client), ("d1", removed_one(client)), ("s", small)):
        t = dp_trainer(data, tmp_path / name, noise_seed=3)
        t.train(global_model, 1)
        assert seen[-1] == min(64, t.state["noisy_count"])
    assert seen[0] == seen[1] == 64
    # Same released count, different true sizes: the same plan in every public respect.
    a, b = (
        SamplingPlan.for_dataset(size=n, public_size=420, batch_size=64, local_epochs=1)
        for n in (411, 410)
    )
    assert (a.sample_rate, a.steps, a.expected_batch_size) == (
        b.sample_rate,
        b.steps,
        b.expected_batch_size,
    )


def test_no_validation_metrics_are_released(
    client: ClientData, global_model: np.ndarray, tmp_path: Path
) -> None:
    """Attack: the update carried (correct, total, loss sum) of a private validation split,
    exact; with the other records known, one record's loss followed to ~1e-5. Now a
    client keeps no validation split (all its records train) and uploads the model only."""
    assert [f.name for f in fields(ClientData)] == ["x_train", "y_train"]
    vector, _ = dp_trainer(client, tmp_path, noise_seed=2).train(global_model, 1)
    assert vector.shape == (model_layout(HIDDEN).size,)
