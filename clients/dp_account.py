"""A DP client's persisted privacy budget: noisy count, noise multiplier, ledger, epsilon.

:class:`PrivacyAccount` is the bookkeeping every trainer on local DP-SGD shares (the
MLP's :class:`clients.dp_trainer.DPTrainer` and the custom trainers of
:mod:`clients.custom_trainer`): it draws the noisy count once, plans the noise
multiplier once, checks the budget before each round, records each round and writes
``privacy.json`` durably (temporary file, fsync, rename, fsync of the directory). What
the entries mean and why the count and the plan are released this way:
:mod:`clients.dp_trainer` and :mod:`clients.privacy_ledger`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

from clients.dp_noise import RoundKey, SamplingPlan, noisy_count
from clients.durable import write_atomically
from clients.privacy_ledger import PRIVACY_UNIT, count_release, epsilon_of, plan_noise_multiplier
from secagg.errors import ConfigError, PrivacyBudgetExhausted

__all__ = ["LedgerSettings", "PrivacyAccount"]


class LedgerSettings(Protocol):
    """The public settings a :class:`PrivacyAccount` is planned from (:class:`DPConfig`
    has them; so does the custom trainer's, :mod:`clients.custom_trainer`)."""

    @property
    def target_epsilon(self) -> float: ...
    @property
    def target_delta(self) -> float: ...
    @property
    def accountant(self) -> str: ...
    @property
    def rounds(self) -> int: ...
    @property
    def local_epochs(self) -> int: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def count_noise(self) -> float: ...
    @property
    def dp(self) -> bool: ...
    @property
    def noise_seed(self) -> int | None: ...


class PrivacyAccount:
    """One DP client's persisted privacy state: ``privacy.json`` in its state directory.

    Holds the noisy count (drawn once), the noise multiplier (planned once for
    ``rounds`` rounds to meet ``target_epsilon``, or given), the ledger and epsilon per
    round; :meth:`check_budget` before a round, :meth:`commit` after it. Every trainer
    on local DP-SGD keeps its budget here, in the same file format.

    Parameters
    ----------
    settings
        The public settings; ``fingerprint`` (stored as ``config``) must match on restart.
    size
        The true number of training records ``N`` (private; only the sampler sees it).
    noise_multiplier
        A fixed DP-SGD noise multiplier instead of the planned one (the budget check
        then withdraws the client when it runs out).

    Security
    --------
    Deleting the state directory draws a new count and resets the ledger: the budget is
    only as durable as that directory (the server refuses a decreasing epsilon).
    """

    def __init__(
        self,
        settings: LedgerSettings,
        *,
        size: int,
        state_dir: Path,
        client_seed: int,
        weight_range: tuple[int, int],
        fingerprint: dict[str, Any],
        noise_multiplier: float | None = None,
    ) -> None:
        self.settings, self.size, self.client_seed = settings, size, client_seed
        self.weight_range, self.fingerprint = weight_range, fingerprint
        self.state_path = state_dir / "privacy.json"
        state_dir.mkdir(parents=True, exist_ok=True)
        self.state = self._load_state(noise_multiplier)
        self.plan = self._plan(self.state["noisy_count"])

    def _plan(self, public_size: int | None) -> SamplingPlan:
        return SamplingPlan.for_dataset(
            size=self.size,
            public_size=self.size if public_size is None else public_size,
            batch_size=self.settings.batch_size,
            local_epochs=self.settings.local_epochs,
        )

    def _load_state(self, noise_multiplier: float | None) -> dict[str, Any]:
        if self.state_path.exists():
            state: dict[str, Any] = json.loads(self.state_path.read_text())
            if state.get("config") != self.fingerprint:
                raise ConfigError(f"{self.state_path} was written with other DP settings")
            return state
        s = self.settings
        count, sigma, history = None, 0.0, []
        if s.dp:
            low, high = self.weight_range
            count = noisy_count(
                self.size, std=s.count_noise, low=low, high=high, stream=self.key(0).count()
            )
            history = [count_release(s.count_noise)]
            plan = self._plan(count)
            sigma = (
                plan_noise_multiplier(
                    history,
                    sample_rate=plan.sample_rate,
                    steps=s.rounds * plan.steps,
                    target_epsilon=s.target_epsilon,
                    delta=s.target_delta,
                    accountant=s.accountant,
                )
                if noise_multiplier is None
                else noise_multiplier
            )
        state = {
            "config": self.fingerprint,
            "unit": PRIVACY_UNIT if s.dp else None,
            "noisy_count": count,
            "noise_multiplier": sigma,
            "history": history,
            "epsilon": {},
        }
        self._save(state)
        return state

    def _save(self, state: dict[str, Any]) -> None:
        write_atomically(self.state_path, json.dumps(state).encode())

    def _epsilon(self, history: list[list[float]]) -> float:
        if not self.settings.dp:
            return 0.0
        delta, accountant = self.settings.target_delta, self.settings.accountant
        return epsilon_of(history, delta=delta, accountant=accountant)

    @property
    def noise_multiplier(self) -> float:
        """The DP-SGD noise multiplier of every round (0 without DP)."""
        return float(self.state["noise_multiplier"])

    @property
    def epsilon_spent(self) -> float:
        """Epsilon of everything in the ledger so far (the noisy count included)."""
        return self._epsilon(self.state["history"])

    @property
    def weight(self) -> int:
        """The upload weight: the noisy count under DP, ``N`` without."""
        count = self.state["noisy_count"]
        return self.size if count is None else int(count)

    def check_budget(self) -> float:
        """Epsilon after one more round; raises PrivacyBudgetExhausted if over budget."""
        step = [self.noise_multiplier, self.plan.sample_rate, self.plan.steps]
        projected = self._epsilon([*self.state["history"], step])
        if projected > self.settings.target_epsilon * (1 + 1e-6):
            raise PrivacyBudgetExhausted(
                f"another round would spend epsilon {projected:.3f} of the budget "
                f"{self.settings.target_epsilon:g} (spent so far {self.epsilon_spent:.3f})"
            )
        return projected

    def commit(self, round_number: int, steps: int) -> None:
        """Record a round of ``steps`` DP-SGD steps (durably) before its update leaves."""
        if self.settings.dp:
            self.state["history"].append([self.noise_multiplier, self.plan.sample_rate, steps])
        self.state["epsilon"][str(round_number)] = self.epsilon_spent
        self._save(self.state)

    def key(self, round_number: int) -> RoundKey:
        """A fresh key per use; derived from ``noise_seed`` in the demo (no privacy).

        Round 0 (never a training round) keys the noisy count.
        """
        if self.settings.noise_seed is None:
            return RoundKey.fresh()
        return RoundKey.insecure_seeded(
            self.settings.noise_seed, client_seed=self.client_seed, round_number=round_number
        )
