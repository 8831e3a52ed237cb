"""Integer randomness of distributed DP: Skellam noise shares and randomized rounding.

Both read a ChaCha20 keystream (:class:`clients.dp_noise.NoiseStream`) under a key from
``os.urandom`` (:class:`clients.dp_noise.RoundKey`); numpy's and torch's generators play
no part.

* :func:`poisson`: Poisson(``lam``) by Hormann's transformed rejection with squeeze
  (PTRS, *The transformed rejection method for generating Poisson random variables*,
  1993), the algorithm numpy uses for ``lam >= 10``, fed with the stream's uniforms and
  vectorised (each rejected coordinate draws again until all are accepted);
* :func:`skellam`: ``Sk(mu, mu) = Poisson(mu) - Poisson(mu)``, variance ``2 mu``. The sum
  of independent Skellams is Skellam (``Sk(mu_1, mu_1) + Sk(mu_2, mu_2) = Sk(mu_1 + mu_2,
  mu_1 + mu_2)``), so the shares of the honest contributors add up to exactly the noise
  the accountant charges (:mod:`clients.skellam_accounting`);
* :func:`randomized_round`: ``floor(x) + Bernoulli(x - floor(x))``, unbiased, and never
  more than 1 away from ``x`` per coordinate, so an L2 norm grows by at most ``sqrt(d)``.

Security
--------
PTRS is exact in real arithmetic; here it runs in float64 (its acceptance test compares
float logarithms), so the output distribution is Poisson up to float rounding in that
test, the same caveat as any floating-point sampler (see :mod:`clients.dp_noise`). The
integer output cannot leak through gaps in a float grid the way a float Gaussian added
to float data can: the mechanism's output is an integer vector. The noise is as secret
as the key; a seeded key (demo only) gives no privacy.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy.special import gammaln  # type: ignore[import-untyped]

from clients.dp_noise import NoiseStream

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: PTRS needs ``lam >= 10``; smaller means are refused (the noise is far larger here).
MIN_POISSON_MEAN = 10.0


def poisson(stream: NoiseStream, lam: float, count: int) -> I64:
    """``count`` Poisson(``lam``) draws (PTRS, see the module notes); ``lam >= 10``."""
    if not MIN_POISSON_MEAN <= lam < 2.0**52:
        raise ValueError(f"the Poisson mean must lie in [{MIN_POISSON_MEAN:g}, 2^52)")
    slam, loglam = math.sqrt(lam), math.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    log_inv_alpha = math.log(1.1239 + 1.1328 / (b - 3.4))
    vr = 0.9277 - 3.6224 / (b - 2)
    out = np.empty(count, dtype=np.int64)
    pending = np.arange(count)
    while pending.size:
        u = stream.uniform(pending.size) - 0.5
        v = stream.uniform(pending.size)
        us = 0.5 - np.abs(u)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            k = np.floor((2 * a / us + b) * u + lam + 0.43)
            fast = (us >= 0.07) & (v <= vr)
            usable = np.isfinite(k) & (k >= 0) & ~((us < 0.013) & (v > us))
            kk = np.where(usable, k, 0.0)
            lhs = np.log(v) + log_inv_alpha - np.log(a / (us * us) + b)
            slow = usable & (lhs <= -lam + kk * loglam - gammaln(kk + 1))
        accepted = fast | slow
        out[pending[accepted]] = k[accepted].astype(np.int64)
        pending = pending[~accepted]
    return out


def skellam(stream: NoiseStream, mu: float, count: int) -> I64:
    """``count`` draws of the symmetric Skellam ``Sk(mu, mu)`` (variance ``2 mu``)."""
    return poisson(stream, mu, count) - poisson(stream, mu, count)


def randomized_round(stream: NoiseStream, x: F64) -> I64:
    """Round every value of ``x`` down or up, up with probability its fractional part."""
    low = np.floor(x)
    up = stream.uniform(x.size).reshape(x.shape) <= (x - low)
    return (low + up).astype(np.int64)
