"""Local training with differential privacy (Opacus DP-SGD) behind the training client.

Per client: an MLP (64 -> hidden -> 10, ReLU), cross-entropy, SGD or Adam, Poisson
sampling, per-example clipping to ``max_grad_norm`` and Gaussian noise.

**Privacy unit**: add/remove one record of the client's local dataset, at
``delta = target_delta`` (:mod:`clients.privacy_ledger`). What a DP client reveals:

* its **weight**: the noisy count ``N~ = round(N + N(0, count_noise^2))``, clamped to the
  deployment's weight range, drawn once when the client's state is created, persisted in
  ``privacy.json`` and reused every round (post-processing); accounted once as a
  Gaussian mechanism of sensitivity 1;
* its **model update**, from DP-SGD whose sampling rate ``q = batch_size / N~``, step count
  and normaliser (``batch_size``) are post-processing of ``N~``
  (:class:`~clients.dp_noise.SamplingPlan`); the sampler runs over the true ``N`` records
  with that ``q``, so subsampling amplification holds for the true dataset;
* its **epsilon**, computed from the ledger (public parameters only).

Nothing else: the client keeps no validation split and releases no metrics (all of its
records train), so an update is the model vector alone (:func:`model_length`).

The noise multiplier is chosen once for the whole run (``rounds`` x local steps) so that
the composition of the noisy count and every round meets the target epsilon; it is stored
with the ledger (``history``) in the client's state directory, so the budget survives
restarts. Before each round the client checks that the round's steps keep its epsilon
within budget and otherwise raises :class:`~secagg.errors.PrivacyBudgetExhausted` (the
client then withdraws). Training data is scaled by the fixed ``(x - 8) / 8``
(:func:`~clients.data.scale_pixels`). The state is written durably (temporary file,
fsync, rename, fsync of the directory) before the update leaves the client.

Notes
-----
The Gaussian noise, the Poisson masks and the noisy count are read from ChaCha20
keystreams under fresh ``os.urandom`` keys (:mod:`clients.dp_noise`, :mod:`clients.dp_sgd`);
torch's generator plays no part in them (it only initializes the demo's models). Opacus'
``secure_mode`` is not used (torchcsprng pins torch 1.8.1); the noise sums four
Box-Muller draws as that mode does, with the floating-point caveats stated in
:mod:`clients.dp_noise`. With ``noise_seed`` set (the demo does, to compare against a
plaintext baseline with identical noise) the keys are derived from the seed, the noise
and the count are predictable and give **no** privacy; never set it in a deployment.
Without DP (``dp=False``, baselines only) the weight is the exact ``N`` and epsilon 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from clients.data import ClientData, scale_pixels
from clients.dp_account import PrivacyAccount
from clients.dp_model import build_model, model_layout, model_length
from clients.privacy_ledger import ACCOUNTANTS, setting_problems
from secagg import constants as C
from secagg.encoding import F64
from secagg.errors import ConfigError
from secagg.model_vector import flatten_state_dict, unflatten_state_dict

__all__ = [
    "ACCOUNTANTS",
    "OPTIMIZERS",
    "DPConfig",
    "DPTrainer",
    "model_length",
]

#: Local optimizers (``DPConfig.optimizer``).
OPTIMIZERS = ("sgd", "adam")
#: The weight range a trainer clamps its noisy count to unless told the policy's.
DEFAULT_WEIGHT_RANGE = (1, C.DEFAULT_MAX_TOTAL_WEIGHT)


@dataclass(frozen=True, kw_only=True)
class DPConfig:
    """Training and privacy settings of one client.

    Validated on construction (every problem is reported in one
    :class:`~secagg.errors.ConfigError`), so an invalid configuration cannot exist in
    memory. The defaults here are the one source of the defaults of ``secagg client``'s
    DP options (see :meth:`default_of`).

    ``count_noise`` is the standard deviation of the noisy count released as the upload
    weight. Alone, at the default 20, it is a Gaussian mechanism of epsilon about 0.17 at
    delta 1e-5; composed with the demo's DP-SGD (epsilon 3, ~300 records, 100 steps at
    q ~ 0.2) it adds about 0.01 (the composition is far below the sum); its cost to
    utility is a weight and a sampling rate off by about 20 records.

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
    count_noise: float = 20.0
    noise_seed: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.accountant not in ACCOUNTANTS:
            problems.append("accountant must be 'rdp' or 'prv'")
        if self.optimizer not in OPTIMIZERS:
            problems.append("optimizer must be 'sgd' or 'adam'")
        problems += setting_problems(
            self,
            finite=("max_grad_norm", "learning_rate", "count_noise"),
            counts=("rounds", "local_epochs", "batch_size", "hidden"),
        )
        if problems:
            raise ConfigError("invalid DP configuration: " + "; ".join(problems))

    @classmethod
    def default_of(cls, name: str) -> Any:
        """The default value of a field (the one source of CLI defaults; KeyError if none)."""
        return {f.name: f.default for f in fields(cls)}[name]


class DPTrainer:
    """Implements :class:`clients.trainer.Trainer` with Opacus DP-SGD on local data.

    Parameters
    ----------
    data, config
        The client's private data and its settings.
    state_dir
        Where ``privacy.json`` (the ledger, the noisy count, epsilon per round) lives.
    client_seed
        Distinguishes clients' streams in the demo's seeded mode only.
    weight_range
        The deployment's ``(min_weight, max_client_weight)``; the noisy count is clamped
        to it (post-processing), so the server never refuses the weight.

    Security
    --------
    The upload weight is the noisy count, not ``N`` (see the module notes); the count is
    drawn once and kept (:class:`PrivacyAccount`).
    """

    def __init__(
        self,
        data: ClientData,
        config: DPConfig,
        *,
        state_dir: Path,
        client_seed: int,
        weight_range: tuple[int, int] = DEFAULT_WEIGHT_RANGE,
    ) -> None:
        self.data = data
        self.config = config
        self.x_train = scale_pixels(data.x_train)
        self.layout = model_layout(config.hidden)
        self.account = PrivacyAccount(
            config,
            size=len(data.y_train),
            state_dir=state_dir,
            client_seed=client_seed,
            weight_range=weight_range,
            fingerprint=asdict(config),
        )
        self.state = self.account.state
        self.plan = self.account.plan

    @property
    def epsilon_spent(self) -> float:
        """Epsilon of everything in the ledger so far (the noisy count included)."""
        return self.account.epsilon_spent

    @property
    def is_dp(self) -> bool:
        """Whether the uploads are differentially private (what the upload's DP marker says)."""
        return self.config.dp

    @property
    def weight(self) -> int:
        """The upload weight: the noisy count under DP, ``N`` without."""
        return self.account.weight

    def check_budget(self) -> float:
        """Epsilon after one more round; raises PrivacyBudgetExhausted if over budget."""
        return self.account.check_budget()

    def train(self, global_model: F64, round_number: int) -> tuple[F64, int]:
        """One round of local DP training from the global model (see the module notes)."""
        import torch

        from clients.dp_sgd import dp_sgd_round, sgd_round

        self.check_budget()
        torch.set_num_threads(1)
        model = build_model(self.config.hidden, 0)
        model.load_state_dict(unflatten_state_dict(global_model, self.layout))
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
                noise_multiplier=self.account.noise_multiplier,
                max_grad_norm=self.config.max_grad_norm,
                key=self.account.key(round_number),
            )
        else:
            steps = sgd_round(model, opt, data, plan=self.plan, batch_size=self.config.batch_size)
        vector, _ = flatten_state_dict(model.state_dict())
        self.account.commit(round_number, steps)
        return vector, self.weight
