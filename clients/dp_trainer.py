"""Local training with differential privacy (Opacus DP-SGD) behind the training client.

Per client: an MLP (64 -> hidden -> 10, ReLU), cross-entropy, SGD or Adam, Poisson
sampling, per-example clipping to ``max_grad_norm`` and Gaussian noise. The noise
multiplier is chosen once for the whole run (``rounds`` x local steps) to meet the
target (epsilon, delta) and stored with the accountant's history in the client's state
directory, so the budget survives restarts. Before each round the client checks that the
round's steps keep its epsilon within budget and otherwise raises
:class:`~secagg.errors.PrivacyBudgetExhausted` (the client then withdraws).

Each round the client also evaluates the global model it received on its local
validation split; the counts (correct, total, loss sum) are appended to the encrypted
update divided by the client's weight, so the weighted mean the server decrypts carries
only federation-wide ratios.

The sampling rate ``q = min(1, batch_size / N)`` is computed once
(:class:`~clients.dp_noise.SamplingPlan`): the Poisson sampler executes it and the
accountant charges it. Training data is scaled by the fixed ``(x - 8) / 8``
(:func:`~clients.data.scale_pixels`). The accountant's state is written durably (temporary
file, fsync, rename, fsync of the directory) before the update leaves the client.

Notes
-----
The Gaussian noise and the Poisson masks are read from ChaCha20 keystreams under a fresh
``os.urandom`` key per round (:mod:`clients.dp_noise`, :mod:`clients.dp_sgd`); torch's
generator plays no part in them (it only initializes the demo's models). Opacus'
``secure_mode`` is not used (torchcsprng pins torch 1.8.1); the noise sums four
Box-Muller draws as that mode does, with the floating-point caveats stated in
:mod:`clients.dp_noise`. With ``noise_seed`` set (the demo does, to compare against a
plaintext baseline with identical noise) the round key is derived from the seed, the
noise is predictable and gives **no** privacy; never set it in a deployment.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from clients.data import ClientData, scale_pixels
from clients.dp_noise import RoundKey, SamplingPlan
from clients.keyholder.storage import write_atomically
from secagg.encoding import F64
from secagg.errors import ConfigError, PrivacyBudgetExhausted
from secagg.model_vector import StateDictLayout, flatten_state_dict, unflatten_state_dict

METRICS = 3  # correct, total, loss sum — appended to every update


#: Privacy accountants Opacus offers (``DPConfig.accountant``).
ACCOUNTANTS = ("rdp", "prv")
#: Local optimizers (``DPConfig.optimizer``).
OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True, kw_only=True)
class DPConfig:
    """Training and privacy settings of one client.

    Validated on construction (every problem is reported in one
    :class:`~secagg.errors.ConfigError`), so an invalid configuration cannot exist in
    memory. The defaults here are the one source of the defaults of ``secagg client``'s
    DP options (see :meth:`default_of`).

    Notes
    -----
    ``noise_seed`` makes the DP noise predictable and so removes the privacy; it exists
    for the demo's comparison against a plaintext baseline only.
    """

    target_epsilon: float = 3.0
    target_delta: float = 1e-5
    max_grad_norm: float = 1.0
    accountant: str = "prv"
    rounds: int = 20
    local_epochs: int = 1
    batch_size: int = 64
    learning_rate: float = 1.0
    lr_decay: float = 0.9  # round r uses learning_rate * (1 - lr_decay * (r - 1) / rounds)
    optimizer: str = "sgd"
    hidden: int = 128
    dp: bool = True
    noise_seed: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.accountant not in ACCOUNTANTS:
            problems.append("accountant must be 'rdp' or 'prv'")
        if self.optimizer not in OPTIMIZERS:
            problems.append("optimizer must be 'sgd' or 'adam'")
        if not 0 < self.target_epsilon < math.inf:
            problems.append("target_epsilon must be positive and finite")
        if not 0 < self.target_delta < 1:
            problems.append("target_delta must lie in (0, 1)")
        if not 0 < self.max_grad_norm < math.inf:
            problems.append("max_grad_norm must be positive and finite")
        if not 0 < self.learning_rate < math.inf:
            problems.append("learning_rate must be positive and finite")
        if not 0 <= self.lr_decay < 1:
            problems.append("lr_decay must lie in [0, 1)")
        for name in ("rounds", "local_epochs", "batch_size", "hidden"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be positive")
        if problems:
            raise ConfigError("invalid DP configuration: " + "; ".join(problems))

    @classmethod
    def default_of(cls, name: str) -> Any:
        """The default value of a field (the one source of CLI defaults; KeyError if none)."""
        return {f.name: f.default for f in fields(cls)}[name]


def build_model(hidden: int, seed: int) -> Any:
    """The MLP of the original design (64 -> hidden -> 10), validated for Opacus."""
    import torch
    from opacus.validators import ModuleValidator

    # Initialize from ``seed`` without touching torch's global generator (callers own it).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = torch.nn.Sequential(
            torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10)
        )
    return checked_for_dp(model, ModuleValidator)


def checked_for_dp(model: Any, validator: Any) -> Any:
    """Fix modules Opacus cannot train privately (BatchNorm -> GroupNorm) or refuse clearly."""
    if validator.validate(model, strict=False):
        model = validator.fix(model)
        remaining = validator.validate(model, strict=False)
        if remaining:
            raise ConfigError(f"model cannot be trained with DP-SGD: {remaining[0]}")
    return model


def model_layout(hidden: int) -> StateDictLayout:
    """Layout of the model's flattened state dict."""
    return flatten_state_dict(build_model(hidden, 0).state_dict())[1]


