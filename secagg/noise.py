"""The noise model of a fresh BFV encryption, which sizes the flooding noise.

A fresh public-key BFV encryption under SEAL (encrypted at key level, then divided by the
special prime) carries noise ``|v| <= 1 + ||r * s||_inf`` where ``r`` has coefficients in
``[-1/2, 1/2]`` and ``s`` is the joint secret, a sum of at most ``max_keyholders`` ternary
polynomials. Hoeffding's bound over the ``N`` products gives
``||r * s||_inf <= n * sqrt(N * ln(2^(kappa + log2 N + 1)) / 2)`` except with probability
``2^-kappa`` per ciphertext (:func:`fresh_noise_bound`). A weighted sum with total weight
``W`` has noise at most ``W`` times that: this is the bound ``B`` of
:attr:`secagg.params.Parameters.noise_bound`. ``tests/test_threshold_noise.py`` measures
the real noise against this bound.

Security
--------
The bound holds for honestly generated ciphertexts only: a client that crafts a
ciphertext with larger noise is outside it (see the threat model).
"""

from __future__ import annotations

import math


def fresh_noise_bound(degree: int, max_keyholders: int, statistical_security: int) -> float:
    """High-probability bound on the infinity norm of a fresh ciphertext's noise."""
    tail = math.log(2.0) * (statistical_security + math.log2(degree) + 1)
    return 1.0 + max_keyholders * math.sqrt(degree * tail / 2.0)
