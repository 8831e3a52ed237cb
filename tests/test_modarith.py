"""The modular kernels and samplers, checked against Python integers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _support import centered, crt
from hypothesis import given, settings
from hypothesis import strategies as st

import secagg
from secagg._internal import modarith as M
from secagg._internal import sampling

DEFAULT_PRIMES = secagg.Parameters.default().coeff_modulus
# Other moduli below 2^60: the largest prime below 2^60, the smallest above 2^59, a
# 32-bit and a 17-bit prime and two tiny ones (the kernels do not need NTT primes).
OTHER_PRIMES = (
    1152921504606846883,
    576460752303423619,
    4294967291,
    65537,
    3,
    2,
)
PRIMES = (*DEFAULT_PRIMES, *OTHER_PRIMES)
U64_MAX = 2**64 - 1


def _is_probable_prime(n: int) -> bool:
    if n < 4:
        return n in (2, 3)
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for a in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):  # deterministic below 3.3e24
        x = pow(a, d, n)
        if x in (1, n - 1) or a % n == 0:
            continue
        for _ in range(r - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def test_test_primes_are_primes_below_2_60() -> None:
    assert all(_is_probable_prime(q) and q < 2**60 for q in PRIMES)


def sample(q: int, size: int = 512, seed: int = 0) -> np.ndarray:
    """Edge values followed by uniform residues mod q."""
    rng = np.random.default_rng(seed + q % 1000)
    edges = sorted({v for v in edge_values(q) if 0 <= v < q})
    rand = rng.integers(0, q, size=max(size - len(edges), 0), dtype=np.uint64)
    return np.concatenate([np.array(edges, dtype=np.uint64), rand])[:size]


def edge_values(q: int) -> tuple[int, ...]:
    return (0, 1, 2, q - 1, q - 2, q // 2, (q + 1) // 2)


def as_ints(a: np.ndarray) -> list[int]:
    return [int(v) for v in np.asarray(a).ravel()]


def all_pairs(q: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of edge values plus random pairs."""
    x, y = sample(q, seed=1), sample(q, seed=2)
    edges = np.array(sorted({v for v in edge_values(q) if 0 <= v < q}), dtype=np.uint64)
    ex, ey = np.meshgrid(edges, edges)
    return np.concatenate([x, ex.ravel()]), np.concatenate([y, ey.ravel()])


@pytest.mark.parametrize("q", PRIMES)
def test_add_sub_neg(q: int) -> None:
    a, b = all_pairs(q)
    pairs = list(zip(as_ints(a), as_ints(b), strict=True))
    assert as_ints(M.add_mod(a, b, q)) == [(x + y) % q for x, y in pairs]
    assert as_ints(M.sub_mod(a, b, q)) == [(x - y) % q for x, y in pairs]
    assert as_ints(M.neg_mod(a, q)) == [(-x) % q for x in as_ints(a)]


@pytest.mark.parametrize("q", PRIMES)
def test_mul_mod_array_array(q: int) -> None:
    a, b = all_pairs(q)
    got = as_ints(M.mul_mod(a, b, q))
    assert got == [x * y % q for x, y in zip(as_ints(a), as_ints(b), strict=True)]


@pytest.mark.parametrize("q", PRIMES)
def test_mul_mod_array_int(q: int) -> None:
    a = sample(q)
    for b in (0, 1, 2, q - 1, q - 2, q, q + 1, 2**60 - 1, 2**64 + 5, -1, -q - 3, 123456789):
        got = as_ints(M.mul_mod(a, b, q))
        assert got == [x * b % q for x in as_ints(a)], b
    got = as_ints(M.mul_mod(a, np.int64(-7), q))
    assert got == [x * -7 % q for x in as_ints(a)]


def test_mul_mod_broadcasts() -> None:
    q = DEFAULT_PRIMES[0]
    a = sample(q, size=12).reshape(3, 4)
    b = sample(q, size=4, seed=9)
    got = M.mul_mod(a, b, q)
    assert got.shape == (3, 4)
    assert as_ints(got) == [int(x) * int(b[k % 4]) % q for k, x in enumerate(a.ravel())]


