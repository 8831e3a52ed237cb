"""Bring your own model: train any PyTorch model through secagg's client.

The user describes the training; the library does the rest::

    trainer = CustomTrainer(
        model=make_model,                        # () -> torch.nn.Module
        data=make_loaders,                       # ClientInfo -> (train, validation or None)
        optimizer=lambda params: torch.optim.SGD(params, lr=0.5),
        loss=torch.nn.CrossEntropyLoss(),        # mean over the batch
        local_epochs=1,
        dp=DPOptions(target_epsilon=3.0, max_grad_norm=1.0),   # None: no DP
        send="model",                            # or "delta"
        metrics=my_metrics,                      # optional, local only
    )

and runs it with ``secagg client DIR --name c1 --trainer my_module:trainer`` or
:func:`run_client`. ``python -m clients.custom_trainer my_module:trainer`` prints the
model length a deployment needs (``secagg init --model-length``) and writes round 1's
model (``--initial-model``).

What the library does: the layout (the averaged entries of the ``state_dict``, checked
against the deployment's model length; integer buffers stay local:
:mod:`clients.custom_trainer_layout`), the bound checks (finite, within the encoding's
fixed-point range; refused, never clipped), Opacus' validation and fixes under DP
(BatchNorm becomes GroupNorm), DP-SGD with the MLP's sampler, noise and clipping, the
persisted privacy budget (``privacy.json``, the MLP's ledger) and the withdrawal when
it is spent (:mod:`clients.custom_trainer_run`).

Security
--------
``--trainer MODULE:ATTRIBUTE`` imports and runs ``MODULE`` (:func:`load_trainer`): it is
code on the client's own machine, run with the client's privileges, exactly like the
client itself; never point it at code you did not write or review. The module is found
on ``sys.path`` only (install it or set ``PYTHONPATH``); the current directory is not
added. Nothing of it is received from the server. DP is on by default (``DPOptions()``);
``dp=None`` must be asked for and is logged as a warning. Epsilon is record-level within
the client's training loader's dataset (:data:`clients.privacy_ledger.PRIVACY_UNIT`);
it covers the updates and the weight (a noisy count), not the validation metrics, which
never leave the client.
"""

from __future__ import annotations

import importlib
import logging
import math
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clients.custom_trainer_layout import ModelVector, prepared_model
from clients.privacy_ledger import ACCOUNTANTS
from secagg.encoding import F64
from secagg.errors import ConfigError

if TYPE_CHECKING:
    from clients.custom_trainer_run import BoundTrainer
    from secagg.rpc.transport import Identity

__all__ = [
    "SEND",
    "ClientInfo",
    "CustomTrainer",
    "DPOptions",
    "bind",
    "load_trainer",
    "run_client",
]

log = logging.getLogger("secagg.client")

#: What a client sends each round: its trained model, or the change it made to it.
SEND = ("model", "delta")
#: (training loader, validation loader or None): ``torch.utils.data.DataLoader``\s.
Loaders = tuple[Any, Any]


@dataclass(frozen=True, kw_only=True)
class DPOptions:
    """Differential privacy of a custom trainer (validated on construction).

    ``noise_multiplier=None`` plans the smallest one that keeps ``rounds`` rounds (default:
    the deployment's) within ``target_epsilon`` at ``target_delta``; a given one is used
    as is and the client withdraws when the next round would exceed the target.
    ``count_noise`` is the standard deviation of the noisy count sent as the weight.

    Notes
    -----
    ``noise_seed`` makes the noise predictable and gives **no** privacy (comparisons
    against a plaintext replay only; ``secagg client --insecure-noise-seed`` sets it).
    """

    target_epsilon: float = 3.0
    target_delta: float = 1e-5
    max_grad_norm: float = 1.0
    noise_multiplier: float | None = None
    accountant: str = "prv"
    rounds: int | None = None
    count_noise: float = 20.0
    noise_seed: int | None = None

    def __post_init__(self) -> None:
        positive = {"target_epsilon": self.target_epsilon, "max_grad_norm": self.max_grad_norm}
        positive["count_noise"] = self.count_noise
        if self.noise_multiplier is not None:
            positive["noise_multiplier"] = self.noise_multiplier
        problems = [
            f"{k} must be positive and finite" for k, v in positive.items() if not 0 < v < math.inf
        ]
        if not 0 < self.target_delta < 1:
            problems.append("target_delta must lie in (0, 1)")
        if self.accountant not in ACCOUNTANTS:
            problems.append(f"accountant must be one of {', '.join(ACCOUNTANTS)}")
        if self.rounds is not None and self.rounds < 1:
            problems.append("rounds must be positive")
        if problems:
            raise ConfigError("invalid DP options: " + "; ".join(problems))


