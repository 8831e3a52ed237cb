"""The demo's baselines, computed in this process on the same data and seeds.

* ``federated(dp=True)``: the same federated DP run as the encrypted one, with plaintext
  aggregation (``numpy.average`` by the clients' upload weights, their noisy counts) and
  the same seeded DP noise — it shows that encryption costs no accuracy;
* ``federated(dp=False)``: the same federation without DP;
* :func:`centralized`: one model trained without DP on all clients' training data.

Each returns the test accuracy and loss of the global model after every round.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from clients.data import Federation, scale_pixels
from clients.dist_dp import DistributedDPConfig, DistributedDPTrainer
from clients.dp_model import build_model, evaluate, model_layout
from clients.dp_trainer import DPConfig, DPTrainer
from secagg.encoding import F64
from secagg.errors import PrivacyBudgetExhausted
from secagg.model_vector import flatten_state_dict, unflatten_state_dict
from secagg.params import Parameters


@dataclass
class Curve:
    """Per-round test metrics of one run, and its final model vector."""

    accuracy: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    final: F64 = field(default_factory=lambda: np.zeros(0))


def initial_vector(hidden: int, seed: int) -> F64:
    """The global model of round 1 (its flattened weights)."""
    weights, _ = flatten_state_dict(build_model(hidden, seed).state_dict())
    return weights


def test_metrics(federation: Federation, vector: F64, hidden: int) -> tuple[float, float]:
    """(accuracy, mean loss) of a global model on the held-out test split (report only)."""
    layout = model_layout(hidden)
    model = build_model(hidden, 0)
    model.load_state_dict(unflatten_state_dict(vector, layout))
    correct, total, loss = evaluate(model, scale_pixels(federation.x_test), federation.y_test)
    return correct / total, loss / total


def federated(
    federation: Federation,
    config: DPConfig,
    *,
    model_seed: int,
    budget_rounds: dict[int, int] | None = None,
) -> Curve:
    """Plaintext FedAvg with the same trainers the clients run.

    ``budget_rounds`` maps a client index to the number of rounds its budget was planned
    for (as ``secagg client --budget-rounds``); such a client drops out when it runs out.
    """
    curve = Curve()
    with tempfile.TemporaryDirectory() as tmp:
        trainers = [
            DPTrainer(
                c,
                replace(config, rounds=(budget_rounds or {}).get(i, config.rounds)),
                state_dir=Path(tmp) / f"c{i}",
                client_seed=i,
            )
            for i, c in enumerate(federation.clients)
        ]
        vector = initial_vector(config.hidden, model_seed)
        active = list(trainers)
        for rnd in range(1, config.rounds + 1):
            updates = []
            for t in list(active):
                try:
                    updates.append(t.train(vector, rnd))
                except PrivacyBudgetExhausted:
                    active.remove(t)
            vector = np.average(
                np.stack([u[0] for u in updates]), axis=0, weights=[u[1] for u in updates]
            )
            acc, loss = test_metrics(federation, vector, config.hidden)
            curve.accuracy.append(acc)
            curve.loss.append(loss)
    curve.final = vector
    return curve


def distributed(
    federation: Federation, config: DistributedDPConfig, params: Parameters, *, model_seed: int
) -> Curve:
    """Distributed DP with plaintext aggregation: the same trainers and the same release.

    The release is computed as the key holders' decryption computes it (the integer sum
    times ``2^-f``, divided by the contributors), so with the same noise seed it equals
    the encrypted run's bit for bit; ``final`` is the model, not the last release.
    """
    curve = Curve()
    with tempfile.TemporaryDirectory() as tmp:
        trainers = [
            DistributedDPTrainer(
                c, config, params=params, state_dir=Path(tmp) / f"c{i}", client_seed=i
            )
            for i, c in enumerate(federation.clients)
        ]
        served = initial_vector(config.hidden, model_seed)
        for rnd in range(1, config.rounds + 1):
            total = sum(t.train_integers(served, rnd)[0] for t in trainers)
            served = np.asarray(total, dtype=np.float64) / 2.0**params.fractional_bits
            served = served / float(len(trainers))
            model = trainers[0].apply_release(trainers[0].theta(served, rnd), served, rnd)
            acc, loss = test_metrics(federation, model, config.hidden)
            curve.accuracy.append(acc)
            curve.loss.append(loss)
            curve.final = model
    return curve


def centralized(federation: Federation, *, rounds: int, hidden: int, seed: int) -> Curve:
    """Non-private training on the pooled training data, one epoch per round."""
    import torch

    torch.manual_seed(seed)
    x = torch.from_numpy(scale_pixels(federation.x_all_train))
    y = torch.from_numpy(federation.y_all_train)
    model = build_model(hidden, seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    curve = Curve()
    for _ in range(rounds):
        order = torch.randperm(len(y))
        for start in range(0, len(y), 64):
            batch = order[start : start + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()  # type: ignore[no-untyped-call]
            opt.step()
        vector = flatten_state_dict(model.state_dict())[0]
        acc, loss = test_metrics(federation, vector, hidden)
        curve.accuracy.append(acc)
        curve.loss.append(loss)
    curve.final = vector
    return curve
