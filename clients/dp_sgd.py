"""One round of local training: DP-SGD with our sampler and noise, or plain SGD.

For DP-SGD, Opacus computes per-example gradients (``GradSampleModule``) and clips them
(``DPOptimizer``); the Poisson masks come from :func:`clients.dp_noise.poisson_batches`
and the Gaussian noise from :class:`StreamNoiseOptimizer`, both read from the round's
ChaCha20 streams (:class:`clients.dp_noise.RoundKey`). Opacus' ``PrivacyEngine`` is not
used: its sampler and its noise draw from torch generators. This module imports torch
and Opacus; :mod:`clients.dp_trainer` imports it only when it trains.

Notes
-----
:class:`StreamNoiseOptimizer` overrides ``DPOptimizer.add_noise`` and calls two private
helpers of ``opacus.optimizers.optimizer`` (the checks that each clipped gradient is
used once); the ``opacus<1.7`` pin in pyproject.toml keeps them where they are.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import torch
from opacus import GradSampleModule
from opacus.optimizers import DPOptimizer
from opacus.optimizers.optimizer import _check_processed_flag, _mark_as_processed

from clients.dp_noise import NoiseStream, RoundKey, SamplingPlan, poisson_batches

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
#: (inputs, targets) of one batch.
Batch = tuple[torch.Tensor, torch.Tensor]
#: The rows of the training records at some indices, as one batch.
Rows = Callable[[I64], Batch]
#: A loss with mean reduction over the batch: ``loss(outputs, targets)``.
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class StreamNoiseOptimizer(DPOptimizer):  # type: ignore[misc]
    """Opacus' ``DPOptimizer`` whose noise N(0, (sigma * C)^2) is read from a NoiseStream.

    Parameters
    ----------
    optimizer
        The wrapped torch optimizer.
    noise_multiplier, max_grad_norm
        sigma and the clipping norm C.
    plan
        The sampling plan; its expected batch size divides the noisy gradient sum. That
        normaliser is public (``batch_size``, a function of the released noisy count),
        never the true dataset size: a normaliser that depends on ``N`` scales the
        released model by a function of private data.
    noise
        The round's noise stream (:meth:`clients.dp_noise.RoundKey.noise`).

    Security
    --------
    Only ``add_noise`` changes; clipping and accumulation are Opacus'. See
    :mod:`clients.dp_noise` for the floating-point caveats of the Gaussian.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        noise_multiplier: float,
        max_grad_norm: float,
        plan: SamplingPlan,
        noise: NoiseStream,
    ) -> None:
        super().__init__(
            optimizer,
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            expected_batch_size=plan.expected_batch_size,
            loss_reduction="mean",
        )
        self.noise_stream = noise

    def add_noise(self) -> None:
        """Add the stream's Gaussian noise to every clipped gradient sum (into ``p.grad``)."""
        std = self.noise_multiplier * self.max_grad_norm
        for p in self.params:
            _check_processed_flag(p.summed_grad)
            draws = self.noise_stream.gaussian(p.summed_grad.numel(), std=std)
            noise = torch.from_numpy(draws).to(p.summed_grad.dtype).view_as(p.summed_grad)
            p.grad = (p.summed_grad + noise).view_as(p)
            _mark_as_processed(p.summed_grad)


def dp_sgd_round(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data: tuple[F32, I64] | Rows,
    *,
    plan: SamplingPlan,
    noise_multiplier: float,
    max_grad_norm: float,
    key: RoundKey,
    loss: Loss | None = None,
) -> int:
    """Train ``model`` in place for ``plan.steps`` DP-SGD steps; returns the steps taken.

    Every step is taken, an empty batch's included (its update is noise only), so the
    released model is the output of exactly the mechanism the accountant charges.
    ``data`` is the records as arrays (features, labels), or a function giving the rows
    at given indices (:mod:`clients.custom_trainer`); ``loss`` defaults to the mean
    cross-entropy.
    """
    wrapped = GradSampleModule(model, batch_first=True, loss_reduction="mean")
    wrapped.forbid_grad_accumulation()
    dp_opt = StreamNoiseOptimizer(
        optimizer,
        noise_multiplier=noise_multiplier,
        max_grad_norm=max_grad_norm,
        plan=plan,
        noise=key.noise(),
    )
    rows = data if callable(data) else array_rows(data)
    steps = 0
    with warnings.catch_warnings():  # inputs never require gradients here
        warnings.filterwarnings("ignore", message=".*Full backward hook.*")
        for idx in poisson_batches(key.sampling(), plan):
            inputs, targets = rows(idx)
            dp_opt.zero_grad()
            batch_loss(wrapped(inputs), targets, idx.size, loss).backward()  # type: ignore[no-untyped-call]
            dp_opt.step()
            steps += 1
    wrapped._close()
    return steps


def array_rows(data: tuple[F32, I64]) -> Rows:
    """The rows of in-memory arrays (features, labels) at given indices."""
    x, y = torch.from_numpy(data[0]), torch.from_numpy(data[1])

    def rows(idx: I64) -> Batch:
        batch = torch.from_numpy(idx)
        return x[batch], y[batch]

    return rows


def batch_loss(
    outputs: torch.Tensor, targets: torch.Tensor, size: int, loss: Loss | None
) -> torch.Tensor:
    """The batch mean of ``loss`` (default: cross-entropy), 0 rather than NaN when empty.

    GradSampleModule (``loss_reduction="mean"``) rescales per-example gradients by the
    actual batch size. An empty batch's loss is ``0 * sum(outputs)``: no gradient, but
    the step is taken (its update is noise only).
    """
    if loss is None:
        summed = torch.nn.functional.cross_entropy(outputs, targets, reduction="sum")
        return summed / max(1, size)
    return loss(outputs, targets) if size else outputs.sum() * 0.0


def sgd_round(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data: tuple[F32, I64],
    *,
    plan: SamplingPlan,
    batch_size: int,
) -> int:
    """Non-private training: ``plan.steps`` minibatches of the local data, in order."""
    x, y = torch.from_numpy(data[0]), torch.from_numpy(data[1])
    starts = range(0, len(y), batch_size)
    for step in range(plan.steps):
        start = starts[step % len(starts)]
        optimizer.zero_grad()
        rows = slice(start, start + batch_size)
        loss = torch.nn.functional.cross_entropy(model(x[rows]), y[rows])
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    return plan.steps
