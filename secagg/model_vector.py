"""Flatten a torch ``state_dict`` to one float vector and back.

Federated averaging encrypts one vector per client; these helpers fix the order
(the ``state_dict``'s own key order) and remember names, shapes and dtypes so the
decrypted aggregate becomes a ``state_dict`` again. Only floating-point tensors are
averaged; integer buffers (e.g. BatchNorm's ``num_batches_tracked``) are refused so
they are not silently averaged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from secagg.encoding import F64
from secagg.errors import EncodingError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of one entry of a flattened ``state_dict``."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def size(self) -> int:
        """Number of values."""
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass(frozen=True)
class StateDictLayout:
    """The layout of a flattened ``state_dict``: entries in order."""

    entries: tuple[TensorSpec, ...]

    @property
    def size(self) -> int:
        """Total number of values."""
        return sum(e.size for e in self.entries)


def flatten_state_dict(state_dict: Mapping[str, torch.Tensor]) -> tuple[F64, StateDictLayout]:
    """Concatenate every floating-point tensor into one float64 vector.

    Raises
    ------
    EncodingError
        If an entry is not a floating-point tensor.
    """
    import torch

    parts: list[F64] = []
    specs: list[TensorSpec] = []
    for name, tensor in state_dict.items():
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            raise EncodingError(f"state_dict entry {name!r} is not a floating-point tensor")
        parts.append(tensor.detach().cpu().to(torch.float64).reshape(-1).numpy())
        specs.append(TensorSpec(name, tuple(tensor.shape), str(tensor.dtype).replace("torch.", "")))
    if not parts:
        raise EncodingError("state_dict has no tensors")
    return np.concatenate(parts), StateDictLayout(tuple(specs))


def unflatten_state_dict(vector: Any, layout: StateDictLayout) -> dict[str, torch.Tensor]:
    """Inverse of :func:`flatten_state_dict`."""
    import torch

    flat = np.asarray(vector, dtype=np.float64)
    if flat.shape != (layout.size,):
        raise EncodingError(f"vector has shape {flat.shape}; the layout needs ({layout.size},)")
    out: dict[str, torch.Tensor] = {}
    offset = 0
    for spec in layout.entries:
        chunk = flat[offset : offset + spec.size].reshape(spec.shape)
        out[spec.name] = torch.from_numpy(chunk.copy()).to(getattr(torch, spec.dtype))
        offset += spec.size
    return out
