"""Internal: the bridge between numpy arrays and SEAL objects inside TenSEAL.

Not part of the public API. TenSEAL's ``sealapi`` binding saves and loads SEAL objects
through file paths only, so objects cross over as SEAL's binary format in an *anonymous*
memory file (Linux ``memfd_create``, handed to SEAL as ``/proc/self/fd/N``): it has no
name in any filesystem and vanishes when its descriptor is closed or the process dies,
however it dies. We only ever hand SEAL bytes that we built ourselves from validated
arrays: untrusted input is never parsed by SEAL.

The hot conversions (a ciphertext's residues out, a coefficient plaintext in, a
plaintext's coefficients out) skip the files where :mod:`secagg._internal.seal_memory` is verified
to work: see :attr:`SealBackend.direct_memory`.

SEAL's binary format, as far as this module reads and writes it (SEAL 4.x inside TenSEAL
0.3.18; all integers little-endian):

* **Header**, 16 bytes ``<HBBBBHQ``: magic ``0xA15E``, header size (16), SEAL version
  major and minor, compression mode (0 none, 1 zlib, 2 zstd), two reserved bytes, and
  the total size in bytes including the header. The body that follows is compressed as
  the mode says. We write mode 0; TenSEAL's build writes zstd, which :func:`_unwrap`
  decompresses (bounded output size).
* **DynArray** (the coefficient store of every object): its own header, then a ``u64``
  count and ``count`` ``u64`` words.
* **Ciphertext** body: ``parms_id`` (32 bytes, four ``u64``), ``is_ntt_form`` (1 byte),
  then ``<QQQdQ``: size (number of polynomials), ``N``, number of primes, scale (f64),
  correction factor -- 73 bytes in all -- then a DynArray laid out
  ``[polynomial][prime][coefficient]``. BFV ciphertexts are in coefficient form.
* **Plaintext** body: ``parms_id`` (zero for a coefficient-form plaintext, the level's id
  for an NTT-form one), ``<Qd``: coefficient count and scale, then a DynArray. A
  coefficient-form plaintext holds up to ``N`` coefficients below ``t``; an NTT-form one
  holds ``primes * N`` residues.
* **Public key**: a ciphertext at the key level (every prime, NTT form); we only write
  them, with the ciphertext layout and the key level's ``parms_id``.

SEAL's ``load`` checks a loaded object against the context (parameter id, sizes,
residues below their primes), but we never rely on it for untrusted input: see above.

Security
--------
Secret material (``lambda_j * S_j``, the DKG secrets ``s_i``/``e_i``, a client's plaintext,
a transparent ciphertext being decoded, and every object read back through SEAL's
``save``) crosses only through anonymous memory files
(:mod:`secagg._internal.seal_handoff`): no named file ever holds it, so nothing is left
behind when a process is killed. Without ``memfd_create`` (not Linux) a secret hand-off
raises :class:`~secagg.errors.SecretMemoryUnavailable`; only public objects (ciphertexts,
public keys) then cross through a private scratch directory.
"""

from __future__ import annotations

import os
import struct
from functools import lru_cache

import numpy as np
import tenseal.sealapi as seal
import zstandard

from secagg._internal import seal_memory
from secagg._internal.modarith import U64
from secagg._internal.seal_handoff import load_from, saved
from secagg.params import Parameters

_HEADER = struct.Struct("<HBBBBHQ")
_MAGIC = 0xA15E
_COMPR_NONE, _COMPR_ZSTD = 0, 2
_CT_META = struct.Struct("<QQQdQ")  # size, N, coeff_modulus_size, scale, correction factor
_PT_META = struct.Struct("<Qd")  # coeff_count, scale
_MAX_SEAL_OBJECT = 1 << 31


def _seal_version() -> tuple[int, int]:
    """The SEAL version written by this build (read from an object SEAL serialized)."""
    _, _, major, minor, _, _, _ = _HEADER.unpack(saved(seal.Modulus(3), secret=False)[:16])
    return major, minor


_VERSION = _seal_version()


def _wrap(body: bytes) -> bytes:
    return _HEADER.pack(_MAGIC, 16, _VERSION[0], _VERSION[1], _COMPR_NONE, 0, 16 + len(body)) + body


