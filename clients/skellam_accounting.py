"""Privacy accounting of the distributed Skellam mechanism (``--dp distributed``).

One round of distributed DP releases ``S = sum_k x_k + sum_k Z_k``: every contributor's
integer gradient sum ``x_k`` (Poisson-sampled at a public rate ``q``, clipped, scaled and
rounded so that one record moves ``x_k`` by at most ``l2`` in L2 and ``l1`` in L1) plus
its noise share ``Z_k ~ Sk(mu_k, mu_k)`` (the difference of two Poisson(``mu_k``)). The
sum of independent Skellams is Skellam, so the shares of the ``h`` contributors assumed
honest form exactly ``Sk(mu, mu)`` with ``mu = h * mu_k``; whatever the others add is
known to the adversary in the worst case and counted as nothing.

A ledger entry records one such mechanism::

    {"mechanism": "skellam", "mu": mu, "l2": l2, "l1": l1, "sample_rate": q, "steps": T}

and epsilon composes entries in Renyi DP:

* the **Skellam mechanism** is ``(alpha, eps(alpha))``-RDP with
  ``eps(alpha) = alpha l2^2 / (4 mu) + min(((2 alpha - 1) l2^2 + 6 l1) / (16 mu^2),
  3 l1 / (4 mu))`` (Agarwal, Kairouz & Liu 2021, *The Skellam Mechanism for
  Differentially Private Federated Learning*, Theorem 3.5) -- the Gaussian's
  ``alpha / (2 z^2)`` at variance ``2 mu = (z l2)^2``, plus a correction;
* **Poisson subsampling** at rate ``q`` (add/remove one record) by the general upper
  bound of Zhu & Wang 2019 (*Poisson Subsampled Renyi Differential Privacy*, Theorem 6),
  valid for any mechanism, at integer orders ``2..256``;
* RDP to ``(eps, delta)`` by the conversion of Balle et al. 2020 (Opacus' and
  ``dp-accounting``'s ``compute_epsilon``).

Notes
-----
The general subsampling bound is much looser than the one specific to the Gaussian that
Opacus uses for local DP-SGD (at ``q = 0.2`` its per-step RDP is up to ~2.4x the
Gaussian's at low orders), so the default configuration samples every record
(``q = 1``), where no subsampling bound enters and the Skellam RDP is the Gaussian's
plus a correction below ``1e-7`` at the demo's scale. The tests recompute every reported
epsilon with ``dp-accounting``'s conversion and an independent evaluation of the bounds,
and check it is never below the PLD epsilon of the subsampled Gaussian of the same
variance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import gammaln, logsumexp  # type: ignore[import-untyped]

from secagg.errors import ConfigError

#: Integer Renyi orders the accountant evaluates.
ORDERS = tuple(range(2, 257))
#: Largest noise multiplier the planner tries before it gives up.
_MAX_NOISE_MULTIPLIER = 1_000.0


def skellam_entry(
    *, mu: float, l2: float, l1: float, sample_rate: float, steps: int
) -> dict[str, Any]:
    """A ledger entry: ``steps`` Poisson-subsampled Skellam mechanisms (see the module)."""
    if not (mu > 0 and l2 > 0 and l1 > 0 and 0 < sample_rate <= 1 and steps >= 1):
        raise ConfigError("a Skellam entry needs positive mu, l2, l1, steps and q in (0, 1]")
    return {
        "mechanism": "skellam",
        "mu": float(mu),
        "l2": float(l2),
        "l1": float(l1),
        "sample_rate": float(sample_rate),
        "steps": int(steps),
    }


def skellam_rdp(alpha: int, *, mu: float, l2: float, l1: float) -> float:
    """RDP of the multi-dimensional Skellam mechanism at order ``alpha`` (Theorem 3.5)."""
    correction = min(((2 * alpha - 1) * l2**2 + 6 * l1) / (16 * mu**2), 3 * l1 / (4 * mu))
    return alpha * l2**2 / (4 * mu) + correction


def subsampled_rdp(alpha: int, base: Sequence[float], q: float) -> float:
    """Zhu & Wang 2019, Theorem 6: RDP at ``alpha`` of the Poisson-subsampled mechanism.

    ``base[j]`` is the base mechanism's RDP at order ``j`` (indices below 2 unused).
    """
    if q >= 1.0:
        return base[alpha]
    log_q, log_1q = math.log(q), math.log1p(-q)
    terms = [
        (alpha - 1) * log_1q + math.log1p((alpha - 1) * q),
        _log_binom(alpha, 2) + 2 * log_q + (alpha - 2) * log_1q + base[2],
    ]
    for j in range(3, alpha + 1):
        terms.append(
            math.log(3.0)
            + _log_binom(alpha, j)
            + j * log_q
            + (alpha - j) * log_1q
            + (j - 1) * base[j]
        )
    return float(logsumexp(terms)) / (alpha - 1)


def _log_binom(n: int, k: int) -> float:
    return float(gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1))


def entry_rdp(entry: Mapping[str, Any]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """RDP at every order of :data:`ORDERS` of one ledger entry (all its steps)."""
    if entry.get("mechanism") != "skellam":
        raise ConfigError(f"unknown mechanism in the ledger: {entry.get('mechanism')!r}")
    mu, l2, l1 = entry["mu"], entry["l2"], entry["l1"]
    base = [0.0, 0.0] + [skellam_rdp(a, mu=mu, l2=l2, l1=l1) for a in ORDERS]
    per_step = [subsampled_rdp(a, base, entry["sample_rate"]) for a in ORDERS]
    return np.asarray(per_step) * int(entry["steps"])


def rdp_to_epsilon(rdp: Sequence[float] | npt.NDArray[np.float64], *, delta: float) -> float:
    """Smallest epsilon over the orders (Balle et al. 2020, as Opacus converts)."""
    best = math.inf
    for alpha, r in zip(ORDERS, rdp, strict=True):
        eps = r + math.log1p(-1 / alpha) - (math.log(delta) + math.log(alpha)) / (alpha - 1)
        best = min(best, eps)
    return max(0.0, best)


def ledger_epsilon(history: Sequence[Mapping[str, Any]], *, delta: float) -> float:
    """Epsilon at ``delta`` of the composition of every entry of ``history``."""
    if not history:
        return 0.0
    total = sum((entry_rdp(e) for e in history), np.zeros(len(ORDERS)))
    return rdp_to_epsilon(total, delta=delta)


def plan_noise_multiplier(
    *,
    l2: float,
    l1: float,
    sample_rate: float,
    steps: int,
    target_epsilon: float,
    delta: float,
    tolerance: float = 0.01,
) -> float:
    """The smallest ``z`` (honest noise std ``z * l2``) whose ``steps`` rounds fit the budget.

    Raises ConfigError if even ``z = 1000`` does not.
    """

    def epsilon(z: float) -> float:
        mu = (z * l2) ** 2 / 2
        entry = skellam_entry(mu=mu, l2=l2, l1=l1, sample_rate=sample_rate, steps=steps)
        return ledger_epsilon([entry], delta=delta)

    low, high = 0.0, 1.0
    while epsilon(high) > target_epsilon:
        if high >= _MAX_NOISE_MULTIPLIER:
            raise ConfigError(f"target epsilon {target_epsilon:g} cannot be met")
        low, high = high, 2 * high
    while high - low > 1e-4 and target_epsilon - epsilon(high) > tolerance:
        mid = (low + high) / 2
        if epsilon(mid) <= target_epsilon:
            high = mid
        else:
            low = mid
    return high