@pytest.mark.parametrize("q", PRIMES)
@pytest.mark.parametrize("bits", [0, 1, 3, 4, 5, 17, 60, 64, 67, 128])
def test_shift_left_mod(q: int, bits: int) -> None:
    a = sample(q, size=64)
    assert as_ints(M.shift_left_mod(a, bits, q)) == [(x << bits) % q for x in as_ints(a)]


@pytest.mark.parametrize("q", PRIMES)
@pytest.mark.parametrize("shift", [0, 1, 32, 60, 64])
def test_reduce_wide(q: int, shift: int) -> None:
    rng = np.random.default_rng(shift)
    edges = np.array([0, 1, q - 1, q, q + 1, 2**60, U64_MAX, U64_MAX - 1], dtype=np.uint64)
    hi = np.concatenate([edges, rng.integers(0, U64_MAX, size=200, dtype=np.uint64, endpoint=True)])
    lo = np.concatenate([edges[::-1], rng.integers(0, U64_MAX, size=200, dtype=np.uint64)])
    got = as_ints(M.reduce_wide(hi, lo, shift, q))
    assert got == [((h << shift) + w) % q for h, w in zip(as_ints(hi), as_ints(lo), strict=True)]


@pytest.mark.parametrize("q", PRIMES)
@pytest.mark.parametrize("hi_bits", [1, 20, 44, 59])
def test_reduce_wide_small_high_words(q: int, hi_bits: int) -> None:
    # The aggregator's case: high accumulators far below q take wider shift steps.
    rng = np.random.default_rng(hi_bits)
    hi = rng.integers(0, 2**hi_bits, size=300, dtype=np.uint64)
    hi[0] = 2**hi_bits - 1
    lo = rng.integers(0, U64_MAX, size=300, dtype=np.uint64, endpoint=True)
    got = as_ints(M.reduce_wide(hi, lo, 32, q))
    assert got == [((h << 32) + w) % q for h, w in zip(as_ints(hi), as_ints(lo), strict=True)]


def test_signed_to_residues() -> None:
    primes = (*DEFAULT_PRIMES, 65537, 3)
    big = 2**62 - 1
    values = np.array([0, 1, -1, 2, -2, big, -big, 2**61, -(2**61), 12345, -65537], dtype=np.int64)
    rng = np.random.default_rng(3)
    values = np.concatenate([values, rng.integers(-big, big, size=300, dtype=np.int64)])
    got = M.signed_to_residues(values, primes)
    assert got.shape == (len(primes), values.size) and got.dtype == np.uint64
    for j, q in enumerate(primes):
        assert as_ints(got[j]) == [int(v) % q for v in values]
    two_d = M.signed_to_residues(values[:10].reshape(2, 5), primes[:2])
    assert two_d.shape == (2, 2, 5)


@pytest.mark.parametrize("q", [0, 1, 2**60, 2**64 - 1, -5])
def test_bad_modulus_refused(q: int) -> None:
    a = np.zeros(4, dtype=np.uint64)
    for call in (
        lambda: M.add_mod(a, a, q),
        lambda: M.sub_mod(a, a, q),
        lambda: M.neg_mod(a, q),
        lambda: M.mul_mod(a, a, q),
        lambda: M.mul_mod(a, 3, q),
        lambda: M.shift_left_mod(a, 3, q),
        lambda: M.reduce_wide(a, a, 3, q),
    ):
        with pytest.raises(ValueError):
            call()


# --- hypothesis -----------------------------------------------------------------------------

primes_st = st.sampled_from(PRIMES)


@st.composite
def residue_lists(draw: st.DrawFn) -> tuple[int, list[int], list[int]]:
    q = draw(primes_st)
    n = draw(st.integers(1, 40))
    elem = st.one_of(st.integers(0, q - 1), st.sampled_from([0, 1, q - 1, max(q - 2, 0)]))
    return (
        q,
        draw(st.lists(elem, min_size=n, max_size=n)),
        draw(st.lists(elem, min_size=n, max_size=n)),
    )


