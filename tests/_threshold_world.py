"""The threshold tests' shared world (not a test module).

One 3-of-5 key set, ten clients with 10^5 values each in [-8, 8] and integer weights in
1..1000, and every 3-member quorum's partial decryptions. They are built once per
parameter set (about 2 s, cached) and shared by ``tests/test_threshold.py``,
``tests/test_threshold_weights.py`` and ``tests/test_threshold_noise.py``; tests must not
mutate them. Test modules import the fixtures ``world`` and ``by_quorum`` from here.
"""

from __future__ import annotations

from functools import cache
from itertools import combinations
from types import SimpleNamespace

import numpy as np
import pytest
from _support import partials_for

import secagg

N_HOLDERS, T = 5, 3
CLIENTS, LENGTH = 10, 100_000
QUORUMS = list(combinations(range(1, N_HOLDERS + 1), T))
PAIRS = list(combinations(range(1, N_HOLDERS + 1), T - 1))
MEAN_TOLERANCE = 1e-7


@cache
def world_for(params: secagg.Parameters) -> SimpleNamespace:
    """Keys, clients' vectors and weights, their ciphertexts and weighted aggregate."""
    rng = np.random.default_rng(20250101)
    keys = secagg.dealerless_keygen(n=N_HOLDERS, t=T, params=params)
    xs = rng.uniform(-8.0, 8.0, size=(CLIENTS, LENGTH))
    ws = rng.integers(1, 1001, size=CLIENTS)
    cts = [secagg.encrypt(keys.public_key, x) for x in xs]
    agg = secagg.aggregate(cts, weights=[int(w) for w in ws])
    weighted_sum = (ws[:, None].astype(np.float64) * xs).sum(axis=0)
    return SimpleNamespace(
        params=params,
        keys=keys,
        xs=xs,
        ws=ws,
        cts=cts,
        agg=agg,
        weighted_sum=weighted_sum,
        weighted_mean=weighted_sum / ws.sum(),
    )


@cache
def partials_by_quorum(params: secagg.Parameters) -> dict[tuple[int, ...], SimpleNamespace]:
    """Partials and the decrypted mean for every 3-member quorum of :func:`world_for`."""
    world = world_for(params)
    out = {}
    for quorum in QUORUMS:
        parts = partials_for(world.keys, world.agg, quorum)
        out[quorum] = SimpleNamespace(parts=parts, mean=secagg.combine(world.agg, parts))
    return out


def max_err(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.max(np.abs(a - b)))


@pytest.fixture(scope="module", name="world")
def world_fixture(params: secagg.Parameters) -> SimpleNamespace:
    """The shared world for the session's parameter set."""
    return world_for(params)


@pytest.fixture(scope="module", name="by_quorum")
def by_quorum_fixture(params: secagg.Parameters) -> dict[tuple[int, ...], SimpleNamespace]:
    """Partials and the decrypted mean for every 3-member quorum (computed once)."""
    return partials_by_quorum(params)
