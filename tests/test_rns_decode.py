"""The numpy scale-and-round (secagg._internal.rns_decode) against Python integers and SEAL,
and the fast reductions and bulk CSPRNG the hot paths use."""

from __future__ import annotations

import os

import numpy as np
import pytest

from secagg._internal import modarith as M
from secagg._internal.rns_decode import scale_and_round, usable
from secagg._internal.seal_backend import backend_for
from secagg.params import Parameters

PARAMS = Parameters.default()
PRIMES = PARAMS.data_primes
T = PARAMS.plain_modulus
Q = 1
for _p in PRIMES:
    Q *= _p


def exact(value: int) -> int:
    """round(t * x / q) mod t with Python integers (no ties: q odd, t even)."""
    return ((2 * T * (value % Q) + Q) // (2 * Q)) % T


def residues_of(values: list[int], extra: list[int] | None = None) -> np.ndarray:
    """(primes, len(values)) residues; ``extra[i]`` multiples of each prime added (unreduced)."""
    rows = []
    for j, p in enumerate(PRIMES):
        bump = 0 if extra is None else extra[j] * p
        rows.append([v % p + bump for v in values])
    return np.array(rows, dtype=np.uint64)


def random_values(count: int) -> list[int]:
    return [int.from_bytes(os.urandom(24), "little") % Q for _ in range(count)]


def test_random_values_round_exactly() -> None:
    values = [*random_values(4096), 0, 1, Q - 1, Q // 2, Q // 2 + 1, Q // T, Q // T + 1]
    got = scale_and_round(residues_of(values), PRIMES, T)
    assert [int(v) for v in got] == [exact(v) for v in values]


def test_unreduced_sums_give_the_same_result() -> None:
    values = random_values(1024)
    got = scale_and_round(residues_of(values, extra=[7, 0, 15]), PRIMES, T)
    assert [int(v) for v in got] == [exact(v) for v in values]


def test_values_next_to_a_rounding_boundary_are_recomputed_exactly() -> None:
    ks = [int.from_bytes(os.urandom(6), "little") % T for _ in range(64)]
    values = [((2 * k + 1) * Q) // (2 * T) + d for k in ks for d in (-1, 0, 1, 2)]
    got = scale_and_round(residues_of(values), PRIMES, T)
    assert [int(v) for v in got] == [exact(v) for v in values]


def test_batched_shape_and_agreement_with_seal_on_decryptions() -> None:
    n = PARAMS.poly_modulus_degree
    delta = Q // T
    rows = []
    messages = []
    for _ in range(2):
        m = [int.from_bytes(os.urandom(6), "little") % T for _ in range(n)]
        e = [int.from_bytes(os.urandom(20), "little") % (Q // (2 * T)) - Q // (4 * T) for _ in m]
        rows.append(residues_of([(delta * a + b) % Q for a, b in zip(m, e, strict=True)]))
        messages.append(m)
    batch = np.stack(rows)  # (2, primes, N)
    got = scale_and_round(batch, PRIMES, T)
    assert got.shape == (2, n)
    assert [[int(v) for v in row] for row in got] == messages
    backend = backend_for(PARAMS)
    for k in range(2):
        assert np.array_equal(backend.decode_transparent(batch[k]), got[k])


def test_refuses_what_it_cannot_do() -> None:
    assert usable(PRIMES, T, 9)
    assert not usable(PRIMES, T - 1, 1)  # not a power of two
    assert not usable(PRIMES, T, 1 << 10)  # sums too wide
    assert usable(PRIMES[:1] * 7, T, 1) and not usable(PRIMES[:1] * 8, T, 1)  # float error
    with pytest.raises(ValueError):
        scale_and_round(np.full((3, 4), 1 << 58, dtype=np.uint64), PRIMES, T)
    with pytest.raises(ValueError):
        scale_and_round(np.zeros((2, 4), dtype=np.uint64), PRIMES, T)


@pytest.mark.parametrize("q", [3, 65537, *PRIMES, (1 << 59) - 55])
def test_rem_and_reduce_once_match_python(q: int) -> None:
    qq = np.uint64(q)
    edges = [0, 1, q - 1, q, q + 1, 2 * q - 1, (1 << 64) - 1, (1 << 64) - q, ((1 << 64) // q) * q]
    raw = np.frombuffer(os.urandom(8 * 2048), dtype="<u8").astype(np.uint64)
    x = np.concatenate([raw, np.array(edges, dtype=np.uint64)])
    assert [int(v) for v in M.rem(x, qq)] == [int(v) % q for v in x]
    below = np.concatenate([raw % np.uint64(2 * q), np.array([0, q - 1, q, 2 * q - 1], np.uint64)])
    expected = [int(v) % q for v in below]
    assert [int(v) for v in M.reduce_once(below.copy(), qq)] == expected


def test_refilled_ciphertext_equals_a_loaded_one() -> None:
    backend = backend_for(PARAMS)
    n = PARAMS.poly_modulus_degree
    moduli = np.asarray(PRIMES, dtype=np.uint64).reshape(1, -1, 1)
    first, second = (
        np.frombuffer(os.urandom(8 * 2 * len(PRIMES) * n), dtype="<u8").reshape(2, -1, n) % moduli
        for _ in range(2)
    )
    ct = backend.refill_ciphertext(None, first)
    backend.evaluator.transform_to_ntt_inplace(ct)
    backend.evaluator.transform_from_ntt_inplace(ct)
    again = backend.refill_ciphertext(ct, second)
    assert np.array_equal(backend.from_ciphertext(again), second)