@settings(max_examples=300, deadline=None)
@given(residue_lists())
def test_kernels_match_python_ints(data: tuple[int, list[int], list[int]]) -> None:
    q, xs, ys = data
    a, b = np.array(xs, dtype=np.uint64), np.array(ys, dtype=np.uint64)
    assert as_ints(M.add_mod(a, b, q)) == [(x + y) % q for x, y in zip(xs, ys, strict=True)]
    assert as_ints(M.sub_mod(a, b, q)) == [(x - y) % q for x, y in zip(xs, ys, strict=True)]
    assert as_ints(M.neg_mod(a, q)) == [-x % q for x in xs]
    assert as_ints(M.mul_mod(a, b, q)) == [x * y % q for x, y in zip(xs, ys, strict=True)]
    assert as_ints(M.mul_mod(a, ys[0], q)) == [x * ys[0] % q for x in xs]


@settings(max_examples=200, deadline=None)
@given(
    primes_st,
    st.lists(st.integers(0, U64_MAX), min_size=1, max_size=30),
    st.lists(st.integers(0, U64_MAX), min_size=30, max_size=30),
    st.integers(0, 64),
)
def test_reduce_wide_matches_python_ints(
    q: int, his: list[int], los: list[int], shift: int
) -> None:
    lo_list = los[: len(his)]
    hi, lo = np.array(his, dtype=np.uint64), np.array(lo_list, dtype=np.uint64)
    assert as_ints(M.reduce_wide(hi, lo, shift, q)) == [
        ((h << shift) + x) % q for h, x in zip(his, lo_list, strict=True)
    ]


# --- 60-bit packing --------------------------------------------------------------------------


def _reference_pack(values: list[int]) -> bytes:
    acc = 0
    for k, v in enumerate(values):
        acc |= v << (60 * k)
    return acc.to_bytes(len(values) * 60 // 8, "little")


@pytest.mark.parametrize("count", [16, 32, 160, 8192 * 2])
def test_pack60_layout_and_round_trip(count: int) -> None:
    rng = np.random.default_rng(count)
    values = rng.integers(0, 2**60, size=count, dtype=np.uint64)
    values[:4] = [0, 1, 2**60 - 1, 2**59]
    packed = M.pack60(values)
    assert len(packed) == M.packed_size(count) == count * 60 // 8
    assert packed == _reference_pack(as_ints(values))
    assert np.array_equal(M.unpack60(packed, count), values)
    assert np.array_equal(M.unpack60(memoryview(packed), count), values)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 6).flatmap(
        lambda g: st.lists(st.integers(0, 2**60 - 1), min_size=16 * g, max_size=16 * g)
    )
)
def test_pack60_matches_python_ints(values: list[int]) -> None:
    arr = np.array(values, dtype=np.uint64)
    packed = M.pack60(arr)
    assert packed == _reference_pack(values)
    assert as_ints(M.unpack60(packed, len(values))) == values


def test_pack60_multidimensional_input() -> None:
    values = np.arange(64, dtype=np.uint64).reshape(2, 2, 16) * np.uint64(2**50)
    assert M.pack60(values) == _reference_pack(as_ints(values))


def test_pack60_refuses_bad_input() -> None:
    with pytest.raises(ValueError):
        M.pack60(np.full(16, 2**60, dtype=np.uint64))
    with pytest.raises(ValueError):
        M.pack60(np.zeros(15, dtype=np.uint64))
    with pytest.raises(ValueError):
        M.packed_size(17)
    packed = M.pack60(np.zeros(32, dtype=np.uint64))
    for bad in (packed[:-1], packed + b"\0", b""):
        with pytest.raises(ValueError):
            M.unpack60(bad, 32)


# --- sampling -------------------------------------------------------------------------------

WIDE_PRIMES = DEFAULT_PRIMES  # product ~2^218: enough to recover noise up to 2^121 by CRT


def _check_flooding(bits: int, count: int = 4096) -> None:
    noise = sampling.flooding_noise(count, bits, WIDE_PRIMES)
    assert noise.shape == (len(WIDE_PRIMES), count) and noise.dtype == np.uint64
    for j, q in enumerate(WIDE_PRIMES):
        assert int(noise[j].max()) < q
    value, modulus = crt(noise, WIDE_PRIMES)
    signed = centered(value, modulus)
    # Consistent across primes: one small integer has these residues modulo every prime.
    for j, q in enumerate(WIDE_PRIMES):
        assert as_ints(noise[j]) == [int(v) % q for v in signed]
    lo, hi = int(min(signed)), int(max(signed))
    assert -(2**bits) <= lo and hi < 2**bits, (bits, lo, hi)
    # The full width is used: the extreme 1% on each side is hit (each check fails with
    # probability below 2^-40 for a correct sampler).
    slack = 2**bits // 100
    assert lo <= -(2**bits) + slack and hi >= 2**bits - 1 - slack, (bits, lo, hi)
    assert sum(1 for v in signed if v < 0) > count // 3
    if 2 ** (bits + 1) < min(WIDE_PRIMES):  # a single prime already shows the signed value
        for j, q in enumerate(WIDE_PRIMES):
            assert [int(v) for v in centered(noise[j], q)] == list(signed)


