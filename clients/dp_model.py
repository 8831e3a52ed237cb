"""The model the DP clients train: an MLP (64 -> hidden -> 10) Opacus can train privately.

Also its flattened layout and length (what an update and the global model are), and the
evaluation the demo reports on its public test split.
"""

from __future__ import annotations

from typing import Any

from secagg.errors import ConfigError
from secagg.model_vector import StateDictLayout, flatten_state_dict


def build_model(hidden: int, seed: int) -> Any:
    """The MLP of the original design (64 -> hidden -> 10), validated for Opacus."""
    import torch
    from opacus.validators import ModuleValidator

    # Initialize from ``seed`` without touching torch's global generator (callers own it).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = torch.nn.Sequential(
            torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10)
        )
    return checked_for_dp(model, ModuleValidator)


def checked_for_dp(model: Any, validator: Any) -> Any:
    """Fix modules Opacus cannot train privately (BatchNorm -> GroupNorm) or refuse clearly.

    Raises
    ------
    ConfigError
        Opacus' ``ModuleValidator`` still finds problems after its fixes (every one listed).
    """
    if validator.validate(model, strict=False):
        model = validator.fix(model)
        remaining = validator.validate(model, strict=False)
        if remaining:
            reasons = "; ".join(str(problem).split(". ")[0] for problem in remaining)
            raise ConfigError(f"model cannot be trained with DP-SGD: {reasons}")
    return model


def model_layout(hidden: int) -> StateDictLayout:
    """Layout of the model's flattened state dict."""
    return flatten_state_dict(build_model(hidden, 0).state_dict())[1]


def model_length(hidden: int) -> int:
    """Length of an uploaded vector: the model parameters (no metrics are released)."""
    return model_layout(hidden).size


def evaluate(model: Any, x: Any, y: Any) -> tuple[float, float, float]:
    """(correct, total, loss sum) of a model on data (the demo's public test split)."""
    import torch

    with torch.no_grad():
        logits = model(torch.from_numpy(x))
        target = torch.from_numpy(y)
        loss = torch.nn.functional.cross_entropy(logits, target, reduction="sum").item()
        correct = float((logits.argmax(dim=1) == target).sum().item())
    return correct, float(len(y)), float(loss)
