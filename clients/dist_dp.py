"""Distributed DP (``secagg client --dp distributed``): noisy integer gradient sums.

Each round a client uploads, with weight 1, the integer vector

    x_k + Z_k,   x_k = clamp(sum over a Poisson sample of round(s * clip(g_i))),
                 Z_k ~ Sk(mu_share, mu_share) per coordinate,

(:mod:`clients.dist_dp_grad`, :mod:`clients.skellam_noise`), encrypted on the integer
path. The server aggregates and the key holders release the mean ``sum_k (x_k + Z_k) /
n`` (in units of ``2^-f``); every client then moves the model itself,

    theta_{r+1} = theta_r - lr_r * release_r * 2^f / (s * batch_size),

from the roster's initial model (round 1's global model), so all clients agree; the
server and the key holders need no change. ``theta_r`` is kept in the state directory.

**Privacy unit**: add/remove one record of this client's dataset, at ``delta``. What the
client releases: its weight (1, public), its integer vector (only ever inside the
aggregate the key holders decrypt) and its epsilon. The sampling rate
``q = min(1, batch_size / nominal_size)``, the scale ``s``, the normaliser and the
number of rounds are public configuration, independent of ``N``. Epsilon is the
**central** mechanism's: the released sum carries the noise shares of at least
``honest_contributors`` clients (``min_contributors`` minus the colluders assumed; the
key holders refuse to decrypt fewer than ``min_contributors`` uploads), whose sum is
exactly ``Sk(h mu_share, h mu_share)``; the accountant is
:mod:`clients.skellam_accounting`.

Security
--------
The guarantee assumes that at most ``min_contributors - honest_contributors`` of the
contributors to a decrypted aggregate collude with the adversary, and that each round is
decrypted once (key holders lock a round to one aggregate). One upload alone carries
only ``1 / h`` of the noise variance: the scheme relies on the encryption and the key
holders for that. With ``noise_seed`` set the noise is predictable: no privacy.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clients.data import ClientData, scale_pixels
from clients.dp_model import build_model, model_layout
from clients.dp_noise import NoiseStream, RoundKey, SamplingPlan, poisson_batches
from clients.durable import write_atomically
from clients.privacy_ledger import PRIVACY_UNIT, setting_problems
from clients.skellam_accounting import ledger_epsilon, plan_noise_multiplier, skellam_entry
from clients.skellam_noise import skellam
from secagg.encoding import F64, I64, integer_limit
from secagg.errors import ConfigError, PrivacyBudgetExhausted
from secagg.model_vector import unflatten_state_dict
from secagg.params import Parameters

#: Stream of a round key that the randomized rounding reads (0-2 are dp_noise's).
ROUNDING_STREAM = 3
#: Skellam shares are refused if 40 standard deviations could leave the plaintext range.
_TAIL_SIGMAS = 40.0


@dataclass(frozen=True, kw_only=True)
class DistributedDPConfig:
    """Settings of a distributed DP client; every field is public configuration.

    Validated on construction (one :class:`~secagg.errors.ConfigError` lists every
    problem). ``honest_contributors`` is the number of contributors whose noise the
    accountant counts (``min_contributors`` minus the colluders assumed).
    """

    target_epsilon: float = 3.0
    target_delta: float = 1e-5
    max_grad_norm: float = 1.0
    rounds: int = 40
    batch_size: int = 300
    nominal_size: int = 300
    quantization_scale: float = 4096.0
    learning_rate: float = 3.0
    lr_decay: float = 0.5
    hidden: int = 128
    honest_contributors: int = 1
    noise_seed: int | None = None

    def __post_init__(self) -> None:
        problems = setting_problems(
            self,
            finite=("max_grad_norm", "learning_rate", "quantization_scale"),
            counts=("rounds", "batch_size", "nominal_size", "hidden", "honest_contributors"),
        )
        if problems:
            raise ConfigError("invalid distributed DP configuration: " + "; ".join(problems))

    @property
    def sample_rate(self) -> float:
        """The public Poisson rate ``min(1, batch_size / nominal_size)``."""
        return min(1.0, self.batch_size / self.nominal_size)

    def learning_rate_of(self, round_number: int) -> float:
        """The step size applied to round ``round_number``'s release."""
        progress = min(1.0, (round_number - 1) / self.rounds)
        return self.learning_rate * (1.0 - self.lr_decay * progress)


