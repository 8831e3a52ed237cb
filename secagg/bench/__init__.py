"""``secagg bench``: secagg against the NVIDIA FLARE-style TenSEAL path and plaintext FedAvg.

One run measures three systems side by side on the same random client vectors:

(a) secagg: local dealerless key generation, encryption under the joint public key,
    the serialized upload (``EncryptedVector.to_bytes``), weighted aggregation with
    integer weights, one partial decryption per key holder of a ``t``-member quorum, and
    the combination.
(b) TenSEAL CKKS as NVIDIA FLARE configures it (``poly_modulus_degree=8192``,
    ``coeff_mod_bit_sizes=[60, 40, 40]``, scale ``2^40``, no Galois keys): clients encrypt
    with a public-key-only context, the server multiplies each ciphertext by its float
    weight ``w_i / sum(w)`` and adds; the holder of the single secret key decrypts. FLARE's
    default flow (clients pre-weight in plaintext; the server adds and multiplies the sum
    once by ``1 / sum(w)``) is measured too.
(c) plaintext FedAvg with ``numpy.average``.

Every timed phase runs ``--repeats`` times; the report quotes medians (``time.perf_counter``)
and the ratios secagg / (b). The process is pinned to one CPU while it measures.

Notes
-----
The systems do not give the same protection: (b) decrypts with one secret key, whose
holder can decrypt every client's upload, while (a) needs ``t`` key holders and only
ever decrypts the aggregate. Throughputs count model parameters: encryption and
aggregation count ``clients x parameters`` per run, decryption counts ``parameters``.
Vectors come from ``numpy.random.default_rng`` (benchmark data, not secrets).
"""

from __future__ import annotations

from secagg.bench.command import add_arguments, main, run
from secagg.bench.measure import machine_info
from secagg.bench.report import format_report

__all__ = ["add_arguments", "format_report", "machine_info", "main", "run"]