def model_length(hidden: int) -> int:
    """Length of an uploaded vector: model parameters plus the metric counts."""
    return model_layout(hidden).size + METRICS


def evaluate(model: Any, x: Any, y: Any) -> tuple[float, float, float]:
    """(correct, total, loss sum) of a model on data."""
    import torch

    with torch.no_grad():
        logits = model(torch.from_numpy(x))
        target = torch.from_numpy(y)
        loss = torch.nn.functional.cross_entropy(logits, target, reduction="sum").item()
        correct = float((logits.argmax(dim=1) == target).sum().item())
    return correct, float(len(y)), float(loss)


class DPTrainer:
    """Implements :class:`clients.trainer.Trainer` with Opacus DP-SGD on local data."""

    def __init__(
        self, data: ClientData, config: DPConfig, *, state_dir: Path, client_seed: int
    ) -> None:
        self.data = data
        self.config = config
        self.client_seed = client_seed
        self.x_train = scale_pixels(data.x_train)
        self.x_val = scale_pixels(data.x_val)
        self.layout = model_layout(config.hidden)
        self.state_path = state_dir / "privacy.json"
        state_dir.mkdir(parents=True, exist_ok=True)
        self.plan = SamplingPlan.for_dataset(
            size=len(data.y_train), batch_size=config.batch_size, local_epochs=config.local_epochs
        )
        self.state = self._load_state()

    # ------------------------------------------------------------- accounting
    def _load_state(self) -> dict[str, Any]:
        if self.state_path.exists():
            state: dict[str, Any] = json.loads(self.state_path.read_text())
            if state.get("config") != asdict(self.config):
                raise ConfigError(f"{self.state_path} was written with other DP settings")
            return state
        sigma = 0.0
        if self.config.dp:
            from opacus.accountants.utils import get_noise_multiplier

            sigma = float(
                get_noise_multiplier(
                    target_epsilon=self.config.target_epsilon,
                    target_delta=self.config.target_delta,
                    sample_rate=self.plan.sample_rate,
                    steps=self.config.rounds * self.plan.steps,
                    accountant=self.config.accountant,
                )
            )
        state = {
            "config": asdict(self.config),
            "noise_multiplier": sigma,
            "history": [],
            "epsilon": {},
        }
        self._save_state(state)
        return state

    def _save_state(self, state: dict[str, Any]) -> None:
        write_atomically(self.state_path, json.dumps(state).encode())

    def _epsilon(self, history: list[list[float]]) -> float:
        if not self.config.dp or not history:
            return 0.0
        from opacus.accountants import PRVAccountant, RDPAccountant

        acc = PRVAccountant() if self.config.accountant == "prv" else RDPAccountant()
        merged: dict[tuple[float, float], int] = {}
        for sigma, rate, steps in history:  # same mechanism: compose once, far faster
            merged[(sigma, rate)] = merged.get((sigma, rate), 0) + int(steps)
        acc.history = [(s, r, n) for (s, r), n in merged.items()]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(acc.get_epsilon(delta=self.config.target_delta))

    @property
    def epsilon_spent(self) -> float:
        """Epsilon spent so far (at ``target_delta``)."""
        return self._epsilon(self.state["history"])

    def check_budget(self) -> float:
        """Epsilon after one more round; raises PrivacyBudgetExhausted if over budget."""
        step = [self.state["noise_multiplier"], self.plan.sample_rate, self.plan.steps]
        projected = self._epsilon([*self.state["history"], step])
        if projected > self.config.target_epsilon * (1 + 1e-6):
            raise PrivacyBudgetExhausted(
                f"another round would spend epsilon {projected:.3f} of the budget "
                f"{self.config.target_epsilon:g} (spent so far {self.epsilon_spent:.3f})"
            )
        return projected

    # ------------------------------------------------------------- training
    def train(self, global_model: F64, round_number: int) -> tuple[F64, int]:
        """One round of local DP training from the global model (see the module notes)."""
        import torch

        from clients.dp_sgd import dp_sgd_round, sgd_round

        self.check_budget()
        torch.set_num_threads(1)
        weights, metrics_in = global_model[: self.layout.size], global_model[self.layout.size :]
        del metrics_in  # the released metrics are read by whoever reports them
        model = build_model(self.config.hidden, 0)
        model.load_state_dict(unflatten_state_dict(weights, self.layout))
        correct, total, loss_sum = evaluate(model, self.x_val, self.data.y_val)
        progress = min(1.0, (round_number - 1) / self.config.rounds)
        lr = self.config.learning_rate * (1.0 - self.config.lr_decay * progress)
        if self.config.optimizer == "sgd":
            opt: Any = torch.optim.SGD(model.parameters(), lr=lr)
        else:
            opt = torch.optim.Adam(model.parameters(), lr=lr)
        data = (self.x_train, self.data.y_train)
        if self.config.dp:
            steps = dp_sgd_round(
                model,
                opt,
                data,
                plan=self.plan,
                noise_multiplier=self.state["noise_multiplier"],
                max_grad_norm=self.config.max_grad_norm,
                key=self._round_key(round_number),
            )
        else:
            steps = sgd_round(model, opt, data, plan=self.plan, batch_size=self.config.batch_size)
        vector, _ = flatten_state_dict(model.state_dict())
        if self.config.dp:
            self.state["history"].append(
                [self.state["noise_multiplier"], self.plan.sample_rate, steps]
            )
        self.state["epsilon"][str(round_number)] = self.epsilon_spent
        self._save_state(self.state)
        weight = len(self.data.y_train)
        metrics = np.array([correct, total, loss_sum], dtype=np.float64) / weight
        return np.concatenate([vector, metrics]), weight

    def _round_key(self, round_number: int) -> RoundKey:
        """A fresh key per round; derived from ``noise_seed`` in the demo (no privacy)."""
        if self.config.noise_seed is None:
            return RoundKey.fresh()
        return RoundKey.insecure_seeded(
            self.config.noise_seed, client_seed=self.client_seed, round_number=round_number
        )
