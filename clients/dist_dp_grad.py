"""The integer gradient sum a distributed DP client contributes each round.

Per-example gradients come from Opacus' ``GradSampleModule``; each is clipped to L2 norm
``max_grad_norm``, scaled by the public quantization scale ``s`` and rounded to integers
by randomized rounding from a ChaCha20 stream (:func:`clients.skellam_noise.randomized_round`)
**before** the sum. One record therefore moves the sum by one integer vector ``z`` with

* ``||z||_2 <= s * max_grad_norm + sqrt(d)`` (rounding moves each coordinate by < 1), and
* ``||z||_1 <= min(||z||_2^2, sqrt(d) ||z||_2)`` (nonzero integers have ``|z_i| >= 1``),

the sensitivities the Skellam accountant charges (:func:`sensitivities`). The sum is then
clamped coordinate-wise to ``[-bound, bound]`` so that it fits the plaintext space;
clamping is 1-Lipschitz per coordinate, so it never increases either sensitivity.
This module imports torch and Opacus; :mod:`clients.dist_dp` imports it only to train.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import numpy.typing as npt
import torch
from opacus import GradSampleModule

from clients.dp_noise import NoiseStream
from clients.skellam_noise import randomized_round

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


def sensitivities(*, scale: float, max_grad_norm: float, dimension: int) -> tuple[float, float]:
    """``(l2, l1)`` sensitivity of the integer gradient sum to one record (module notes)."""
    l2 = scale * max_grad_norm + math.sqrt(dimension)
    return l2, min(l2 * l2, math.sqrt(dimension) * l2)


def integer_gradient_sum(
    model: torch.nn.Module,
    data: tuple[F32, I64],
    batch: I64,
    *,
    max_grad_norm: float,
    scale: float,
    bound: int,
    rounding: NoiseStream,
) -> I64:
    """Sum over ``batch`` of the rounded, scaled, clipped per-example gradients.

    The coordinates follow ``model.named_parameters()`` (the flattened state dict of the
    demo's MLP); the result is clamped to ``[-bound, bound]``. An empty batch gives 0.
    """
    params = [p for _, p in model.named_parameters()]
    dimension = sum(p.numel() for p in params)
    if batch.size == 0:
        return np.zeros(dimension, dtype=np.int64)
    wrapped = GradSampleModule(model, batch_first=True, loss_reduction="sum")
    x, y = torch.from_numpy(data[0][batch]), torch.from_numpy(data[1][batch])
    with warnings.catch_warnings():  # inputs never require gradients here
        warnings.filterwarnings("ignore", message=".*Full backward hook.*")
        model.zero_grad()
        loss = torch.nn.functional.cross_entropy(wrapped(x), y, reduction="sum")
        loss.backward()  # type: ignore[no-untyped-call]
    per_example = torch.cat(
        [p.grad_sample.reshape(batch.size, -1) for p in params],  # type: ignore[attr-defined]
        dim=1,
    ).to(torch.float64)
    wrapped._close()
    model.zero_grad()
    for p in params:
        p.grad_sample = None  # type: ignore[attr-defined]
    norms = per_example.norm(dim=1, keepdim=True)
    factor = torch.clamp(max_grad_norm / (norms + 1e-12), max=1.0)
    scaled = (per_example * factor * scale).numpy()
    total: I64 = np.clip(randomized_round(rounding, scaled).sum(axis=0), -bound, bound)
    return total
