"""The demo's real data: scikit-learn's handwritten digits, split non-IID across clients.

``load_digits`` ships inside scikit-learn (1,797 8x8 images), so nothing is downloaded.
A held-out global test split serves the report only; the rest is divided among clients
with a Dirichlet label split, and each client trains on all of its share: a client keeps
no validation split, whose metrics would be one more release to account (issue 12).
Preprocessing is the fixed scaling ``(x - 8) / 8`` (:func:`scale_pixels`), which depends
on no one's data. The split is data partitioning, not a secret, so numpy's
seeded generator is fine here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ClientData:
    """One client's private data (raw pixel values 0..16), all of it for training."""

    x_train: F32
    y_train: I64


@dataclass(frozen=True)
class Federation:
    """All clients' data plus the global test split (for the report only)."""

    clients: tuple[ClientData, ...]
    x_test: F32
    y_test: I64

    @property
    def x_all_train(self) -> F32:
        """Every client's training data (for the centralized baseline)."""
        return np.concatenate([c.x_train for c in self.clients])

    @property
    def y_all_train(self) -> I64:
        """Labels of :attr:`x_all_train`."""
        return np.concatenate([c.y_train for c in self.clients])


def dirichlet_split(y: I64, clients: int, alpha: float, seed: int) -> list[I64]:
    """Index sets of a non-IID label split: per label, Dirichlet(alpha) shares per client."""
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in range(clients)]
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        cuts = (np.cumsum(rng.dirichlet([alpha] * clients)) * idx.size).astype(int)[:-1]
        for c, chunk in enumerate(np.split(idx, cuts)):
            parts[c].extend(chunk.tolist())
    return [np.array(sorted(p), dtype=np.int64) for p in parts]


def load_federation(
    *,
    clients: int,
    alpha: float = 0.5,
    seed: int = 0,
    test_fraction: float = 0.2,
) -> Federation:
    """Load the digits and split them (deterministic for a seed)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.data.astype(np.float32)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(len(y) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    parts = []
    for k, idx in enumerate(dirichlet_split(y[train], clients, alpha, seed)):
        local = train[idx][np.random.default_rng([seed, k]).permutation(idx.size)]
        parts.append(ClientData(x[local], y[local]))
    return Federation(tuple(parts), x[test], y[test])


#: Raw pixel values of the digits lie in 0..16; :func:`scale_pixels` maps them to [-1, 1].
PIXEL_CENTER = 8.0
PIXEL_HALF_RANGE = 8.0


def scale_pixels(x: F32) -> F32:
    """The fixed, data-independent scaling ``(x - 8) / 8`` of raw pixel values 0..16.

    Notes
    -----
    No statistic of anyone's data enters it, so adding, removing or replacing one record
    changes that record's own example and nothing else: the sensitivity of DP-SGD stays
    bounded by the clipping norm. (A scaler fitted on the local training data would move
    every feature of every example with one record.)
    """
    return ((x - PIXEL_CENTER) / PIXEL_HALF_RANGE).astype(np.float32)
