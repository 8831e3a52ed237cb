"""Internal: what SEAL allows for a ring degree (its primes and its 128-bit modulus size).

Not part of the public API. TenSEAL is imported lazily so that importing
:mod:`secagg.params` stays cheap.
"""

from __future__ import annotations

#: Ring degrees the parameter calculator accepts.
SUPPORTED_DEGREES = (4096, 8192, 16384, 32768)


def seal_primes(degree: int, bit_sizes: tuple[int, ...]) -> tuple[int, ...]:
    """SEAL's NTT-friendly primes of the given bit sizes for ring degree ``degree``."""
    import tenseal.sealapi as seal

    return tuple(m.value() for m in seal.CoeffModulus.Create(degree, list(bit_sizes)))


def seal_max_bits(degree: int) -> int:
    """The largest total modulus size SEAL allows at 128-bit security for ``degree``."""
    import tenseal.sealapi as seal

    return int(seal.CoeffModulus.MaxBitCount(degree, seal.SEC_LEVEL_TYPE.TC128))
