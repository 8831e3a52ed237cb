"""Internal: sampling of secrets, noise and common randomness.

Not part of the public API.

Security
--------
Secrets, Shamir coefficients and flooding noise come from ``os.urandom`` (the kernel
CSPRNG). Only the common polynomial ``a`` of key generation is expanded from a public
seed with SHAKE-256, which is the point: every key holder derives the same ``a``.
numpy's ``Generator`` is never used here.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from secagg._internal.modarith import U64, _check_modulus, add_mod, reduce_wide, signed_to_residues

ByteSource = Callable[[int], bytes]


def ternary(count: int) -> npt.NDArray[np.int64]:
    """Uniform coefficients in {-1, 0, 1} from the CSPRNG (rejection of byte 255)."""
    out = np.empty(0, dtype=np.int64)
    while out.size < count:
        raw = np.frombuffer(os.urandom(2 * (count - out.size) + 16), dtype=np.uint8)
        raw = raw[raw < 255]
        out = np.concatenate([out, (raw % 3).astype(np.int64) - 1])
    return out[:count]


def centered_binomial(count: int, eta: int) -> npt.NDArray[np.int64]:
    """Centered binomial noise: sum of ``eta`` bits minus sum of ``eta`` bits (CSPRNG)."""
    nbytes = (2 * eta * count + 7) // 8
    flat = np.unpackbits(np.frombuffer(os.urandom(nbytes), dtype=np.uint8))
    bits = flat[: 2 * eta * count].reshape(count, 2, eta).astype(np.int64)
    out: npt.NDArray[np.int64] = bits[:, 0, :].sum(axis=1) - bits[:, 1, :].sum(axis=1)
    return out


def uniform_mod(q: int, count: int, source: ByteSource = os.urandom) -> U64:
    """Uniform residues mod ``q`` by rejection sampling of 60-bit words from ``source``."""
    qq = _check_modulus(q)
    mask = np.uint64((1 << q.bit_length()) - 1)
    out = np.empty(0, dtype=np.uint64)
    while out.size < count:
        need = count - out.size
        words = np.frombuffer(source(8 * (need + need // 4 + 8)), dtype="<u8") & mask
        out = np.concatenate([out, words[words < qq].astype(np.uint64)])
    return out[:count]


class Shake256Stream:
    """A deterministic byte stream: SHAKE-256(domain || seed), read sequentially."""

    def __init__(self, domain: bytes, seed: bytes) -> None:
        self._xof = hashlib.shake_256(domain + len(seed).to_bytes(4, "big") + seed)
        self._offset = 0

    def __call__(self, n: int) -> bytes:
        end = self._offset + n
        chunk = self._xof.digest(end)[self._offset :]
        self._offset = end
        return chunk


def flooding_noise(count: int, bits: int, primes: tuple[int, ...]) -> U64:
    """Fresh flooding noise, uniform in ``[-2^bits, 2^bits)``, as residues per prime.

    Returns shape ``(len(primes), count)``. Drawn from the CSPRNG; ``bits`` may exceed 64.
    """
    if not 1 <= bits <= 120:
        raise ValueError("flooding bits must lie in [1, 120]")
    width = bits + 1  # number of random bits of U = E + 2^bits, uniform in [0, 2^(bits+1))
    if width <= 63:  # U < 2^63 and E = U - 2^bits fit int64
        raw = np.frombuffer(os.urandom(8 * count), dtype="<u8").astype(np.uint64)
        u = raw & np.uint64((1 << width) - 1)
        return signed_to_residues(u.astype(np.int64) - (1 << bits), primes)
    raw = np.frombuffer(os.urandom(16 * count), dtype="<u8").astype(np.uint64).reshape(count, 2)
    hi = raw[:, 0] & np.uint64((1 << (width - 64)) - 1)
    lo = raw[:, 1]
    out = np.empty((len(primes), count), dtype=np.uint64)
    for j, q in enumerate(primes):
        u = reduce_wide(hi, lo, 64, q)
        out[j] = add_mod(u, np.uint64((-(1 << bits)) % q), q)
    return out