@pytest.mark.parametrize("bits", [1, 2, 20, 40, 58, 61, 63, 64, 65, 68, 100, 120])
def test_flooding_noise(bits: int) -> None:
    _check_flooding(bits)


def test_flooding_noise_62_bits() -> None:
    _check_flooding(62)


def test_flooding_noise_bits_out_of_range() -> None:
    for bits in (0, -1, 121):
        with pytest.raises(ValueError):
            sampling.flooding_noise(8, bits, WIDE_PRIMES)


def test_flooding_noise_is_fresh() -> None:
    a = sampling.flooding_noise(64, 68, WIDE_PRIMES)
    b = sampling.flooding_noise(64, 68, WIDE_PRIMES)
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("q", [*DEFAULT_PRIMES, 65537, 3, 2])
def test_uniform_mod(q: int) -> None:
    count = 20_000
    out = sampling.uniform_mod(q, count)
    assert out.shape == (count,) and out.dtype == np.uint64
    assert int(out.max()) < q
    if q > 1000:
        # Spread over the whole range: each check fails with probability ~e^-200.
        assert int(out.max()) > q * 0.99 and int(out.min()) < q * 0.01
        mean = float(np.mean(out.astype(np.float64))) / q
        assert abs(mean - 0.5) < 8 * math.sqrt(1 / 12 / count)
    else:
        assert set(as_ints(out)) == set(range(q))


def test_uniform_mod_from_stream_is_deterministic() -> None:
    q = DEFAULT_PRIMES[0]

    def draw(seed: bytes) -> np.ndarray:
        return sampling.uniform_mod(q, 1000, sampling.Shake256Stream(b"test", seed))

    assert np.array_equal(draw(b"seed"), draw(b"seed"))
    assert not np.array_equal(draw(b"seed"), draw(b"seed2"))
    assert int(draw(b"seed").max()) < q


def test_ternary() -> None:
    count = 30_000
    out = sampling.ternary(count)
    assert out.shape == (count,) and out.dtype == np.int64
    values, counts = np.unique(out, return_counts=True)
    assert values.tolist() == [-1, 0, 1]
    # Uniform: every count is within 10 standard deviations of count/3.
    sd = math.sqrt(count * (1 / 3) * (2 / 3))
    assert all(abs(c - count / 3) < 10 * sd for c in counts)
    assert sampling.ternary(1).shape == (1,)


@pytest.mark.parametrize("eta", [1, 2, 21])
def test_centered_binomial(eta: int) -> None:
    count = 50_000
    out = sampling.centered_binomial(count, eta)
    assert out.shape == (count,)
    assert int(out.min()) >= -eta and int(out.max()) <= eta
    assert int(out.min()) < 0 < int(out.max())
    var = eta / 2
    assert abs(float(out.mean())) < 10 * math.sqrt(var / count)
    assert abs(float(out.var()) - var) < 0.1 * var


def test_shake256_stream() -> None:
    one = sampling.Shake256Stream(b"domain", b"seed")
    two = sampling.Shake256Stream(b"domain", b"seed")
    first = one(100)
    assert len(first) == 100 and first == two(100)
    # Sequential reads continue the stream, in any chunking.
    chunks = b"".join(one(n) for n in (1, 7, 50, 0, 42))
    three = sampling.Shake256Stream(b"domain", b"seed")
    assert three(200) == first + chunks
    assert sampling.Shake256Stream(b"domain", b"seed2")(100) != first
    assert sampling.Shake256Stream(b"domain2", b"seed")(100) != first
    # The seed length is framed: (domain, seed) pairs with the same concatenation differ.
    assert sampling.Shake256Stream(b"ab", b"c")(32) != sampling.Shake256Stream(b"a", b"bc")(32)
