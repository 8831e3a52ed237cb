"""The custom trainer API's guards (``clients/custom_trainer*.py``): every one refuses.

Each test builds a small user trainer (a few hundred random records, a tiny model) and
drives the real :class:`~clients.custom_trainer_run.BoundTrainer` or loader; the
networked run of a real CNN is ``tests/integration/test_custom_trainer.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from opacus.validators import ModuleValidator
from opacus.validators.errors import UnsupportedModuleError
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import secagg
from clients.client import trains_with_dp
from clients.custom_trainer import ClientInfo, CustomTrainer, DPOptions, load_trainer
from clients.custom_trainer_layout import ModelVector, prepared_model
from clients.custom_trainer_run import BoundTrainer, ClientDeployment
from clients.dp_noise import RoundKey, SamplingPlan
from clients.dp_sgd import dp_sgd_round
from secagg.errors import ConfigError, EncodingError, PrivacyBudgetExhausted
from secagg.protocol.deployment import init_deployment

REPO = Path(__file__).resolve().parents[1]
BOUND = secagg.Parameters.default().max_abs_value
ME = ClientInfo("c1", 0, ("c1", "c2"))


@pytest.fixture(autouse=True)
def _quiet_opacus() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def tiny() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))  # 23 values


def with_batchnorm() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))


def loaders(client: ClientInfo) -> tuple[DataLoader[Any], None]:
    rng = np.random.default_rng(client.index)  # test data, not a secret
    x = torch.from_numpy(rng.normal(size=(200, 4)).astype(np.float32))
    y = (x[:, 0] > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=32), None


def spec(**changes: Any) -> CustomTrainer:
    base: dict[str, Any] = {
        "model": tiny,
        "data": loaders,
        "optimizer": lambda params: torch.optim.SGD(params, lr=0.5),
        "loss": nn.CrossEntropyLoss(),
        "dp": DPOptions(accountant="rdp", noise_seed=1),
    }
    return CustomTrainer(**{**base, **changes})


def bound(state: Path, trainer: CustomTrainer | None = None, **deployment: Any) -> BoundTrainer:
    t = trainer or spec()
    facts: dict[str, Any] = {
        "model_length": t.model_vector().size,
        "max_abs_value": BOUND,
        "rounds": 3,
        "weight_range": (1, 10_000),
        "state_dir": state,
    }
    return BoundTrainer(t, ME, ClientDeployment(**{**facts, **deployment}))


# --------------------------------------------------------------------- layout and bounds


def test_a_model_of_another_length_than_the_deployments_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model length is 1000.*--model-length 23"):
        bound(tmp_path, model_length=1000)


def test_non_finite_values_are_refused_naming_the_entry_after_the_round_is_accounted(
    tmp_path: Path,
) -> None:
    """A diverged model is never encrypted; its round's epsilon is spent all the same
    (the refusal is post-processing of the DP output, so accounting it is the safe side)."""
    diverging = spec(optimizer=lambda params: torch.optim.SGD(params, lr=float("inf")))
    t = bound(tmp_path, diverging)
    start = diverging.initial_model(0)
    with pytest.raises(EncodingError, match=r"'0\.weight' has NaN or infinite values"):
        t.train(start, 1)
    ledger = json.loads((tmp_path / "privacy.json").read_text())
    assert len(ledger["history"]) == 2 and ledger["epsilon"]["1"] > 0  # count + round 1


def test_values_outside_the_encodings_range_are_refused_not_clipped() -> None:
    vector = ModelVector.of(tiny())
    values = np.zeros(vector.size)
    values[-1] = BOUND  # the last entry: '2.bias'
    with pytest.raises(
        EncodingError, match=r"'2\.bias'.*outside the encoding's range.*not clipped"
    ):
        vector.check_values(values, bound=BOUND)
    values[-1] = np.nextafter(BOUND, 0.0)
    vector.check_values(values, bound=BOUND)  # just inside: accepted


def test_a_factory_that_changes_the_architecture_is_refused() -> None:
    vector = ModelVector.of(tiny())
    with pytest.raises(ConfigError, match="same architecture"):
        vector.load(nn.Sequential(nn.Linear(4, 2)), np.zeros(vector.size))


# --------------------------------------------------------------------- Opacus and buffers


def test_batchnorm_is_replaced_by_groupnorm_under_dp() -> None:
    model = prepared_model(with_batchnorm, dp=True)
    assert isinstance(model[1], nn.GroupNorm)
    vector = ModelVector.of(model)
    assert vector.local == () and vector.size == 15 + 6 + 8  # Linear, GroupNorm, Linear


class Unsupported(nn.Linear):
    """A layer type the test registers with Opacus as unsupported, with no fixer."""


def test_a_module_opacus_cannot_fix_is_refused_with_its_reason() -> None:
    def refuse(module: nn.Module) -> list[UnsupportedModuleError]:
        return [UnsupportedModuleError("Unsupported layers are not private. More text")]

    ModuleValidator.VALIDATORS[Unsupported] = refuse  # Opacus' registry (no fixer for it)
    try:
        with pytest.raises(ConfigError, match=r"cannot be trained with DP-SGD: Unsupported layers"):
            prepared_model(lambda: nn.Sequential(Unsupported(4, 2)), dp=True)
        prepared_model(lambda: nn.Sequential(Unsupported(4, 2)), dp=False)  # no DP: no check
    finally:
        del ModuleValidator.VALIDATORS[Unsupported]


def test_integer_buffers_are_neither_sent_nor_averaged_and_restart_each_round(
    tmp_path: Path,
) -> None:
    """Without DP, BatchNorm stays: its running statistics (floats) are averaged like the
    parameters; num_batches_tracked (an integer) is kept local and reset each round."""
    plain = spec(model=with_batchnorm, dp=None)
    vector = plain.model_vector()
    assert vector.local == ("1.num_batches_tracked",)
    names = [e.name for e in vector.layout.entries]
    assert "1.running_mean" in names and "1.num_batches_tracked" not in names
    t = bound(tmp_path, plain)
    start = plain.initial_model(0)
    for rnd in (1, 2):
        update, weight = t.train(start, rnd)
        assert update.shape == (vector.size,) and weight == 200  # no DP: the exact count
    # Each round trained a copy of the factory's model: its counter was not carried over.
    assert int(t.template[1].num_batches_tracked) == 0
    model = prepared_model(plain.model, dp=False)
    model[1].num_batches_tracked.fill_(99)  # this client's own count ...
    vector.load(model, update)
    assert int(model[1].num_batches_tracked) == 99  # ... is not what the vector carries
    assert not trains_with_dp(t) and t.epsilon_spent == 0.0  # signed: dp=False


# --------------------------------------------------------------------- DP and the budget


def test_dp_rounds_spend_the_persisted_budget_then_withdraw(tmp_path: Path) -> None:
    t = bound(tmp_path, spec(dp=DPOptions(accountant="rdp", rounds=2, noise_seed=1)))
    start = spec().initial_model(0)
    assert trains_with_dp(t) and t.weight != 200  # signed DP marker; the noisy count, not N
    for rnd in (1, 2):
        t.train(start, rnd)
    assert 0 < t.epsilon_spent <= 3.0
    again = bound(tmp_path, spec(dp=DPOptions(accountant="rdp", rounds=2, noise_seed=1)))
    assert again.epsilon_spent == t.epsilon_spent and again.weight == t.weight
    with pytest.raises(PrivacyBudgetExhausted):
        again.train(start, 3)
    with pytest.raises(ConfigError, match="other DP settings"):
        bound(tmp_path, spec(dp=DPOptions(accountant="rdp", rounds=5, noise_seed=1)))


def test_an_empty_poisson_batch_takes_a_noise_only_step_with_a_users_loss() -> None:
    model = tiny()
    before = ModelVector.of(model).vector(model)
    dataset = loaders(ME)[0].dataset
    plan = SamplingPlan(size=200, sample_rate=1e-12, steps=2, public_size=200)  # empty

    def rows(idx: Any) -> Any:
        return dataset[torch.from_numpy(idx)]

    steps = dp_sgd_round(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        rows,
        plan=plan,
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        key=RoundKey.insecure_seeded(0, client_seed=0, round_number=1),
        loss=nn.CrossEntropyLoss(),  # NaN on an empty batch if it were called
    )
    after = ModelVector.of(model).vector(model)
    assert steps == 2 and np.isfinite(after).all() and not np.array_equal(before, after)


def test_delta_mode_sends_the_change_and_rebuilds_the_model_from_the_releases(
    tmp_path: Path,
) -> None:
    t = bound(tmp_path, spec(send="delta"))
    start = spec().initial_model(0)
    delta, _ = t.train(start, 1)
    assert np.abs(delta).max() > 0
    t.train(delta, 2)  # round 2 serves the released mean delta (one client here)
    np.testing.assert_array_equal(np.load(tmp_path / "theta-2.npy"), start + delta)
    fresh = bound(tmp_path / "late", spec(send="delta"))
    with pytest.raises(ConfigError, match="a release was missed"):
        fresh.train(delta, 2)


def test_settings_are_validated_with_every_problem_at_once() -> None:
    with pytest.raises(ConfigError, match=r"target_epsilon.*target_delta.*accountant"):
        DPOptions(target_epsilon=0, target_delta=1, accountant="moments")
    with pytest.raises(ConfigError, match=r"send must be one of model, delta.*local_epochs"):
        spec(send="gradients", local_epochs=0)
    with pytest.raises(ConfigError, match="local_epochs must be a whole number"):
        spec(local_epochs=1.5)


# --------------------------------------------------------------------- loading by path


def test_a_trainer_or_a_factory_of_one_loads_by_import_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "user_model_a.py").write_text(
        "from clients.models.digits_cnn import trainer\n"
        "def make():\n    return trainer\n"
        "def wrong():\n    return 42\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from clients.models.digits_cnn import trainer

    assert load_trainer("user_model_a:trainer") is trainer
    assert load_trainer("user_model_a:make") is trainer
    with pytest.raises(ConfigError, match=r"'user_model_a:wrong': a int, not a CustomTrainer"):
        load_trainer("user_model_a:wrong")


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("no_colon", "expected MODULE:ATTRIBUTE"),
        ("no_such_module_xyz:trainer", "no module named 'no_such_module_xyz'.*PYTHONPATH"),
        ("clients.models.digits_cnn:nope", "clients.models.digits_cnn has no nope"),
    ],
)
def test_a_bad_import_path_is_one_clear_error(path: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        load_trainer(path)


def test_secagg_client_with_a_bad_trainer_path_says_so_in_one_line(tmp_path: Path) -> None:
    init_deployment(tmp_path / "dep", clients=2, keyholders=3, threshold=2, model_length=23)
    client = ["secagg.cli", "client", str(tmp_path / "dep"), "--name", "c1", "--trainer"]
    for command in (client, ["clients.custom_trainer"]):
        result = subprocess.run(
            [sys.executable, "-m", *command, "nope_xyz:trainer"],
            cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, result.stderr
        assert len(lines) == 1 and "no module named 'nope_xyz'" in lines[0], result.stderr


def test_the_helper_prints_the_length_and_writes_round_ones_model(tmp_path: Path) -> None:
    from secagg.protocol.model_blob import decode_model

    initial = tmp_path / "initial.bin"
    path = "clients.models.digits_cnn:trainer"
    result = subprocess.run(
        [sys.executable, "-m", "clients.custom_trainer", path, "--initial-model", str(initial)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "model length 1914" in result.stdout and "--model-length 1914" in result.stdout
    rnd, vector = decode_model(initial.read_bytes(), length=1914)
    assert rnd == 1
    np.testing.assert_array_equal(vector, load_trainer(path).initial_model(0))


def test_secagg_client_refuses_mlp_dp_options_with_a_custom_trainer(tmp_path: Path) -> None:
    """`--epsilon 1` would otherwise be ignored: the trainer's own DPOptions decide."""
    init_deployment(tmp_path / "dep", clients=2, keyholders=3, threshold=2, model_length=1914)
    result = subprocess.run(
        [sys.executable, "-m", "secagg.cli", "client", str(tmp_path / "dep"), "--name", "c1",
         "--trainer", "clients.models.digits_cnn:trainer", "--epsilon", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0, result.stderr
    assert len(lines) == 1 and "--epsilon configure the built-in dp trainer only" in lines[0]


class RunningMean(nn.Module):
    """A layer that keeps a floating buffer updated from the data (as BatchNorm would)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)
        self.mean: torch.Tensor
        self.register_buffer("mean", torch.zeros(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.mean = 0.9 * self.mean + 0.1 * x.detach().mean(dim=0)
        out: torch.Tensor = self.linear(x - self.mean)
        return out


def test_a_floating_buffer_is_refused_under_dp_since_epsilon_does_not_cover_it() -> None:
    with pytest.raises(ConfigError, match="floating buffers mean"):
        prepared_model(RunningMean, dp=True)
    assert ModelVector.of(prepared_model(RunningMean, dp=False)).size == 10 + 4  # no DP: sent
