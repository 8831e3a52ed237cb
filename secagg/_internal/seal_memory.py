"""Internal: direct access to the coefficient arrays of live SEAL objects.

TenSEAL's ``sealapi`` binding has no buffer access: objects cross to numpy only through
``save``/``load`` on a path (an anonymous memory file, :mod:`secagg._internal.seal_handoff`),
and ``save`` always zstd-compresses. For encryption that glue
cost more than a third of the time. On the TenSEAL build we pin, this module instead
views a SEAL ``Ciphertext``'s or ``Plaintext``'s coefficient array in place, through the
object layouts of pybind11 and SEAL 4.x (verified on this build):

- pybind11 instance (simple layout): the Python object header, then a pointer to the
  C++ object.
- ``Ciphertext``: parms_id (4 words), is_ntt_form (1 byte, padded to a word), size,
  poly_modulus_degree, coeff_modulus_size, scale (f64), correction_factor, then a
  ``DynArray``: memory pool handle (2 words), capacity, size, data pointer.
- ``Plaintext``: parms_id (4 words), coeff_count, scale (f64), then the same ``DynArray``.

Security and safety
-------------------
A read at a wrong address can crash the interpreter, so three guards stand in front of
every use: (1) :func:`supported` is true only on the versions the layout was verified on
(TenSEAL 0.3.18 on 64-bit little-endian CPython); (2) every view first checks the header
words against the binding's own accessors (parms_id, size, degree, number of primes, NTT
flag, coefficient count, array size and capacity; not the scale, correction factor or
memory pool) and raises :class:`LayoutMismatch` on any difference; (3)
:class:`~secagg._internal.seal_backend.SealBackend` enables the direct path only after a self-test
agrees bit for bit with SEAL's serialization, and falls back to ``save``/``load`` otherwise.
Only objects this process created are touched; network input never reaches this code.
Writes skip the checks SEAL's ``load`` would run: callers validate what they write.
A view keeps its SEAL object alive, but it is valid only until the object is resized.
"""

from __future__ import annotations

import ctypes
import sys

import numpy as np
import tenseal

from secagg._internal.modarith import U64

#: TenSEAL versions whose SEAL/pybind11 object layout was verified.
VERIFIED_TENSEAL_VERSIONS = frozenset({"0.3.18"})

_PYOBJECT_HEAD = 16  # ob_refcnt, ob_type on 64-bit CPython

# Word offsets inside the C++ objects.
_CT_PARMS, _CT_NTT, _CT_SIZE, _CT_DEGREE, _CT_PRIMES = 0, 4, 5, 6, 7
_CT_CAPACITY, _CT_COUNT, _CT_DATA = 12, 13, 14
_PT_PARMS, _PT_COEFFS = 0, 4
_PT_CAPACITY, _PT_COUNT, _PT_DATA = 8, 9, 10


class LayoutMismatch(RuntimeError):
    """A SEAL object's memory does not have the expected layout (internal)."""


def supported() -> bool:
    """True on the platform and TenSEAL build whose object layout was verified."""
    return (
        sys.implementation.name == "cpython"
        and sys.byteorder == "little"
        and ctypes.sizeof(ctypes.c_void_p) == 8
        and object.__basicsize__ == _PYOBJECT_HEAD
        and tenseal.__version__ in VERIFIED_TENSEAL_VERSIONS
    )


def _words(address: int, count: int, owner: object) -> U64:
    array = (ctypes.c_uint64 * count).from_address(address)
    array._owner = owner  # type: ignore[attr-defined]  # the view keeps the object alive
    return np.ctypeslib.as_array(array)


def _cpp_object(obj: object) -> int:
    address = ctypes.c_void_p.from_address(id(obj) + _PYOBJECT_HEAD).value
    if not address:
        raise LayoutMismatch("pybind11 instance holds no C++ object")
    return int(address)


def check_header(header: U64, expected: dict[int, int], count_at: int, capacity_at: int) -> None:
    """Compare header words with the accessor values; raise :class:`LayoutMismatch`.

    ``expected`` maps word offsets to values (including the size and capacity words).
    The array size word must also be positive and at most the capacity word, and the
    data pointer word (after the size) non-null.
    """
    for offset, value in expected.items():
        if int(header[offset]) != value:
            raise LayoutMismatch(f"word {offset} is {int(header[offset])}, expected {value}")
    count = int(header[count_at])
    if not 0 < count <= int(header[capacity_at]) or not int(header[count_at + 1]):
        raise LayoutMismatch("coefficient array header is inconsistent")


def ciphertext_view(ct: object) -> U64:
    """The residues of a SEAL ciphertext in place, shape ``(size, primes, N)``.

    The view aliases SEAL's memory: it changes with ``ct`` and is invalid once ``ct`` is
    resized. Copy out of it.
    """
    size = ct.size()  # type: ignore[attr-defined]
    degree = ct.poly_modulus_degree()  # type: ignore[attr-defined]
    primes = ct.coeff_modulus_size()  # type: ignore[attr-defined]
    capacity = ct.size_capacity() * degree * primes  # type: ignore[attr-defined]
    header = _words(_cpp_object(ct), _CT_DATA + 1, ct)
    expected = dict(enumerate(ct.parms_id(), start=_CT_PARMS))  # type: ignore[attr-defined]
    expected.update(
        {
            _CT_SIZE: size,
            _CT_DEGREE: degree,
            _CT_PRIMES: primes,
            _CT_COUNT: size * degree * primes,
            _CT_CAPACITY: capacity,
        }
    )
    check_header(header, expected, _CT_COUNT, _CT_CAPACITY)
    if int(header[_CT_NTT]) & 0xFF != int(ct.is_ntt_form()):  # type: ignore[attr-defined]
        raise LayoutMismatch("NTT flag differs")
    data = _words(int(header[_CT_DATA]), size * degree * primes, ct)
    return data.reshape(size, primes, degree)


def plaintext_view(pt: object) -> U64:
    """The coefficients of a SEAL plaintext in place, shape ``(coeff_count,)``.

    Writable. Nothing checks what is written: coefficients must be below the plaintext
    modulus (SEAL's ``load`` would have refused others). Invalid once ``pt`` is resized.
    """
    coeffs = pt.coeff_count()  # type: ignore[attr-defined]
    header = _words(_cpp_object(pt), _PT_DATA + 1, pt)
    expected = dict(enumerate(pt.parms_id(), start=_PT_PARMS))  # type: ignore[attr-defined]
    expected.update(
        {_PT_COEFFS: coeffs, _PT_COUNT: coeffs, _PT_CAPACITY: pt.capacity()}  # type: ignore[attr-defined]
    )
    check_header(header, expected, _PT_COUNT, _PT_CAPACITY)
    return _words(int(header[_PT_DATA]), coeffs, pt)