@dataclass(frozen=True)
class ClientInfo:
    """Who a trainer runs for: the client's roster name, its index and every client name."""

    name: str
    index: int
    clients: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class CustomTrainer:
    """A user's training, described once for every client (see the module).

    Parameters
    ----------
    model
        Builds the model (the same architecture every call; its weights are replaced).
    data
        The loaders, or a function of the :class:`ClientInfo` returning them. Items of
        the training dataset are ``(input, target)`` pairs; under DP the loader's
        ``dataset``, ``batch_size`` and ``collate_fn`` are used, not its sampler.
    optimizer
        Builds a fresh optimizer from the model's parameters each round.
    loss
        ``loss(outputs, targets)``, reduced by the batch mean.
    local_epochs, dp, send, metrics
        Passes over the data per round; DP options (``None``: no DP); ``"model"`` or
        ``"delta"``; ``metrics(model, validation_loader) -> {name: value}`` (local only).
    """

    model: Callable[[], Any]
    data: Loaders | Callable[[ClientInfo], Loaders]
    optimizer: Callable[[Iterator[Any]], Any]
    loss: Callable[[Any, Any], Any]
    local_epochs: int = 1
    dp: DPOptions | None = field(default_factory=DPOptions)
    send: str = "model"
    metrics: Callable[[Any, Any], Mapping[str, float]] | None = None

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be callable"
            for name in ("model", "optimizer", "loss")
            if not callable(getattr(self, name))
        ]
        if self.send not in SEND:
            problems.append(f"send must be one of {', '.join(SEND)}, not {self.send!r}")
        if not isinstance(self.local_epochs, int) or isinstance(self.local_epochs, bool):
            problems.append("local_epochs must be a whole number")
        elif self.local_epochs < 1:
            problems.append("local_epochs must be positive")
        if self.metrics is not None and not callable(self.metrics):
            problems.append("metrics must be callable")
        if problems:
            raise ConfigError("invalid trainer: " + "; ".join(problems))

    def loaders_for(self, client: ClientInfo) -> Loaders:
        """(training loader, validation loader or None) of ``client``."""
        loaders = self.data(client) if callable(self.data) else self.data
        if not isinstance(loaders, tuple) or len(loaders) != 2:
            raise ConfigError("data must give (training loader, validation loader or None)")
        dataset = getattr(loaders[0], "dataset", None)
        if dataset is None or not hasattr(dataset, "__len__") or len(dataset) < 1:
            raise ConfigError("the training loader needs a non-empty map-style dataset")
        return loaders

    def model_vector(self) -> ModelVector:
        """The layout of this trainer's model (its length is the deployment's model length)."""
        return ModelVector.of(prepared_model(self.model, dp=self.dp is not None))

    def initial_model(self, seed: int = 0) -> F64:
        """Round 1's model: the factory's weights with torch seeded by ``seed``
        (torch's global generator is left as it was)."""
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = prepared_model(self.model, dp=self.dp is not None)
        return ModelVector.of(model).vector(model)


def load_trainer(path: str) -> CustomTrainer:
    """The :class:`CustomTrainer` at ``MODULE:ATTRIBUTE``, or returned by a function there.

    Raises
    ------
    ConfigError
        A one-line reason: malformed path, module not found, no such attribute, not a
        trainer. (Errors raised by the module's own code are not caught.)

    Security
    --------
    Imports and runs user code (see the module's Security section).
    """
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"trainer {path!r}: expected MODULE:ATTRIBUTE, e.g. pkg.mod:trainer")
    try:
        found: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"cannot load trainer {path!r}: no module named {exc.name!r} "
            "(install it or add its directory to PYTHONPATH)"
        ) from None
    try:
        for part in attribute.split("."):
            found = getattr(found, part)
    except AttributeError:
        raise ConfigError(
            f"cannot load trainer {path!r}: {module_name} has no {attribute}"
        ) from None
    if not isinstance(found, CustomTrainer) and callable(found):
        found = found()
    if not isinstance(found, CustomTrainer):
        raise ConfigError(
            f"cannot load trainer {path!r}: a {type(found).__name__}, not a CustomTrainer "
            "(or a function returning one)"
        )
    return found


def bind(trainer: CustomTrainer, me: Identity, *, noise_seed: int | None = None) -> BoundTrainer:
    """``trainer`` for the client ``me`` of its deployment (checked against the roster)."""
    from clients.custom_trainer_run import BoundTrainer, ClientDeployment
    from secagg.protocol.layout import DeploymentLayout

    names = tuple(c.name for c in me.roster.clients)
    if me.name not in names:
        raise ConfigError(f"{me.name!r} is not a client of the roster")
    policy = me.roster.policy
    if trainer.dp is None:
        log.warning("%s: training WITHOUT differential privacy (dp=None)", me.name)
    elif noise_seed is not None or trainer.dp.noise_seed is not None:
        log.warning("%s: DP noise is SEEDED (noise_seed): no privacy", me.name)
    deployment = ClientDeployment(
        model_length=policy.model_length,
        max_abs_value=me.roster.params.max_abs_value,
        rounds=policy.rounds,
        weight_range=(policy.min_weight, policy.max_client_weight),
        state_dir=DeploymentLayout(me.deployment).state_dir(me.name, "client"),
    )
    client = ClientInfo(me.name, names.index(me.name), names)
    return BoundTrainer(trainer, client, deployment, noise_seed=noise_seed)


def run_client(
    deployment: Path,
    name: str,
    trainer: CustomTrainer | str,
    *,
    address: str | None = None,
    stop: threading.Event | None = None,
    noise_seed: int | None = None,
) -> None:
    """Take part in every round of ``deployment`` as client ``name`` with ``trainer`` (an
    object or a ``MODULE:ATTRIBUTE`` path): what ``secagg client --trainer`` runs."""
    from clients.client import TrainingClient
    from secagg.rpc.transport import identity

    me = identity(deployment, name)
    spec = load_trainer(trainer) if isinstance(trainer, str) else trainer
    TrainingClient(me, bind(spec, me, noise_seed=noise_seed), address=address, stop=stop).run()


if __name__ == "__main__":
    # The user's module imports clients.custom_trainer, not __main__: the helper must
    # check against that module's CustomTrainer class.
    from clients.custom_trainer_cli import main

    sys.exit(main())
