"""The model vector of a user's model: what is averaged, in what order, and its checks.

A custom trainer's update is one float vector (:mod:`clients.custom_trainer`). This
module fixes which entries of the model's ``state_dict`` it holds and checks every value
before it is encrypted:

* **averaged**: every floating-point entry — parameters and floating-point buffers
  (e.g. BatchNorm's running mean and variance when the model trains without DP) — in
  the ``state_dict``'s own order (:func:`secagg.model_vector.flatten_state_dict`);
* **kept local** (the integer-buffer policy): every entry that is not floating point
  (e.g. BatchNorm's ``num_batches_tracked``) is neither sent nor averaged; each round it
  starts from the value the model factory gave it (each round trains a copy of the
  factory's model), so it carries nothing from one round to the next and nothing of it
  leaves the client;
* **checked**: the vector's length must equal the deployment's ``model_length``, and
  every value must be finite and within the fixed-point range the encoding accepts
  (``|x| < Parameters.max_abs_value``). A value outside is refused, naming its entry,
  never clipped: clipping a weight would silently change the model the federation
  averages.

Under DP the model first passes Opacus' ``ModuleValidator``: modules it can fix are
replaced (BatchNorm becomes GroupNorm, so DP models have no BatchNorm buffers at all);
what it cannot fix is refused with every reason at once (:func:`clients.dp_model.checked_for_dp`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from clients.dp_model import checked_for_dp
from secagg.encoding import F64
from secagg.errors import ConfigError, EncodingError
from secagg.model_vector import StateDictLayout, flatten_state_dict, unflatten_state_dict

__all__ = ["ModelVector", "prepared_model"]

#: How the layout treats entries that are not floating point (said in errors and docs).
INTEGER_BUFFER_POLICY = "integer buffers stay local: not sent, not averaged, reset each round"


def prepared_model(factory: Callable[[], Any], *, dp: bool) -> Any:
    """A fresh model from ``factory``, in training mode; under DP, checked (and fixed)
    for Opacus.

    Raises
    ------
    ConfigError
        The factory does not return a ``torch.nn.Module``, Opacus cannot train it, or
        (under DP) it holds floating buffers that would be sent.
    """
    import torch

    model = factory()
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"the model factory returned {type(model).__name__}, not a torch module")
    model.train()
    if dp:
        from opacus.validators import ModuleValidator

        model = checked_for_dp(model, ModuleValidator)
        _refuse_floating_buffers(model)
    return model


def _refuse_floating_buffers(model: Any) -> None:
    """Under DP only parameters are averaged: DP-SGD bounds what one record does to the
    parameters, not to a floating buffer a module updates from the data in ``forward``
    (running statistics, a moving average), which ε would not cover.

    Raises ConfigError naming the buffers.
    """
    parameters = {name for name, _ in model.named_parameters()}
    buffers = [
        name
        for name, value in model.state_dict().items()
        if value.is_floating_point() and name not in parameters
    ]
    if buffers:
        raise ConfigError(
            f"under DP only parameters can be sent: the floating buffers {', '.join(buffers)} "
            "may hold data epsilon does not cover (register them with persistent=False, or "
            "train without DP)"
        )


@dataclass(frozen=True)
class ModelVector:
    """The averaged entries of a model (their layout) and the entries kept local.

    Build it with :meth:`of` from a prepared model; every later model (one per round)
    must have the same layout (:meth:`load` checks).
    """

    layout: StateDictLayout
    local: tuple[str, ...]

    @classmethod
    def of(cls, model: Any) -> ModelVector:
        """The layout of ``model``'s floating-point entries; the others are local."""
        averaged, local = _split(model.state_dict())
        if not averaged:
            raise ConfigError("the model has no floating-point parameters to average")
        return cls(flatten_state_dict(averaged)[1], tuple(local))

    @property
    def size(self) -> int:
        """The number of values in the vector (what ``secagg init --model-length`` takes)."""
        return self.layout.size

    def describe(self) -> str:
        """One line per entry: name, shape, values; then the local entries."""
        lines = [f"  {e.name} {list(e.shape)} {e.size}" for e in self.layout.entries]
        lines += [f"  {name} (local: {INTEGER_BUFFER_POLICY})" for name in self.local]
        return "\n".join(lines)

    def check_length(self, model_length: int) -> None:
        """Raise ConfigError unless the deployment's vectors have this model's length."""
        if model_length != self.size:
            raise ConfigError(
                f"the trainer's model has {self.size} values to average but the deployment's "
                f"model length is {model_length}: create the deployment with "
                f"`secagg init --model-length {self.size}` (`python -m clients.custom_trainer "
                "MODULE:ATTR` prints the length)"
            )

    def vector(self, model: Any) -> F64:
        """The averaged entries of ``model`` as one float64 vector."""
        averaged, _ = _split(model.state_dict())
        vector, layout = flatten_state_dict(averaged)
        if layout != self.layout:
            raise ConfigError("the model's entries changed since the layout was fixed")
        return vector

    def check_values(self, vector: F64, *, bound: float) -> None:
        """Raise EncodingError, naming the entry, if a value is non-finite or ``|x| >= bound``.

        ``bound`` is the deployment's ``Parameters.max_abs_value`` (values must stay
        strictly below it; that is the range the fixed-point encoding represents).
        """
        offset = 0
        for entry in self.layout.entries:
            part = vector[offset : offset + entry.size]
            offset += entry.size
            if not np.isfinite(part).all():
                raise EncodingError(
                    f"model entry {entry.name!r} has NaN or infinite values "
                    "(training diverged: lower the learning rate)"
                )
            worst = float(np.abs(part).max(initial=0.0))
            if worst >= bound:
                raise EncodingError(
                    f"model entry {entry.name!r} has a value of magnitude {worst:.4g}, outside "
                    f"the encoding's range |x| < {bound:.6g}: not clipped (that would change "
                    "the model); send 'delta', or keep the weights smaller"
                )

    def load(self, model: Any, vector: F64) -> None:
        """Set ``model``'s averaged entries from ``vector``; its local entries stay as they are."""
        averaged, local = _split(model.state_dict())
        if tuple(local) != self.local or flatten_state_dict(averaged)[1] != self.layout:
            raise ConfigError(
                "the model factory built a model whose entries differ from the layout "
                "(it must build the same architecture every time)"
            )
        model.load_state_dict(unflatten_state_dict(vector, self.layout), strict=False)


def _split(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(floating-point entries, other entries) of a ``state_dict``, each in its order."""
    averaged = {k: v for k, v in state.items() if v.is_floating_point()}
    return averaged, {k: v for k, v in state.items() if not v.is_floating_point()}
