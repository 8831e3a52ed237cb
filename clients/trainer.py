"""Local training behind the client: a small protocol and the synthetic trainer.

:class:`Trainer` is what the training client calls each round. The DP trainer of the
MLP on real data lives in :mod:`clients.dp_trainer`, users' own models in
:mod:`clients.custom_trainer`; :class:`SyntheticTrainer` is a deterministic stand-in
for service tests and benchmarks at any model size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from secagg.encoding import F64


class Trainer(Protocol):
    """Produces a client's update from the global model of a round.

    The client also reads two optional attributes into the upload it signs:
    ``epsilon_spent`` (float, default 0) and ``is_dp`` (bool, default False: the DP
    marker a ``--require-dp`` deployment checks).
    """

    def train(self, global_model: F64, round_number: int) -> tuple[F64, int]:
        """Return (new local model vector, weight).

        The weight is the client's released sample count: a DP trainer's noisy count
        (:class:`clients.dp_trainer.DPTrainer`), never its exact dataset size under DP.
        """
        ...


class SyntheticTrainer:
    """Deterministic pseudo-training: ``0.5 * global + noise(seed, round)``.

    Keeps a copy of every vector it produced in ``record_dir`` (client-local, for
    checking the released model); nothing of it leaves the client unencrypted.
    """

    def __init__(self, *, seed: int, weight: int, record_dir: Path | None = None) -> None:
        self.seed = seed
        self.weight = weight
        self.record_dir = record_dir

    def train(self, global_model: F64, round_number: int) -> tuple[F64, int]:
        """See :class:`Trainer`."""
        rng = np.random.default_rng([self.seed, round_number])  # test data, not a secret
        # 0.5 * global + u, in place: (2u + global) / 2 rounds exactly like it (scaling by 2
        # is exact) and holds one vector besides the model, not three (100M-value models)
        vector = rng.uniform(-1.0, 1.0, global_model.size)
        vector *= 2.0
        vector += global_model
        vector *= 0.5
        if self.record_dir is not None:
            self.record_dir.mkdir(parents=True, exist_ok=True)
            np.save(self.record_dir / f"round-{round_number}.npy", vector)
        return vector, self.weight
