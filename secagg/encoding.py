"""Fixed-point encoding of float vectors as BFV plaintext coefficients.

A value ``x`` becomes the integer ``round(x * 2^f)`` stored modulo ``t = 2^bits`` as one
coefficient of a BFV plaintext (no batching). Weighted sums of such integers decode
exactly as long as they stay below ``t/2`` in absolute value, which the parameter
budget guarantees for ``|x| < value_bound`` and total weight ``<= max_total_weight``.
The only error is the rounding to ``2^-f``.

The **integer path** (:func:`encode_integers`) stores integers that are already
fixed-point values (the integer ``z`` stands for ``z * 2^-f``) with no float arithmetic
at all: distributed DP clients quantize and noise their vectors as integers themselves.
Its bound is the float path's, ``|z| < value_bound * 2^f``, so the same weight budget
keeps every sum exact.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from secagg._internal.modarith import U64
from secagg.errors import EncodingError
from secagg.params import Parameters

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def as_vector(values: object) -> F64:
    """Validate and convert input to a finite 1-D float64 array (copy-free where possible)."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise EncodingError(f"cannot convert input to a float vector: {exc}") from None
    if arr.ndim != 1:
        raise EncodingError(f"expected a 1-D vector, got shape {arr.shape}")
    if arr.size == 0:
        raise EncodingError("cannot encrypt an empty vector")
    if not np.isfinite(arr).all():
        raise EncodingError("vector contains NaN or infinity")
    return arr


def encode(params: Parameters, values: F64, padded_length: int) -> U64:
    """Fixed-point integers mod ``t``, zero-padded to ``padded_length``.

    Raises
    ------
    EncodingError
        If any ``|x|`` is not below ``params.max_abs_value`` (it would round to the bound).
    """
    scaled = values * float(1 << params.fractional_bits)
    np.rint(scaled, out=scaled)
    limit = params.value_bound * float(1 << params.fractional_bits)
    if scaled.max() >= limit or -scaled.min() >= limit:
        worst = float(np.abs(values).max())
        raise EncodingError(
            f"value {worst!r} out of range: every value must satisfy |x| < "
            f"{params.max_abs_value!r} (Parameters.max_abs_value, i.e. value_bound "
            f"{params.value_bound:g} minus half a quantization step)"
        )
    out = np.zeros(padded_length, dtype=np.uint64)
    mask = np.uint64(params.plain_modulus - 1)
    head = out[: values.size]
    head[...] = scaled.astype(np.int64).view(np.uint64)
    head &= mask
    return out


def decode(params: Parameters, coeffs: U64) -> F64:
    """Signed fixed-point integers mod ``t`` back to floats (no division by weights)."""
    t = params.plain_modulus
    signed = coeffs.astype(np.int64) - np.where(coeffs >= np.uint64(t // 2), t, 0)
    return signed.astype(np.float64) / float(1 << params.fractional_bits)


def integer_limit(params: Parameters) -> int:
    """Exclusive bound on ``|z|`` of the integer path: ``value_bound * 2^f``."""
    return int(params.value_bound) << params.fractional_bits


def as_integer_vector(values: object) -> I64:
    """Validate integer input as a non-empty 1-D int64 array (floats are refused)."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "iu":
        raise EncodingError(f"expected an integer vector, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise EncodingError(f"expected a 1-D vector, got shape {arr.shape}")
    if arr.size == 0:
        raise EncodingError("cannot encrypt an empty vector")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) >= 2**63:
        raise EncodingError("integer value does not fit in int64")
    return arr.astype(np.int64)


def encode_integers(params: Parameters, values: I64, padded_length: int) -> U64:
    """Integers mod ``t`` (each standing for ``z * 2^-f``), zero-padded; no float step.

    Raises
    ------
    EncodingError
        If any ``|z|`` is not below :func:`integer_limit` (the weighted sum of a full
        weight budget of such values could wrap modulo ``t``).
    """
    limit = integer_limit(params)
    worst = int(np.abs(values).max())  # int64 magnitudes: |INT64_MIN| wraps, caught below
    if worst >= limit or int(values.min()) <= -limit:
        raise EncodingError(
            f"integer {worst} out of range: every value must satisfy |z| < {limit} "
            f"(value_bound {params.value_bound:g} * 2^{params.fractional_bits})"
        )
    out = np.zeros(padded_length, dtype=np.uint64)
    head = out[: values.size]
    head[...] = values.view(np.uint64)
    head &= np.uint64(params.plain_modulus - 1)
    return out
