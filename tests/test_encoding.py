"""Fixed-point encoding: round trips, range checks, input validation, and full decryptions."""

from __future__ import annotations

import numpy as np
import pytest
from _support import decrypt
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import secagg
from secagg.encoding import as_vector, decode, encode

PARAMS = secagg.Parameters.default()
VB = PARAMS.value_bound
F = PARAMS.fractional_bits
# Largest magnitude that rounds strictly inside the bound (see the xfail test below).
SAFE = VB - 2.0**-F


def in_range_floats(limit: float = SAFE) -> st.SearchStrategy[float]:
    return st.floats(min_value=-limit, max_value=limit, allow_nan=False, allow_subnormal=True)


@settings(max_examples=300, deadline=None)
@given(st.lists(in_range_floats(), min_size=1, max_size=64), st.integers(0, 40))
def test_encode_decode_round_trip(values: list[float], pad: int) -> None:
    x = np.array(values, dtype=np.float64)
    coeffs = encode(PARAMS, x, x.size + pad)
    assert coeffs.dtype == np.uint64 and coeffs.shape == (x.size + pad,)
    assert int(coeffs.max()) < PARAMS.plain_modulus
    assert not coeffs[x.size :].any()  # zero padding
    back = decode(PARAMS, coeffs)
    assert np.max(np.abs(back[: x.size] - x)) <= PARAMS.precision
    assert not back[x.size :].any()


@settings(max_examples=100, deadline=None)
@given(
    hnp.arrays(np.float64, st.integers(1, 200), elements=in_range_floats()),
    hnp.arrays(np.float64, st.integers(1, 200), elements=in_range_floats()),
)
def test_encoding_is_additive_mod_t(a: np.ndarray, b: np.ndarray) -> None:
    """What the homomorphic sum relies on: decode(enc(a) + enc(b) mod t) ~ a + b."""
    n = max(a.size, b.size)
    s = (encode(PARAMS, a, n) + encode(PARAMS, b, n)) & np.uint64(PARAMS.plain_modulus - 1)
    expected = np.zeros(n)
    expected[: a.size] += a
    expected[: b.size] += b
    assert np.max(np.abs(decode(PARAMS, s) - expected)) <= 2 * PARAMS.precision


def test_known_encodings() -> None:
    x = np.array([0.0, 1.0, -1.0, 0.5, -(2.0**-F), SAFE, -SAFE])
    coeffs = encode(PARAMS, x, x.size)
    t = PARAMS.plain_modulus
    expected = [0, 2**F, t - 2**F, 2 ** (F - 1), t - 1, int(SAFE * 2**F), t - int(SAFE * 2**F)]
    assert [int(c) for c in coeffs] == expected
    assert np.array_equal(decode(PARAMS, coeffs), x)


@pytest.mark.parametrize("bad", [VB, -VB, 2 * VB, 1e300, -1e10, np.inf, -np.inf], ids=repr)
def test_out_of_range_refused(bad: float) -> None:
    x = np.array([0.0, bad, 1.0])
    with pytest.raises(secagg.EncodingError):
        encode(PARAMS, x, 8)


@settings(max_examples=100, deadline=None)
@given(st.floats(min_value=VB, max_value=1e30), st.booleans())
def test_out_of_range_refused_property(magnitude: float, negative: bool) -> None:
    x = np.array([1.0, -magnitude if negative else magnitude])
    with pytest.raises(secagg.EncodingError):
        encode(PARAMS, x, 2)


def test_documented_value_limit_is_exact() -> None:
    """|x| < max_abs_value is accepted; anything from max_abs_value on is refused, and says so."""
    limit = PARAMS.max_abs_value
    assert limit == VB - 2.0 ** -(F + 1)
    for sign in (1.0, -1.0):
        x = np.array([sign * np.nextafter(limit, 0.0)])
        back = decode(PARAMS, encode(PARAMS, x, 1))
        assert abs(back[0] - x[0]) <= PARAMS.precision
        with pytest.raises(secagg.EncodingError, match=r"Parameters\.max_abs_value"):
            encode(PARAMS, np.array([sign * limit]), 1)


@pytest.mark.parametrize(
    "bad",
    [
        [float("nan")],
        [1.0, float("nan"), 2.0],
        [float("inf")],
        [1.0, -float("inf")],
        [],
        np.zeros(0),
        [[1.0, 2.0], [3.0, 4.0]],
        np.zeros((1, 3)),
        np.float64(1.0),  # 0-D
        5.0,
        "abc",
        ["1", "x"],
        [[1.0], [2.0, 3.0]],  # ragged
        [None, 1.0],
        {"a": 1},
    ],
    ids=repr,
)
def test_invalid_inputs_refused(bad: object, keys32: secagg.KeySet) -> None:
    with pytest.raises(secagg.EncodingError):
        as_vector(bad)
    with pytest.raises(secagg.EncodingError):
        secagg.encrypt(keys32.public_key, bad)


def test_encrypt_refuses_out_of_range(keys32: secagg.KeySet) -> None:
    x = np.zeros(10_000)
    x[9_999] = VB
    with pytest.raises(secagg.EncodingError):
        secagg.encrypt(keys32.public_key, x)


def test_as_vector_accepts_vector_likes() -> None:
    assert as_vector([1, 2, 3]).dtype == np.float64
    assert as_vector(np.arange(5, dtype=np.float32)).tolist() == [0, 1, 2, 3, 4]
    assert as_vector((0.5,)).tolist() == [0.5]


@pytest.mark.parametrize("length", [1, 8191, 8192, 8193])
def test_single_client_round_trip(keys32: secagg.KeySet, length: int) -> None:
    n = PARAMS.poly_modulus_degree
    rng = np.random.default_rng(length)
    x = rng.uniform(-SAFE, SAFE, size=length)
    x[0] = SAFE if length > 1 else -SAFE
    ct = secagg.encrypt(keys32.public_key, x)
    assert len(ct) == length and ct.ciphertext_count == -(-length // n)
    agg = secagg.aggregate([ct], weights=[1])
    for quorum in ((1, 2), (1, 3), (2, 3)):
        mean = decrypt(keys32, agg, quorum)
        assert mean.shape == (length,)
        assert np.max(np.abs(mean - x)) <= PARAMS.precision
    assert np.max(np.abs(decrypt(keys32, agg, mean=False) - x)) <= PARAMS.precision


def test_round_trip_of_python_list(keys32: secagg.KeySet) -> None:
    values = [0.0, -15.5, 15.5, 1e-9, -3.25]
    result = decrypt(keys32, secagg.aggregate([secagg.encrypt(keys32.public_key, values)]))
    assert np.max(np.abs(result - np.array(values))) <= PARAMS.precision
