"""Internal: Shamir secret sharing of RNS polynomials, coefficient-wise per prime.

Not part of the public API. A secret is an array of residues of shape ``(primes, N)``
(any domain: sharing is linear, so sharing NTT-form residues shares the NTT of the
polynomial). Prime ``q_j`` gets its own degree ``t-1`` polynomial per coefficient with
uniformly random higher coefficients from the CSPRNG; party ``x`` (1..n) receives the
evaluation at ``x``. Any ``t`` shares reconstruct with Lagrange coefficients at zero;
``t-1`` shares are uniformly distributed and reveal nothing. Tested for every t-subset
in ``tests/test_shamir.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from secagg._internal.modarith import U64, add_mod, mul_mod
from secagg._internal.sampling import uniform_mod


def share(secret: U64, primes: tuple[int, ...], *, n: int, t: int) -> dict[int, U64]:
    """Split ``secret`` (shape ``(primes, N)``) into ``n`` shares; any ``t`` suffice."""
    if not 1 <= t <= n:
        raise ValueError(f"need 1 <= t <= n, got t={t}, n={n}")
    if secret.shape[0] != len(primes):
        raise ValueError("secret must have one row per prime")
    width = secret.shape[1]
    shares = {x: np.empty_like(secret) for x in range(1, n + 1)}
    for j, q in enumerate(primes):
        coeffs = [secret[j]] + [uniform_mod(q, width) for _ in range(t - 1)]
        for x in range(1, n + 1):
            acc = coeffs[-1].copy()
            for c in reversed(coeffs[:-1]):  # Horner: acc = acc * x + c
                acc = add_mod(mul_mod(acc, x, q), c, q)
            shares[x][j] = acc
    return shares


def lagrange_at_zero(quorum: Iterable[int], q: int) -> dict[int, int]:
    """Lagrange coefficients ``lambda_i = prod_{m != i} m / (m - i) mod q`` for the quorum."""
    members = sorted(set(quorum))
    if any(m <= 0 or m >= q for m in members):
        raise ValueError("quorum members must be indices in 1..q-1")
    out = {}
    for i in members:
        num, den = 1, 1
        for m in members:
            if m != i:
                num = num * m % q
                den = den * (m - i) % q
        out[i] = num * pow(den, -1, q) % q
    return out


def reconstruct(shares: Mapping[int, U64], primes: tuple[int, ...]) -> U64:
    """Recombine shares at zero (correct only with at least ``t`` of them)."""
    first = next(iter(shares.values()))
    out = np.zeros_like(first)
    for j, q in enumerate(primes):
        lam = lagrange_at_zero(shares, q)
        for x, s in shares.items():
            out[j] = add_mod(out[j], mul_mod(s[j], lam[x], q), q)
    return out