def _unwrap(blob: bytes) -> tuple[bytes, int]:
    """Strip one SEAL header (decompressing zstd); return the body and bytes consumed."""
    magic, hsize, _, _, mode, _, size = _HEADER.unpack_from(blob)
    if magic != _MAGIC or hsize != 16 or not 16 <= size <= len(blob):
        raise RuntimeError("not a SEAL object")
    body = blob[16:size]
    if mode == _COMPR_ZSTD:
        body = zstandard.ZstdDecompressor().decompress(body, max_output_size=_MAX_SEAL_OBJECT)
    elif mode != _COMPR_NONE:
        raise RuntimeError(f"unsupported SEAL compression mode {mode}")
    return body, size


def _parms_id_bytes(parms_id: list[int]) -> bytes:
    return np.asarray(parms_id, dtype="<u8").tobytes()


def _dyn_array(values: U64) -> bytes:
    flat = np.ascontiguousarray(values, dtype="<u8")
    return _wrap(struct.pack("<Q", flat.size) + flat.tobytes())


def _random_words(shape: tuple[int, ...]) -> U64:
    return np.frombuffer(os.urandom(8 * int(np.prod(shape))), dtype="<u8").reshape(shape)


def _read_dyn_array(blob: bytes) -> U64:
    body, _ = _unwrap(blob)
    (count,) = struct.unpack_from("<Q", body)
    return np.frombuffer(body, dtype="<u8", offset=8, count=count).astype(np.uint64)


