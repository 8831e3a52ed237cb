"""Fixed-point encoding of float vectors as BFV plaintext coefficients.

A value ``x`` becomes the integer ``round(x * 2^f)`` stored modulo ``t = 2^bits`` as one
coefficient of a BFV plaintext (no batching). Weighted sums of such integers decode
exactly as long as they stay below ``t/2`` in absolute value, which the parameter
budget guarantees for ``|x| < value_bound`` and total weight ``<= max_total_weight``.
The only error is the rounding to ``2^-f``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from secagg._internal.modarith import U64
from secagg.errors import EncodingError
from secagg.params import Parameters

F64 = npt.NDArray[np.float64]


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
