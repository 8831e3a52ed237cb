"""Internal: BFV scale-and-round of RNS residues in numpy, exact.

Not part of the public API. Decrypting a combined ciphertext ``c0 + sum d_j`` means
computing, per coefficient, ``m = round(t * x / q) mod t`` where ``x`` is the integer
whose residues modulo the data primes ``q_i`` are given and ``q = prod q_i``. SEAL does
it one ciphertext at a time through a decryptor (an NTT of a zero polynomial, a product
with a key, a base conversion, plus the hand-off of every polynomial into SEAL); this
module does the same arithmetic on whole chunks with a handful of vectorised passes.

The algebra. With ``Q_i = q / q_i`` and ``v_i = Q_i^-1 mod q_i``, any integers
``x_i = x (mod q_i)`` (reduced or not) satisfy ``sum_i x_i v_i Q_i = x + k q`` for an
integer ``k``, hence

    ``t x / q = sum_i x_i * theta_i  (mod t)``,   ``theta_i = t v_i / q_i``.

Each ``x_i`` is split into 28-bit halves, ``x_i = h 2^28 + l``, and each of
``theta_i`` and ``2^28 theta_i`` (reduced mod ``t``) into an integer part (exact in
wrapping ``uint64`` arithmetic, since ``t`` is a power of two dividing ``2^64``) and a
fractional part (a double). The fractional products ``h * frac`` and ``l * frac`` are
below ``2^29`` each, so their float sum is within :func:`float_error_bound` of the
true value (about ``2^-19.5`` for 3 primes; :func:`usable` requires at most half of
:data:`_GUARD`, which holds up to 7 primes); a coefficient whose sum lies within
:data:`_GUARD` of a rounding boundary is recomputed with Python integers. The result
is therefore exactly ``round(t x / q) mod t`` for every input (no ties exist: ``q`` is
odd and ``t`` even).

Notes
-----
Requires a power-of-two ``t`` and at most ``2^57 - 1`` in each residue sum (a
combination of up to 15 reduced terms of primes below ``2^53``: :func:`usable` says
whether a parameter set qualifies; callers fall back to SEAL otherwise). Tested against
Python integers and against SEAL's decryptor in ``tests/test_rns_decode.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from secagg._internal.modarith import U64

_SPLIT = 28
_LOW_MASK = np.uint64((1 << _SPLIT) - 1)
_MAX_INPUT_BITS = 2 * _SPLIT + 1  # x_i < 2^57: halves below 2^29
_GUARD = 2.0**-16  # fractional parts this close to 1/2 are recomputed exactly


@dataclass(frozen=True)
class _Constants:
    primes: tuple[int, ...]
    t: int
    int_low: tuple[np.uint64, ...]  # integer part of theta_i, mod 2^64
    int_high: tuple[np.uint64, ...]  # integer part of 2^28 theta_i, mod 2^64
    frac_low: tuple[float, ...]  # fractional part of theta_i
    frac_high: tuple[float, ...]  # fractional part of 2^28 theta_i (mod t)


def float_error_bound(count: int) -> float:
    """An upper bound on the error of the fractional sum over ``count`` primes.

    ``2 count`` products ``h * frac`` with ``h < 2^29``: each is off by at most ``2^-24``
    (``frac``'s representation, times ``h``) plus ``2^-25`` (the product's rounding); each
    of the ``2 count`` additions by at most half an ulp of a sum below ``2 count 2^29``,
    i.e. ``2 count 2^-24``. Together at most ``(3 count + 4 count^2) 2^-25``.
    """
    return (3 * count + 4 * count * count) * 2.0**-25


def usable(primes: tuple[int, ...], t: int, terms: int) -> bool:
    """Whether sums of ``terms`` reduced residues of ``primes`` can be decoded here: a
    power-of-two ``t``, sums below ``2^57``, and a float error (:func:`float_error_bound`)
    at most half the guard band, so that a coefficient outside the band is rounded right.
    """
    widest = max(primes).bit_length() + max(terms, 1).bit_length()
    return (
        t & (t - 1) == 0
        and 2 <= t < 1 << 63
        and widest <= _MAX_INPUT_BITS
        and float_error_bound(len(primes)) <= _GUARD / 2
    )


@lru_cache(maxsize=16)
def _constants(primes: tuple[int, ...], t: int) -> _Constants:
    q = 1
    for p in primes:
        q *= p
    int_low: list[np.uint64] = []
    int_high: list[np.uint64] = []
    frac_low: list[float] = []
    frac_high: list[float] = []
    for p in primes:
        v = pow(q // p, -1, p)
        for scale, ints, fracs in ((1, int_low, frac_low), (1 << _SPLIT, int_high, frac_high)):
            num = (t * v * scale) % (t * p)  # theta * scale = num / p, reduced mod t
            whole, rest = divmod(num, p)
            ints.append(np.uint64(whole % (1 << 64)))
            fracs.append(rest / p)
    return _Constants(primes, t, tuple(int_low), tuple(int_high), tuple(frac_low), tuple(frac_high))


def scale_and_round(residues: U64, primes: tuple[int, ...], t: int) -> U64:
    """``round(t * x / q) mod t`` per coefficient; ``residues`` has shape ``(..., primes, N)``.

    The entries along the primes axis are integers congruent to ``x`` modulo each prime,
    each below ``2^57`` (reduced residues, or sums of a few of them).

    Raises
    ------
    ValueError
        A parameter set that :func:`usable` refuses, or an input too wide.
    """
    if not usable(primes, t, 1):
        raise ValueError(
            "scale_and_round needs a power-of-two t, primes below 2^56 and at most 7 of them"
        )
    if residues.shape[-2] != len(primes):
        raise ValueError(f"expected {len(primes)} residues per coefficient")
    x = np.asarray(residues, dtype=np.uint64)
    if x.size and int(x.max()) >> _MAX_INPUT_BITS:
        raise ValueError(f"residue sums must lie below 2^{_MAX_INPUT_BITS}")
    k = _constants(primes, t)
    shape = (*x.shape[:-2], x.shape[-1])
    whole = np.zeros(shape, dtype=np.uint64)
    frac = np.zeros(shape, dtype=np.float64)
    for i in range(len(primes)):
        xi = x[..., i, :]
        high = xi >> np.uint64(_SPLIT)
        low = xi & _LOW_MASK
        whole += high * k.int_high[i]  # wrapping: exact modulo 2^64, hence modulo t
        whole += low * k.int_low[i]
        frac += high.astype(np.float64) * k.frac_high[i]
        frac += low.astype(np.float64) * k.frac_low[i]
    rounded = np.floor(frac + 0.5)
    near = np.abs(frac - np.floor(frac) - 0.5) < _GUARD
    out = (whole + rounded.astype(np.uint64)) & np.uint64(t - 1)
    if near.any():
        _exact_at(out, x, near, primes, t)
    return out


def _exact_at(out: U64, x: U64, where: np.ndarray, primes: tuple[int, ...], t: int) -> None:
    """Recompute the coefficients at ``where`` with Python integers (CRT, then round)."""
    q = 1
    for p in primes:
        q *= p
    basis = [(q // p) * pow(q // p, -1, p) for p in primes]
    rows = np.moveaxis(x, -2, 0)  # (primes, ..., N)
    for index in zip(*np.nonzero(where), strict=True):
        value = sum(int(rows[(i, *index)]) * basis[i] for i in range(len(primes))) % q
        out[index] = ((2 * t * value + q) // (2 * q)) % t
