"""The DP training client's trainer (``clients/dp_trainer.py``) and its data (``clients/data.py``).

Every test trains for real (Opacus DP-SGD on a ~300-sample client of the digits
federation, a fraction of a second per round) with a small MLP (``HIDDEN`` units) and a
budget planned for two or three rounds, so the accountant runs out within the test.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from clients.data import ClientData, dirichlet_split, load_federation, scale_pixels
from clients.dp_model import build_model, checked_for_dp, model_layout, model_length
from clients.dp_noise import SamplingPlan, poisson_batches
from clients.dp_trainer import DPConfig, DPTrainer
from clients.privacy_ledger import count_release, epsilon_of, plan_noise_multiplier
from secagg.errors import ConfigError, PrivacyBudgetExhausted
from secagg.model_vector import flatten_state_dict, unflatten_state_dict

HIDDEN = 16


@pytest.fixture(autouse=True)
def _quiet_opacus():  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.fixture(scope="module")
def client() -> ClientData:
    """The first client of a 3-client federation (411 samples, all for training)."""
    return load_federation(clients=3, seed=0).clients[0]


@pytest.fixture(scope="module")
def global_model() -> np.ndarray:
    """A global model that is not the trainer's own initialization (seed 5, not 0)."""
    weights, _ = flatten_state_dict(build_model(HIDDEN, 5).state_dict())
    return weights


def config(**changes: object) -> DPConfig:
    # RDP by default: Opacus' PRV accountant takes ~2 s to pick a noise multiplier.
    base: dict[str, object] = {"rounds": 3, "hidden": HIDDEN, "noise_seed": 1, "accountant": "rdp"}
    base.update(changes)
    return DPConfig(**base)  # type: ignore[arg-type]


def trainer(
    data: ClientData, state_dir: Path, cfg: DPConfig | None = None, *, client_seed: int = 0
) -> DPTrainer:
    return DPTrainer(data, cfg or config(), state_dir=state_dir, client_seed=client_seed)


def load(vector: np.ndarray) -> torch.nn.Module:
    layout = model_layout(HIDDEN)
    model: torch.nn.Module = build_model(HIDDEN, 0)
    model.load_state_dict(unflatten_state_dict(vector, layout))
    return model


# --------------------------------------------------------------------- one update


def test_update_is_the_model_alone_with_the_noisy_count_as_weight(
    client: ClientData, global_model: np.ndarray, tmp_path: Path
) -> None:
    """Issue 12: an update was the model plus (correct, total, loss sum) of a private
    validation split, released without noise. Now it is the model vector alone."""
    t = trainer(client, tmp_path)
    vector, weight = t.train(global_model, 1)

    assert vector.shape == (model_length(HIDDEN),) == (model_layout(HIDDEN).size,)
    assert weight == t.state["noisy_count"] == t.weight
    assert np.isfinite(vector).all()
    assert not np.allclose(vector, global_model)  # the client trained


# --------------------------------------------------------------------- the accountant


@pytest.mark.parametrize("accountant", ["prv", "rdp"])
def test_budget_is_spent_per_round_and_then_refused(
    client: ClientData, global_model: np.ndarray, tmp_path: Path, accountant: str
) -> None:
    t = trainer(client, tmp_path, config(rounds=3, target_epsilon=2.5, accountant=accountant))
    # Before any round: the noisy count alone (drawn and accounted at creation).
    assert (
        t.epsilon_spent
        == epsilon_of([count_release(20.0)], delta=1e-5, accountant=accountant)
        == pytest.approx(0.17, abs=0.015)
    )
    assert t.state["noise_multiplier"] > 0
    spent = []
    for rnd in (1, 2, 3):
        t.train(global_model, rnd)
        spent.append(t.epsilon_spent)
    assert spent[0] > 0 and spent[0] < spent[1] < spent[2]
    assert 0.99 * 2.5 < spent[2] <= 2.5  # the planned noise spends the whole budget
    state = json.loads((tmp_path / "privacy.json").read_text())
    assert [float(state["epsilon"][str(r)]) for r in (1, 2, 3)] == pytest.approx(spent)
    assert len(state["history"]) == 4  # the noisy count, then three rounds

    before = (tmp_path / "privacy.json").read_bytes()
    with pytest.raises(PrivacyBudgetExhausted, match=r"budget 2\.5\b") as info:
        t.train(global_model, 4)
    projected = float(re.search(r"spend epsilon ([0-9.]+)", str(info.value)).group(1))  # type: ignore[union-attr]
    assert projected > 2.5
    assert (tmp_path / "privacy.json").read_bytes() == before
    assert t.epsilon_spent == pytest.approx(spent[2])


