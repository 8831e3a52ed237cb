"""A user's :class:`~clients.custom_trainer.CustomTrainer` bound to one client: its rounds.

:class:`BoundTrainer` implements :class:`clients.trainer.Trainer` for the training client
(:class:`clients.client.TrainingClient`). Each round it copies the model the user's
factory built (checked and fixed for Opacus once, under DP), loads the global model into
its averaged entries (:class:`~clients.custom_trainer_layout.ModelVector`), trains
``local_epochs`` with the user's optimizer and loss — under DP with the MLP's DP-SGD
(:func:`clients.dp_sgd.dp_sgd_round`: Poisson sampling and Gaussian noise from ChaCha20,
per-example clipping by Opacus) and the MLP's privacy budget
(:class:`clients.dp_account.PrivacyAccount`, ``privacy.json``) — commits the round to the
ledger, then checks and returns the model or the delta.

With ``send="delta"`` the server releases the weighted mean of the deltas; the client
keeps its model of each round (``theta-R.npy`` in its state directory) and moves it by
each release itself, from round 1's model (the roster's initial model). A client must
then take part in every round from round 1: one that missed a release stops with a
ConfigError.

Security
--------
The round is committed to the ledger *before* the update is checked: a refused update
(non-finite, out of range) is post-processing of the DP output and the round's epsilon
is spent whether or not it is sent. Under DP the batches are the sampler's, not the
data loader's: the loader's ``dataset`` and ``collate_fn`` are used, its sampler and
shuffling are not (Poisson sampling over the true records at ``q = batch_size / N~``).
The user's metrics run on the validation loader after training, are logged locally and
written to ``metrics.json`` in the state directory; they are never sent (they are not
covered by epsilon).
"""

from __future__ import annotations

import copy
import io
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clients.custom_trainer import ClientInfo, CustomTrainer, DPOptions
from clients.custom_trainer_layout import ModelVector, prepared_model
from clients.dp_account import PrivacyAccount
from clients.dp_noise import I64
from clients.durable import write_atomically
from secagg.encoding import F64
from secagg.errors import ConfigError

log = logging.getLogger("secagg.client")


@dataclass(frozen=True, kw_only=True)
class LedgerOptions:
    """The settings a custom trainer's privacy account is planned from (and fingerprinted
    by, in ``privacy.json``): the user's DP options with the deployment's rounds and the
    loader's batch size resolved."""

    target_epsilon: float
    target_delta: float
    accountant: str
    rounds: int
    local_epochs: int
    batch_size: int
    count_noise: float
    dp: bool
    noise_seed: int | None
    max_grad_norm: float
    noise_multiplier: float | None


@dataclass(frozen=True, kw_only=True)
class ClientDeployment:
    """What a bound trainer needs from the deployment (all of it public, from the roster)."""

    model_length: int
    max_abs_value: float
    rounds: int
    weight_range: tuple[int, int]
    state_dir: Path