def apply_release(
    config: DistributedDPConfig, params: Parameters, theta: F64, release: F64, round_number: int
) -> F64:
    """``theta - lr_r * release * 2^f / (s * batch_size)``: public post-processing."""
    step = config.learning_rate_of(round_number) / (config.quantization_scale * config.batch_size)
    gradient = np.asarray(release, dtype=np.float64) * 2.0**params.fractional_bits
    return np.asarray(theta - step * gradient, dtype=np.float64)


class DistributedDPTrainer:
    """Implements :class:`clients.trainer.Trainer` for distributed DP (see the module).

    Parameters
    ----------
    data, config
        The client's private data and its public settings.
    params
        The deployment's encryption parameters (fixed-point bits and value bound).
    state_dir
        Where ``privacy.json`` (ledger, epsilon per round) and ``theta-R.npy`` live.
    client_seed
        Distinguishes clients' streams in the demo's seeded mode only.
    """

    weight = 1  # every upload of a round weighs the same: nothing about N is released
    is_dp = True

    def __init__(
        self,
        data: ClientData,
        config: DistributedDPConfig,
        *,
        params: Parameters,
        state_dir: Path,
        client_seed: int,
    ) -> None:
        from clients.dist_dp_grad import sensitivities

        self.data, self.config, self.params = data, config, params
        self.client_seed = client_seed
        self.x_train = scale_pixels(data.x_train)
        self.layout = model_layout(config.hidden)
        self.limit = integer_limit(params)
        self.l2, self.l1 = sensitivities(
            scale=config.quantization_scale,
            max_grad_norm=config.max_grad_norm,
            dimension=self.layout.size,
        )
        self.plan = SamplingPlan(
            size=len(data.y_train), sample_rate=config.sample_rate, steps=1, public_size=0
        )
        self.state_dir = state_dir
        self.state_path = state_dir / "privacy.json"
        state_dir.mkdir(parents=True, exist_ok=True)
        self.state = self._load_state()
        self.share_mu = self.state["mu"] / config.honest_contributors
        self.gradient_bound = self.limit // 2
        tail = _TAIL_SIGMAS * math.sqrt(2 * self.share_mu)
        if self.gradient_bound + tail >= self.limit:
            raise ConfigError("the noise share does not fit the plaintext space: lower the scale")

    # ------------------------------------------------------------- accounting
    def _load_state(self) -> dict[str, Any]:
        if self.state_path.exists():
            state: dict[str, Any] = json.loads(self.state_path.read_text())
            if state.get("config") != asdict(self.config) or state.get("mode") != "distributed":
                raise ConfigError(f"{self.state_path} was written with other DP settings")
            return state
        c = self.config
        z = plan_noise_multiplier(
            l2=self.l2,
            l1=self.l1,
            sample_rate=c.sample_rate,
            steps=c.rounds,
            target_epsilon=c.target_epsilon,
            delta=c.target_delta,
        )
        state = {
            "mode": "distributed",
            "config": asdict(c),
            "unit": PRIVACY_UNIT,
            "noise_multiplier": z,
            "mu": (z * self.l2) ** 2 / 2,  # of the honest contributors' noise together
            "history": [],
            "epsilon": {},
        }
        write_atomically(self.state_path, json.dumps(state).encode())
        return state

    def _entry(self) -> dict[str, Any]:
        return skellam_entry(
            mu=self.state["mu"], l2=self.l2, l1=self.l1, sample_rate=self.plan.sample_rate, steps=1
        )

    @property
    def epsilon_spent(self) -> float:
        """Epsilon of every round in the ledger so far (central, see the module)."""
        return ledger_epsilon(self.state["history"], delta=self.config.target_delta)

    def check_budget(self) -> float:
        """Epsilon after one more round; raises PrivacyBudgetExhausted if over budget."""
        projected = ledger_epsilon(
            [*self.state["history"], self._entry()], delta=self.config.target_delta
        )
        if projected > self.config.target_epsilon * (1 + 1e-6):
            raise PrivacyBudgetExhausted(
                f"another round would spend epsilon {projected:.3f} of the budget "
                f"{self.config.target_epsilon:g}"
            )
        return projected

    # ------------------------------------------------------------- the model
    def _theta_path(self, round_number: int) -> Path:
        return self.state_dir / f"theta-{round_number}.npy"

    def theta(self, global_model: F64, round_number: int) -> F64:
        """The model of round ``round_number``, from round 1's model and the releases.

        ``global_model`` is what the server serves for the round: the roster's initial
        model in round 1, the release of round ``r - 1`` after. Raises ConfigError if
        this client missed a release (it cannot rebuild the model without it).
        """
        path = self._theta_path(round_number)
        if path.exists():
            return np.asarray(np.load(path), dtype=np.float64)
        if round_number == 1:
            theta = np.asarray(global_model, dtype=np.float64)
        else:
            previous = self._theta_path(round_number - 1)
            if not previous.exists():
                raise ConfigError(f"no model of round {round_number - 1}: a release was missed")
            theta = self.apply_release(np.load(previous), global_model, round_number - 1)
        buffer = io.BytesIO()
        np.save(buffer, theta)
        write_atomically(path, buffer.getvalue())
        return theta

    def apply_release(self, theta: F64, release: F64, round_number: int) -> F64:
        """See :func:`apply_release`."""
        return apply_release(self.config, self.params, theta, release, round_number)

    # ------------------------------------------------------------- training
    def train_integers(self, global_model: F64, round_number: int) -> tuple[I64, int]:
        """This round's integer upload ``x_k + Z_k`` and its weight (1)."""
        import torch

        from clients.dist_dp_grad import integer_gradient_sum

        self.check_budget()
        torch.set_num_threads(1)
        model = build_model(self.config.hidden, 0)
        theta = self.theta(global_model, round_number)
        model.load_state_dict(unflatten_state_dict(theta, self.layout))
        key = self._key(round_number)
        batch = next(poisson_batches(key.sampling(), self.plan))
        gradient = integer_gradient_sum(
            model,
            (self.x_train, self.data.y_train),
            batch,
            max_grad_norm=self.config.max_grad_norm,
            scale=self.config.quantization_scale,
            bound=self.gradient_bound,
            rounding=NoiseStream(key.key, stream=ROUNDING_STREAM),
        )
        upload = gradient + skellam(key.noise(), self.share_mu, gradient.size)
        if int(np.abs(upload).max()) >= self.limit:  # 40 sigma: never in practice
            raise ConfigError("the noisy gradient sum left the plaintext range")
        self.state["history"].append(self._entry())
        self.state["epsilon"][str(round_number)] = self.epsilon_spent
        write_atomically(self.state_path, json.dumps(self.state).encode())
        return upload, self.weight

    def train(self, global_model: F64, round_number: int) -> tuple[F64, int]:
        """:meth:`train_integers` as the fixed-point values ``z * 2^-f`` they stand for.

        Exact: ``|z| < 2^53`` times a power of two is a float64, and the float encoder's
        ``rint(x * 2^f)`` gives back ``z`` bit for bit (tested). Prefer
        :meth:`train_integers` with :func:`secagg.ciphertext.encrypt_chunks`
        (``integers=True``; the training client streams it into its chunk file).
        """
        upload, weight = self.train_integers(global_model, round_number)
        return upload.astype(np.float64) * 2.0**-self.params.fractional_bits, weight

    def _key(self, round_number: int) -> RoundKey:
        if self.config.noise_seed is None:
            return RoundKey.fresh()
        return RoundKey.insecure_seeded(
            self.config.noise_seed, client_seed=self.client_seed, round_number=round_number
        )