class SealBackend:
    """SEAL contexts and conversions for one :class:`Parameters` set.

    ``context`` is the BFV context (data level = all primes but the special one).
    ``key_arith`` is an arithmetic-only context whose *data* level holds all primes of
    ``context``'s key level; it exists because SEAL's evaluator refuses key-level
    ciphertexts, and key generation needs NTTs at the key level. It is never used to
    encrypt (its security level is not enforced).

    ``direct_memory`` tells whether conversions use :mod:`secagg._internal.seal_memory` (enabled
    when supported, allowed, and a self-test agrees with SEAL's serialization) or files.
    """

    def __init__(self, params: Parameters, *, allow_direct_memory: bool = True) -> None:
        self.params = params
        n = params.poly_modulus_degree
        parms = seal.EncryptionParameters(seal.SCHEME_TYPE.BFV)
        parms.set_poly_modulus_degree(n)
        parms.set_coeff_modulus([seal.Modulus(q) for q in params.coeff_modulus])
        parms.set_plain_modulus(seal.Modulus(params.plain_modulus))
        self.context = seal.SEALContext(parms, True, seal.SEC_LEVEL_TYPE.TC128)
        if not self.context.parameters_set():
            raise RuntimeError(self.context.parameters_error_message())
        self.data_parms_id = _parms_id_bytes(self.context.first_parms_id())
        self.key_parms_id = _parms_id_bytes(self.context.key_parms_id())
        self.evaluator = seal.Evaluator(self.context)

        extra = next(
            m.value()
            for m in seal.CoeffModulus.Create(n, [60] * (len(params.coeff_modulus) + 1))
            if m.value() not in params.coeff_modulus
        )
        arith = seal.EncryptionParameters(seal.SCHEME_TYPE.BFV)
        arith.set_poly_modulus_degree(n)
        arith.set_coeff_modulus([seal.Modulus(q) for q in (*params.coeff_modulus, extra)])
        arith.set_plain_modulus(seal.Modulus(params.plain_modulus))
        self.key_arith = seal.SEALContext(arith, True, seal.SEC_LEVEL_TYPE.NONE)
        self.key_arith_parms_id = _parms_id_bytes(self.key_arith.first_parms_id())
        self.key_arith_evaluator = seal.Evaluator(self.key_arith)

        # Any secret key decodes a transparent ciphertext (c0, 0): c1 = 0 drops the key.
        self._decoder = seal.Decryptor(self.context, seal.KeyGenerator(self.context).secret_key())
        self.direct_memory = False
        if allow_direct_memory and seal_memory.supported():
            self.direct_memory = self._direct_memory_agrees()

    def _direct_memory_agrees(self) -> bool:
        """Self-test: direct reads and writes match SEAL's own serialization exactly.

        Reads come first, on objects SEAL loaded from files: coefficient- and NTT-form
        ciphertexts of sizes 2 and 3, and objects with spare capacity (so the size and
        capacity words are told apart). A write is tried only once every read agreed.
        """
        n, primes = self.params.poly_modulus_degree, self.params.data_primes
        moduli = np.asarray(primes, dtype=np.uint64).reshape(1, -1, 1)
        polys = _random_words((3, len(primes), n)) % moduli
        coeffs = _random_words((n,)) % np.uint64(self.params.plain_modulus)
        try:  # random test data, not secret: may cross public hand-off files
            loaded = self._loaded_plaintext(coeffs, secret=False)
            loaded.reserve(2 * n)
            if not np.array_equal(seal_memory.plaintext_view(loaded), coeffs):
                return False
            for size, ntt in ((2, False), (3, True), (2, True)):
                ct = self.to_ciphertext(polys[:size], ntt=ntt)
                ct.reserve(size + 1)
                if not np.array_equal(seal_memory.ciphertext_view(ct), polys[:size]):
                    return False
            written = seal.Plaintext(n)
            seal_memory.plaintext_view(written)[:] = coeffs
            return bool(np.array_equal(self._saved_coefficients(written, secret=False), coeffs))
        except (seal_memory.LayoutMismatch, RuntimeError, ValueError):
            return False

    # --- building SEAL objects from arrays -------------------------------------------
    def _load(
        self, obj: object, blob: bytes, context: object | None = None, *, secret: bool
    ) -> None:
        load_from(obj, blob, context or self.context, secret=secret)

    def _ciphertext_blob(self, polys: U64, parms_id: bytes, ntt: bool) -> bytes:
        size, nprimes, n = polys.shape
        meta = _CT_META.pack(size, n, nprimes, 1.0, 1)
        return _wrap(parms_id + bytes([int(ntt)]) + meta + _dyn_array(polys))

    def to_ciphertext(
        self, polys: U64, *, ntt: bool = False, secret: bool = False
    ) -> seal.Ciphertext:
        """A data-level SEAL ciphertext from residues of shape ``(size, primes, N)``.

        ``secret``: the residues reveal a secret (say, products with encryption
        randomness), so a file hand-off goes through a memfd only.
        """
        return self._ciphertext(polys, ntt=ntt, secret=secret)

    def refill_ciphertext(self, ct: seal.Ciphertext | None, polys: U64) -> seal.Ciphertext:
        """A coefficient-form data-level ciphertext holding ``polys`` (public residues of
        shape ``(size, primes, N)``, reduced): ``ct`` overwritten in place when the direct
        path is on and ``ct`` has that shape in coefficient form, else a new one.

        Saves a hand-off per ciphertext in loops over many of them. The caller checked
        the residues (a direct write skips the range checks of SEAL's ``load``).
        """
        if (
            ct is None
            or not self.direct_memory
            or ct.is_ntt_form()
            or ct.size() != polys.shape[0]
            or ct.parms_id() != self.context.first_parms_id()
        ):
            return self.to_ciphertext(polys)
        seal_memory.ciphertext_view(ct)[...] = polys
        return ct

    def _ciphertext(self, polys: U64, *, ntt: bool, secret: bool) -> seal.Ciphertext:
        ct = seal.Ciphertext()
        self._load(ct, self._ciphertext_blob(polys, self.data_parms_id, ntt), secret=secret)
        return ct

    def to_plaintext(self, coeffs: U64) -> seal.Plaintext:
        """A coefficient-form BFV plaintext from 1 to ``N`` coefficients below ``t``.

        Raises ``ValueError`` for other input (the direct path must check what SEAL's
        ``load`` would have checked).
        """
        coeffs = np.asarray(coeffs, dtype=np.uint64)
        if coeffs.ndim != 1 or not 0 < coeffs.size <= self.params.poly_modulus_degree:
            raise ValueError(f"plaintext needs 1 to N coefficients, got shape {coeffs.shape}")
        if int(coeffs.max()) >= self.params.plain_modulus:
            raise ValueError("plaintext coefficient not below the plaintext modulus")
        if not self.direct_memory:
            return self._loaded_plaintext(coeffs)
        pt = seal.Plaintext(coeffs.size)
        seal_memory.plaintext_view(pt)[:] = coeffs
        return pt

    def _loaded_plaintext(self, coeffs: U64, *, secret: bool = True) -> seal.Plaintext:
        pt = seal.Plaintext()
        body = bytes(32) + _PT_META.pack(coeffs.size, 1.0) + _dyn_array(coeffs)
        self._load(pt, _wrap(body), secret=secret)
        return pt

    def to_ntt_plaintext(self, residues: U64) -> seal.Plaintext:
        """A data-level NTT-form plaintext from residues of shape ``(primes, N)`` (secret)."""
        pt = seal.Plaintext()
        body = self.data_parms_id + _PT_META.pack(residues.size, 1.0) + _dyn_array(residues)
        self._load(pt, _wrap(body), secret=True)
        return pt

    def to_public_key(self, polys: U64) -> seal.PublicKey:
        """A SEAL public key from NTT-form key-level residues of shape ``(2, primes, N)``."""
        pk = seal.PublicKey()
        self._load(pk, self._ciphertext_blob(polys, self.key_parms_id, True), secret=False)
        return pk

    # --- reading SEAL objects back (always secret: a product may hold a key share) ----

    def from_ciphertext(self, ct: seal.Ciphertext) -> U64:
        """Residues of shape ``(size, primes, N)`` of a SEAL ciphertext (a copy)."""
        if self.direct_memory:
            return seal_memory.ciphertext_view(ct).copy()
        return self._saved_residues(ct)

    def _saved_residues(self, ct: seal.Ciphertext) -> U64:
        body, _ = _unwrap(saved(ct))
        size, n, nprimes, _, _ = _CT_META.unpack_from(body, 33)
        data = _read_dyn_array(body[33 + _CT_META.size :])
        return data.reshape(size, nprimes, n)

    def from_plaintext(self, pt: seal.Plaintext) -> U64:
        """Coefficients of a coefficient-form plaintext, zero-padded to ``N``."""
        if self.direct_memory:
            data = seal_memory.plaintext_view(pt) if pt.coeff_count() else np.empty(0, np.uint64)
        else:
            data = self._saved_coefficients(pt)
        out = np.zeros(self.params.poly_modulus_degree, dtype=np.uint64)
        out[: data.size] = data
        return out

    def _saved_coefficients(self, pt: seal.Plaintext, *, secret: bool = True) -> U64:
        body, _ = _unwrap(saved(pt, secret=secret))
        return _read_dyn_array(body[32 + _PT_META.size :])

    # --- operations -------------------------------------------------------------------
    def ntt_key_level(self, polys: U64) -> U64:
        """Forward NTT of key-level residues, shape ``(k, key_primes, N)``, k >= 1 (secret)."""
        k = polys.shape[0]
        padded = np.concatenate([polys, polys[:1]]) if k == 1 else polys
        ct = seal.Ciphertext()
        blob = self._ciphertext_blob(padded, self.key_arith_parms_id, False)
        self._load(ct, blob, self.key_arith, secret=True)
        self.key_arith_evaluator.transform_to_ntt_inplace(ct)
        return self.from_ciphertext(ct)[:k]

    def decode_transparent(self, m: U64) -> U64:
        """Scale-and-round ``m`` (shape ``(primes, N)``): ``round(t * m / q) mod t``.

        ``m`` is a decryption (a plaintext in disguise): it crosses as a secret object.
        """
        ct = self._ciphertext(np.stack([m, np.zeros_like(m)]), ntt=False, secret=True)
        pt = seal.Plaintext()
        self._decoder.decrypt(ct, pt)
        return self.from_plaintext(pt)


@lru_cache(maxsize=8)
def backend_for(params: Parameters) -> SealBackend:
    """The (cached) backend of a parameter set."""
    return SealBackend(params)