class BoundTrainer:
    """Implements :class:`clients.trainer.Trainer` for a user's trainer (see the module).

    Built by :func:`clients.custom_trainer.bind`; raises ConfigError if the model does
    not fit the deployment (length) or cannot be trained as configured.
    """

    def __init__(
        self,
        spec: CustomTrainer,
        client: ClientInfo,
        deployment: ClientDeployment,
        *,
        noise_seed: int | None = None,
    ) -> None:
        self.spec, self.client, self.deployment = spec, client, deployment
        self.template = prepared_model(spec.model, dp=self.is_dp)  # each round: a copy
        self.vector = ModelVector.of(self.template)
        self.vector.check_length(deployment.model_length)
        self.train_loader, self.validation_loader = spec.loaders_for(client)
        dataset = self.train_loader.dataset
        batch_size = self.train_loader.batch_size
        if batch_size is None:
            raise ConfigError("the training loader needs a batch_size (the expected batch)")
        dp = spec.dp or DPOptions()  # without DP only rounds and batch size are used
        self.options = LedgerOptions(
            target_epsilon=dp.target_epsilon,
            target_delta=dp.target_delta,
            accountant=dp.accountant,
            rounds=dp.rounds or deployment.rounds,
            local_epochs=spec.local_epochs,
            batch_size=batch_size,
            count_noise=dp.count_noise,
            dp=spec.dp is not None,
            noise_seed=dp.noise_seed if noise_seed is None else noise_seed,
            max_grad_norm=dp.max_grad_norm,
            noise_multiplier=dp.noise_multiplier,
        )
        self.account = PrivacyAccount(
            self.options,
            size=len(dataset),
            state_dir=deployment.state_dir,
            client_seed=client.index,
            weight_range=deployment.weight_range,
            fingerprint={**asdict(self.options), "send": spec.send},
            noise_multiplier=self.options.noise_multiplier,
        )

    @property
    def is_dp(self) -> bool:
        """Whether the uploads are differentially private (the upload's signed DP marker)."""
        return self.spec.dp is not None

    @property
    def epsilon_spent(self) -> float:
        """Epsilon of everything in the ledger so far (0 without DP)."""
        return self.account.epsilon_spent

    @property
    def weight(self) -> int:
        """The upload weight: the noisy count under DP, ``N`` without."""
        return self.account.weight

    def train(self, global_model: F64, round_number: int) -> tuple[F64, int]:
        """One round from the global model: ``(model or delta, weight)`` (see the module)."""
        from clients.dp_sgd import dp_sgd_round

        self.account.check_budget()
        theta = self._theta(global_model, round_number)
        model = copy.deepcopy(self.template)  # integer buffers: the factory's values
        self.vector.load(model, theta)
        optimizer = self.spec.optimizer(model.parameters())
        if self.spec.dp is not None:
            steps = dp_sgd_round(
                model,
                optimizer,
                self._rows(),
                plan=self.account.plan,
                noise_multiplier=self.account.noise_multiplier,
                max_grad_norm=self.spec.dp.max_grad_norm,
                key=self.account.key(round_number),
                loss=self.spec.loss,
            )
        else:
            steps = self._plain_epochs(model, optimizer)
        self.account.commit(round_number, steps)
        vector = self.vector.vector(model)
        if self.spec.send == "delta":
            vector = vector - theta
        self.vector.check_values(vector, bound=self.deployment.max_abs_value)
        self._metrics(model, round_number)
        return vector, self.weight

    # ------------------------------------------------------------- data
    def _rows(self) -> Callable[[I64], Any]:
        """The training records at given indices, collated as the loader collates them."""
        dataset, collate = self.train_loader.dataset, self.train_loader.collate_fn

        def rows(idx: I64) -> Any:
            if idx.size:
                return collate([dataset[int(i)] for i in idx])
            return [part[:0] for part in collate([dataset[0]])]  # an empty batch, same shapes

        return rows

    def _plain_epochs(self, model: Any, optimizer: Any) -> int:
        """Non-private training: ``local_epochs`` passes over the loader as it batches."""
        steps = 0
        for _ in range(self.spec.local_epochs):
            for inputs, targets in self.train_loader:
                optimizer.zero_grad()
                self.spec.loss(model(inputs), targets).backward()
                optimizer.step()
                steps += 1
        return steps

    def _metrics(self, model: Any, round_number: int) -> None:
        if self.spec.metrics is None or self.validation_loader is None:
            return
        import torch

        model.eval()
        with torch.no_grad():
            values = {
                k: float(v) for k, v in self.spec.metrics(model, self.validation_loader).items()
            }
        path = self.deployment.state_dir / "metrics.json"
        recorded = json.loads(path.read_text()) if path.exists() else {}
        recorded[str(round_number)] = values
        write_atomically(path, json.dumps(recorded).encode())
        log.info(
            "%s: round %d: local validation %s (not sent)", self.client.name, round_number, values
        )

    # ------------------------------------------------------------- delta mode
    def _theta(self, global_model: F64, round_number: int) -> F64:
        """The model this round trains from: the global model, or in delta mode the model
        rebuilt from round 1's model and the released mean deltas."""
        if self.spec.send == "model":
            return np.asarray(global_model, dtype=np.float64)
        path = self.deployment.state_dir / f"theta-{round_number}.npy"
        if path.exists():
            return np.asarray(np.load(path), dtype=np.float64)
        if round_number == 1:
            theta = np.asarray(global_model, dtype=np.float64)
        else:
            previous = self.deployment.state_dir / f"theta-{round_number - 1}.npy"
            if not previous.exists():
                raise ConfigError(f"no model of round {round_number - 1}: a release was missed")
            theta = np.load(previous) + np.asarray(global_model, dtype=np.float64)
        buffer = io.BytesIO()
        np.save(buffer, theta)
        write_atomically(path, buffer.getvalue())
        return theta
