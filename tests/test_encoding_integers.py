"""The integer path of the library (distributed DP): exact round trips, refused ranges.

Distributed DP clients quantize and noise their vectors as integers, so nothing in their
path may go through the float encoder. ``encrypt_integers`` writes ``z mod t``; sums of
integer vectors under the full weight budget decrypt exactly (to ``z * 2^-f``).
"""

from __future__ import annotations

import numpy as np
import pytest
from _support import decrypt
from hypothesis import given, settings
from hypothesis import strategies as st

import secagg
from secagg.ciphertext import encrypt_integers
from secagg.encoding import as_integer_vector, decode, encode_integers, integer_limit

PARAMS = secagg.Parameters.default()
LIMIT = integer_limit(PARAMS)


def test_the_limit_is_the_float_paths_bound_in_fixed_point() -> None:
    assert int(PARAMS.value_bound) * 2**PARAMS.fractional_bits == LIMIT
    # A full weight budget of limit-sized values still fits below t / 2 (no wrap).
    assert (LIMIT - 1) * PARAMS.max_total_weight < PARAMS.plain_modulus // 2


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-LIMIT + 1, LIMIT - 1), min_size=1, max_size=64), st.integers(0, 9))
def test_encode_integers_round_trip_exactly(values: list[int], pad: int) -> None:
    z = np.array(values, dtype=np.int64)
    coeffs = encode_integers(PARAMS, z, z.size + pad)
    assert int(coeffs.max()) < PARAMS.plain_modulus and not coeffs[z.size :].any()
    back = decode(PARAMS, coeffs)[: z.size] * 2.0**PARAMS.fractional_bits
    assert np.array_equal(back.astype(np.int64), z)


@pytest.mark.parametrize("bad", [LIMIT, -LIMIT, 2**62, -(2**63)])
def test_out_of_range_integers_refused(bad: int) -> None:
    z = np.zeros(5, dtype=np.int64)
    z[3] = bad
    with pytest.raises(secagg.EncodingError, match="out of range"):
        encode_integers(PARAMS, z, 8)


@pytest.mark.parametrize(
    "bad", [np.array([1.0, 2.0]), np.array([1.5]), np.zeros((2, 2), dtype=np.int64), [], "x"]
)
def test_non_integer_or_malformed_input_refused(bad: object) -> None:
    with pytest.raises(secagg.EncodingError):
        as_integer_vector(bad)


def test_encrypt_integers_refuses_floats_and_range(keys32: secagg.KeySet) -> None:
    with pytest.raises(secagg.EncodingError):
        encrypt_integers(keys32.public_key, np.array([0.5, 1.0]))
    with pytest.raises(secagg.EncodingError):
        encrypt_integers(keys32.public_key, np.array([0, LIMIT], dtype=np.int64))


def test_sum_of_integer_vectors_decrypts_exactly(keys32: secagg.KeySet) -> None:
    rng = np.random.default_rng(1)  # test data, not a secret
    length = PARAMS.poly_modulus_degree + 5  # two ciphertexts
    vectors = [rng.integers(-LIMIT + 1, LIMIT, size=length) for _ in range(3)]
    vectors[0][0], vectors[1][0], vectors[2][0] = LIMIT - 1, LIMIT - 1, LIMIT - 1
    cts = [encrypt_integers(keys32.public_key, v) for v in vectors]
    agg = secagg.aggregate(cts, weights=[1, 1, 1])
    total = decrypt(keys32, agg, (2, 3), mean=False) * 2.0**PARAMS.fractional_bits
    assert np.array_equal(np.rint(total).astype(np.int64), sum(vectors))
    # The mean the server releases carries the same sum, divided by the contributors.
    mean = decrypt(keys32, agg, (1, 3)) * 2.0**PARAMS.fractional_bits * 3
    assert np.array_equal(np.rint(mean).astype(np.int64), sum(vectors))
