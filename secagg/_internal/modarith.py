"""Internal: vectorized arithmetic modulo RNS primes below 2^60.

Not part of the public API. Every kernel here works on ``numpy.uint64`` arrays whose
entries are already reduced (``0 <= x < q``) and on primes ``q < 2^60``. The kernels are
exact: they never rely on floating point. Products are formed 4 bits at a time so that
no intermediate exceeds 2^64 (``x << 4 < 2^64`` for ``x < 2^60``). They are tested
against Python integers in ``tests/test_modarith.py``.

The hot paths (encryption, NTT products) run inside SEAL; these kernels serve key
generation, Shamir sharing, flooding noise and the final reduction of an aggregate.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
MAX_PRIME_BITS = 60
_NIBBLE_MASK = np.uint64(0xF)


def _check_modulus(q: int) -> np.uint64:
    if not 2 <= q < (1 << MAX_PRIME_BITS):
        raise ValueError(f"modulus must lie in [2, 2^60), got {q}")
    return np.uint64(q)


def rem(x: U64, qq: np.uint64) -> U64:
    """Return ``x mod qq`` for any uint64 ``x``.

    ``x - (x // qq) * qq``: numpy divides by a scalar with libdivide (a multiply and a
    shift), several times faster than its ``%``, which divides element by element.
    """
    quotient = np.floor_divide(x, qq)
    quotient *= qq
    return cast(U64, np.subtract(x, quotient, out=quotient))


def reduce_once(s: U64, qq: np.uint64) -> U64:
    """Return ``s mod qq`` for ``0 <= s < 2 qq`` (``s`` is overwritten and returned).

    ``min(s, s - qq)`` in wrapping arithmetic: ``s - qq`` wraps to a huge value exactly
    when ``s < qq``.
    """
    return cast(U64, np.minimum(s, s - qq, out=s))


def add_mod(a: U64, b: U64 | np.uint64, q: int) -> U64:
    """Return ``(a + b) mod q`` for reduced inputs (``b`` an array or one residue)."""
    qq = _check_modulus(q)
    return reduce_once(np.add(a, b, dtype=np.uint64), qq)


def sub_mod(a: U64, b: U64, q: int) -> U64:
    """Return ``(a - b) mod q`` for reduced inputs."""
    qq = _check_modulus(q)
    return reduce_once(np.add(a, qq - b, dtype=np.uint64), qq)


def neg_mod(a: U64, q: int) -> U64:
    """Return ``(-a) mod q`` for reduced inputs."""
    qq = _check_modulus(q)
    return cast(U64, (qq - a) * (a != 0))


def shift_left_mod(x: U64, bits: int, q: int) -> U64:
    """Return ``x * 2**bits mod q`` for reduced ``x``.

    Shifts in steps that keep every intermediate below 2^64: the first step as wide as
    the largest entry of ``x`` allows, the next ones as wide as ``q`` allows.
    """
    qq = _check_modulus(q)
    acc: U64 = np.array(x, dtype=np.uint64, copy=True)
    room = 64 - (int(acc.max()).bit_length() if acc.size else 0)
    while bits > 0:
        step = min(bits, room)
        acc = _shl_mod(acc, step, qq)
        bits -= step
        room = 64 - q.bit_length()  # now acc < q
    return acc


def _shl_mod(x: U64, bits: int, qq: np.uint64) -> U64:
    return rem(np.left_shift(x, np.uint64(bits)), qq)


def mul_mod(a: U64, b: U64 | int, q: int) -> U64:
    """Return ``a * b mod q`` elementwise (``b`` an array or an integer).

    Double-and-add over the 4-bit digits of ``b``, most significant first, so every
    intermediate stays below 2^64.
    """
    qq = _check_modulus(q)
    a = np.asarray(a, dtype=np.uint64)
    if isinstance(b, (int, np.integer)):
        bi = int(b) % q
        acc: U64 = np.zeros(a.shape, dtype=np.uint64)
        for shift in range(MAX_PRIME_BITS - 4, -1, -4):
            nibble = (bi >> shift) & 0xF
            acc = _shl_mod(acc, 4, qq)
            if nibble:
                acc = add_mod(acc, rem(np.multiply(a, np.uint64(nibble), dtype=np.uint64), qq), q)
        return acc
    bb = np.asarray(b, dtype=np.uint64)
    acc = np.zeros(np.broadcast_shapes(a.shape, bb.shape), dtype=np.uint64)
    for shift in range(MAX_PRIME_BITS - 4, -1, -4):
        digit = (bb >> np.uint64(shift)) & _NIBBLE_MASK
        acc = _shl_mod(acc, 4, qq)
        acc = add_mod(acc, rem(np.multiply(a, digit, dtype=np.uint64), qq), q)
    return acc


def scale_mod(a: U64, w: int, q: int) -> U64:
    """Return ``a * w mod q`` for reduced ``a`` and a small integer ``0 <= w``.

    Horner over the digits of ``w`` as wide as ``q`` leaves room for (11 bits for a
    53-bit prime): two passes for the weights of a round (``w <= 2^16``), instead of
    :func:`mul_mod`'s fifteen.
    """
    qq = _check_modulus(q)
    if w < 0:
        raise ValueError("scale_mod takes a non-negative integer")
    room = 64 - q.bit_length()
    a = np.asarray(a, dtype=np.uint64)
    if w < 1 << room:  # one digit: a * w < 2^64
        return rem(np.multiply(a, np.uint64(w), dtype=np.uint64), qq)
    digits: list[int] = []
    rest = w % q
    while rest:
        digits.append(rest & ((1 << room) - 1))
        rest >>= room
    acc: U64 = np.zeros(a.shape, dtype=np.uint64)
    for k, digit in enumerate(reversed(digits)):
        if k:
            acc = _shl_mod(acc, room, qq)
        if digit:
            acc = add_mod(acc, rem(np.multiply(a, np.uint64(digit), dtype=np.uint64), qq), q)
    return acc


def reduce_wide(hi: U64, lo: U64, shift: int, q: int) -> U64:
    """Return ``(hi * 2**shift + lo) mod q`` for arbitrary uint64 ``hi`` and ``lo``."""
    qq = _check_modulus(q)
    return add_mod(shift_left_mod(rem(hi, qq), shift, q), rem(lo, qq), q)


def signed_to_residues(x: npt.NDArray[np.int64], primes: tuple[int, ...]) -> U64:
    """Map small signed integers (``|x| < 2^62``) to residues, shape ``(len(primes), *x.shape)``."""
    out = np.empty((len(primes), *x.shape), dtype=np.uint64)
    neg = x < 0
    mag = np.abs(x).astype(np.uint64)
    for j, q in enumerate(primes):
        qq = _check_modulus(q)
        r = rem(mag, qq)
        out[j] = np.where(neg & (r != 0), qq - r, r)
    return out


# --- 60-bit packing of residues -------------------------------------------------------
# The packed form is the little-endian bit stream of the residues, 60 bits each: 16
# residues fill exactly 15 64-bit words. The kernels work on pairs: two residues are
# 120 bits, i.e. exactly 15 bytes of the stream (the low word, then 7 bytes of the high).

_PACK_GROUP = 16
_PACK_WORDS = 15
_PAIR_BYTES = 15
_MASK60 = np.uint64((1 << MAX_PRIME_BITS) - 1)


def packed_size(count: int) -> int:
    """Bytes taken by ``count`` residues after :func:`pack60` (count a multiple of 16)."""
    if count % _PACK_GROUP:
        raise ValueError("residue count must be a multiple of 16")
    return count // _PACK_GROUP * _PACK_WORDS * 8


def pack60(values: U64) -> bytes:
    """Pack residues below 2^60 into 60 bits each (little-endian bit stream).

    Each pair fills 15 bytes: the word ``v0 | v1 << 60`` at byte 0 and ``v1 >> 4`` (56
    bits) at byte 8. The high words are written first, each spilling a zero byte into
    the next pair's byte 0, which the low words then overwrite.
    """
    flat = np.ascontiguousarray(values, dtype=np.uint64).reshape(-1)
    packed_size(flat.size)
    if flat.size and int(flat.max()) >> MAX_PRIME_BITS:
        raise ValueError("value does not fit in 60 bits")
    pairs = flat.size // 2
    if not pairs:
        return b""
    buf = np.zeros(pairs * _PAIR_BYTES + 1, dtype=np.uint8)
    low = np.ndarray((pairs,), dtype="<u8", buffer=buf, offset=0, strides=(_PAIR_BYTES,))
    high = np.ndarray((pairs,), dtype="<u8", buffer=buf, offset=8, strides=(_PAIR_BYTES,))
    high[:] = flat[1::2] >> np.uint64(64 - MAX_PRIME_BITS)
    low[:] = flat[0::2] | (flat[1::2] << np.uint64(MAX_PRIME_BITS))
    return buf[:-1].tobytes()


def unpack60(data: bytes | memoryview, count: int) -> U64:
    """Inverse of :func:`pack60`; ``len(data)`` must equal ``packed_size(count)``.

    Reads each pair's two overlapping little-endian words in place (byte 0 and byte 7 of
    its 15 bytes): no copy of the input.
    """
    if len(data) != packed_size(count):
        raise ValueError("packed data has the wrong length")
    buf = np.frombuffer(data, dtype=np.uint8)
    pairs = count // 2
    out = np.empty((pairs, 2), dtype=np.uint64)
    if pairs:
        low = np.ndarray((pairs,), dtype="<u8", buffer=buf, offset=0, strides=(_PAIR_BYTES,))
        high = np.ndarray((pairs,), dtype="<u8", buffer=buf, offset=7, strides=(_PAIR_BYTES,))
        np.bitwise_and(low, _MASK60, out=out[:, 0])
        np.right_shift(high, np.uint64(4), out=out[:, 1])
    return out.reshape(-1)