def test_check_budget_projects_the_next_round(
    client: ClientData, global_model: np.ndarray, tmp_path: Path
) -> None:
    t = trainer(client, tmp_path, config(rounds=2))
    projected = t.check_budget()
    t.train(global_model, 1)
    assert t.epsilon_spent == pytest.approx(projected)
    assert t.check_budget() <= 3.0
    t.train(global_model, 2)
    with pytest.raises(PrivacyBudgetExhausted):
        t.check_budget()


def test_budget_survives_a_restart(
    client: ClientData, global_model: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = trainer(client, tmp_path, config(rounds=3))
    for rnd in (1, 2):
        first.train(global_model, rnd)

    def no_second_draw(*args: object, **kwargs: object) -> int:
        raise AssertionError("the noisy count was drawn again")

    monkeypatch.setattr("clients.dp_account.noisy_count", no_second_draw)
    second = trainer(client, tmp_path, config(rounds=3))
    assert second.epsilon_spent == first.epsilon_spent > 0
    assert second.state["noise_multiplier"] == first.state["noise_multiplier"]
    # The count is drawn once: a restart reuses it (a fresh draw would be a new release).
    assert second.weight == first.weight == first.state["noisy_count"]
    second.train(global_model, 3)
    assert second.epsilon_spent > first.epsilon_spent
    with pytest.raises(PrivacyBudgetExhausted):
        second.train(global_model, 4)

    third = trainer(client, tmp_path, config(rounds=3))
    assert third.epsilon_spent == second.epsilon_spent
    with pytest.raises(PrivacyBudgetExhausted):
        third.train(global_model, 4)
    assert sorted(json.loads((tmp_path / "privacy.json").read_text())["epsilon"]) == ["1", "2", "3"]


@pytest.mark.parametrize(
    "other",
    [
        {"rounds": 4},
        {"target_epsilon": 5.0},
        {"accountant": "prv"},
        {"dp": False},
        {"count_noise": 30.0},
    ],
)
def test_state_written_with_other_settings_is_refused(
    client: ClientData, global_model: np.ndarray, tmp_path: Path, other: dict[str, object]
) -> None:
    trainer(client, tmp_path, config()).train(global_model, 1)
    before = (tmp_path / "privacy.json").read_bytes()
    with pytest.raises(ConfigError, match="other DP settings"):
        trainer(client, tmp_path, config(**other))
    assert (tmp_path / "privacy.json").read_bytes() == before


# --------------------------------------------------------------------- noise


def test_noise_seed_makes_training_reproducible(
    client: ClientData, global_model: np.ndarray, tmp_path: Path
) -> None:
    def run(name: str, seed: int, client_seed: int = 0) -> np.ndarray:
        t = trainer(client, tmp_path / name, config(noise_seed=seed), client_seed=client_seed)
        return t.train(global_model, 1)[0]

    a, b = run("a", 7), run("b", 7)
    assert np.array_equal(a, b)
    assert not np.allclose(a, run("c", 8))
    assert not np.allclose(a, run("d", 7, client_seed=1))


def test_without_noise_seed_the_noise_is_not_reproducible(
    client: ClientData, global_model: np.ndarray, tmp_path: Path
) -> None:
    """Regression (fixed in cc4ebad): build_model() used to reset torch's global generator
    to seed 0 right before training, so unseeded DP noise was the same in every run."""
    a = trainer(client, tmp_path / "a", config(noise_seed=None)).train(global_model, 1)[0]
    b = trainer(client, tmp_path / "b", config(noise_seed=None)).train(global_model, 1)[0]
    assert not np.allclose(a, b)


def test_noise_and_masks_do_not_follow_torchs_generator(
    client: ClientData, global_model: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12, attack: noise and masks came from torch's Mersenne Twister, seeded per
    round with in effect 32 bits (seeds s and s + 2**32 give the same draws), so whoever
    isolates one update can brute-force the seed and strip the noise. Grant the attacker
    that seed: every torch.manual_seed call seeds 0. Two unseeded runs must still differ,
    in the Poisson masks and in the noise."""
    real_seed = torch.manual_seed
    monkeypatch.setattr(torch, "manual_seed", lambda seed: real_seed(0))
    masks: list[list[list[int]]] = []

    def recording(stream: object, plan: SamplingPlan) -> object:
        seen: list[list[int]] = []
        masks.append(seen)
        for idx in poisson_batches(stream, plan):  # type: ignore[arg-type]
            seen.append(idx.tolist())
            yield idx

    monkeypatch.setattr("clients.dp_sgd.poisson_batches", recording)
    runs = []
    for name in ("a", "b"):
        torch.manual_seed(0)
        runs.append(
            trainer(client, tmp_path / name, config(noise_seed=None)).train(global_model, 1)[0]
        )
    assert len(masks) == 2 and masks[0] != masks[1]
    assert not np.allclose(runs[0], runs[1])

    # The demo's seeded mode reproduces both (it keys the same ChaCha20 streams).
    masks.clear()
    seeded = [
        trainer(client, tmp_path / n, config(noise_seed=7)).train(global_model, 1)[0] for n in "cd"
    ]
    assert masks[0] == masks[1]
    np.testing.assert_array_equal(seeded[0], seeded[1])


def test_the_sampling_rate_accounted_is_the_rate_executed(
    client: ClientData, global_model: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12: the accountant charged q = 64/N while Opacus' DPDataLoader executed
    1/ceil(N/64) (64/329 = 0.195 against 1/6 = 0.167). Now one plan feeds both, with
    q = 64/N~ from the released noisy count N~, over the true N records."""
    executed: list[SamplingPlan] = []

    def recording(stream: object, plan: SamplingPlan) -> object:
        executed.append(plan)
        return poisson_batches(stream, plan)  # type: ignore[arg-type]

    monkeypatch.setattr("clients.dp_sgd.poisson_batches", recording)
    t = trainer(client, tmp_path)
    for rnd in (1, 2):
        t.train(global_model, rnd)
    state = json.loads((tmp_path / "privacy.json").read_text())
    count, history = state["noisy_count"], state["history"]
    assert history[0] == count_release(20.0)
    rounds = history[1:]
    assert [h[1] for h in rounds] == [p.sample_rate for p in executed] == [64 / count] * 2
    steps = round(count / 64)
    assert [h[2] for h in rounds] == [p.steps for p in executed] == [steps, steps]
    assert all(p.size == len(client.y_train) and p.public_size == count for p in executed)

    planned = plan_noise_multiplier(
        [count_release(20.0)],
        sample_rate=64 / count,
        steps=3 * steps,
        target_epsilon=3.0,
        delta=1e-5,
        accountant="rdp",
    )
    assert t.state["noise_multiplier"] == planned


def test_privacy_state_is_written_durably(
    client: ClientData, global_model: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12: privacy.json was renamed into place without fsync, so a power loss could
    bring back an older budget. Each write is now: temporary file, fsync, rename, fsync of
    the directory."""
    events: list[tuple[str, ...]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.path.realpath(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        events.append(("replace", os.path.realpath(src), os.path.realpath(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    t = trainer(client, tmp_path)  # writes the fresh state
    t.train(global_model, 1)  # writes the state after the round
    directory = os.path.realpath(tmp_path)
    state, tmp = f"{directory}/privacy.json", f"{directory}/privacy.json.tmp"
    assert events == [("fsync", tmp), ("replace", tmp, state), ("fsync", directory)] * 2
    assert json.loads(Path(state).read_text())["epsilon"]["1"] == t.epsilon_spent


def test_build_model_is_seeded_without_touching_the_global_generator() -> None:
    def weights(model: torch.nn.Module) -> np.ndarray:
        return flatten_state_dict(model.state_dict())[0]

    assert np.array_equal(weights(build_model(HIDDEN, 5)), weights(build_model(HIDDEN, 5)))
    assert not np.allclose(weights(build_model(HIDDEN, 5)), weights(build_model(HIDDEN, 6)))
    torch.manual_seed(123)
    expected = torch.rand(8)
    torch.manual_seed(123)
    build_model(HIDDEN, 0)
    assert torch.equal(torch.rand(8), expected)


def test_without_dp_training_is_plain_sgd(
    client: ClientData, global_model: np.ndarray, tmp_path: Path
) -> None:
    cfg = config(dp=False, noise_seed=3)
    t = trainer(client, tmp_path / "a", cfg)
    assert t.state["noise_multiplier"] == 0.0
    vector, _ = t.train(global_model, 1)
    assert t.epsilon_spent == 0.0
    state = json.loads((tmp_path / "a" / "privacy.json").read_text())
    assert state["history"] == [] and state["epsilon"] == {"1": 0.0}
    assert state["noisy_count"] is None and t.weight == len(client.y_train)

    # No noise: another noise seed changes nothing ...
    other = trainer(client, tmp_path / "b", config(dp=False, noise_seed=4))
    assert np.array_equal(other.train(global_model, 1)[0], vector)
    # ... and the result is exactly non-private minibatch SGD over the local data in order.
    model = load(global_model)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.learning_rate)  # round 1: no decay yet
    x = torch.from_numpy(scale_pixels(client.x_train))
    y = torch.from_numpy(client.y_train)
    steps = round(len(y) / cfg.batch_size)
    for start in range(0, steps * cfg.batch_size, cfg.batch_size):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(
            model(x[start : start + cfg.batch_size]), y[start : start + cfg.batch_size]
        )
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    expected, _ = flatten_state_dict(model.state_dict())
    np.testing.assert_allclose(vector, expected, atol=1e-6)

    dp_vector = trainer(client, tmp_path / "c", config(noise_seed=3)).train(global_model, 1)[0]
    assert np.abs(dp_vector - expected).max() > 1e-3


def test_adam_trains(client: ClientData, global_model: np.ndarray, tmp_path: Path) -> None:
    t = trainer(client, tmp_path, config(optimizer="adam", learning_rate=0.01))
    vector, _ = t.train(global_model, 1)
    assert np.isfinite(vector).all() and 0 < t.epsilon_spent <= 3.0


# --------------------------------------------------------------------- model checks


def test_checked_for_dp_replaces_batchnorm() -> None:
    from opacus.validators import ModuleValidator

    model = torch.nn.Sequential(
        torch.nn.Linear(64, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(), torch.nn.Linear(16, 10)
    )
    assert ModuleValidator.validate(model, strict=False) != []
    fixed = checked_for_dp(model, ModuleValidator)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in fixed.modules())
    assert ModuleValidator.validate(fixed, strict=False) == []
    assert fixed(torch.randn(4, 64)).shape == (4, 10)


def test_checked_for_dp_keeps_a_valid_model() -> None:
    from opacus.validators import ModuleValidator

    model = torch.nn.Sequential(torch.nn.Linear(64, 8), torch.nn.ReLU(), torch.nn.Linear(8, 10))
    assert checked_for_dp(model, ModuleValidator) is model
    assert ModuleValidator.validate(build_model(HIDDEN, 0), strict=False) == []


def test_checked_for_dp_refuses_what_cannot_be_fixed() -> None:
    class Stubborn:
        """A validator whose fix never helps."""

        def validate(self, model: object, strict: bool) -> list[str]:
            return ["UnfixableLayer cannot be trained privately"]

        def fix(self, model: object) -> object:
            return model

    with pytest.raises(ConfigError, match="UnfixableLayer"):
        checked_for_dp(torch.nn.Linear(2, 2), Stubborn())


# --------------------------------------------------------------------- data


def test_dirichlet_split_is_a_deterministic_partition() -> None:
    y = load_federation(clients=1, seed=0).y_all_train
    parts = dirichlet_split(y, 5, 0.5, seed=3)
    assert len(parts) == 5
    merged = np.concatenate(parts)
    assert merged.size == y.size
    assert np.array_equal(np.sort(merged), np.arange(y.size))
    again = dirichlet_split(y, 5, 0.5, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    other = dirichlet_split(y, 5, 0.5, seed=4)
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other, strict=True))
    # Non-IID: with alpha 0.5 some client's label mix is far from the global one.
    share = np.bincount(y, minlength=10) / y.size
    skew = max(
        np.abs(np.bincount(y[p], minlength=10) / max(p.size, 1) - share).max() for p in parts
    )
    assert skew > 0.1


def test_load_federation_keeps_the_test_split_apart_and_trains_on_the_rest() -> None:
    from sklearn.datasets import load_digits

    fed = load_federation(clients=3, seed=0)

    def rows(x: np.ndarray, y: np.ndarray) -> Counter[bytes]:
        return Counter(
            xi.astype(np.float32).tobytes() + bytes([int(yi)]) for xi, yi in zip(x, y, strict=True)
        )

    digits = load_digits()
    every = rows(digits.data, digits.target)  # the 1,797 images are pairwise distinct
    test = rows(fed.x_test, fed.y_test)
    assert len(fed.y_test) == int(len(digits.target) * 0.2)
    seen = Counter(test)
    for c in fed.clients:
        train = rows(c.x_train, c.y_train)
        assert not set(train) & set(test)
        seen += train
    assert seen == every  # every sample in exactly one place
    same = load_federation(clients=3, seed=0)
    assert np.array_equal(same.clients[1].x_train, fed.clients[1].x_train)
    assert np.array_equal(same.x_test, fed.x_test)


def test_scaling_is_fixed_so_one_record_changes_only_its_own_example(tmp_path: Path) -> None:
    """Neighbours: the trainer's inputs differ in the changed row only.

    A scaler fitted on the local training data (LocalScaler, before issue 12) moved every
    feature of every example with the one record."""
    data = load_federation(clients=3, seed=0).clients[0]
    x = data.x_train.copy()
    x[0] = 16.0 - x[0]  # another record in the same place
    neighbour = ClientData(x, data.y_train)
    a = trainer(data, tmp_path / "a")
    b = trainer(neighbour, tmp_path / "b")
    assert not np.array_equal(a.x_train[0], b.x_train[0])
    np.testing.assert_array_equal(a.x_train[1:], b.x_train[1:])
    z = scale_pixels(np.array([[0.0, 8.0, 16.0]], dtype=np.float32))
    assert z.dtype == np.float32 and z.tolist() == [[-1.0, 0.0, 1.0]]
