"""Direct access to SEAL coefficient arrays (secagg._internal.seal_memory) vs SEAL's files."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import tenseal.sealapi as seal

import secagg
from secagg._internal import seal_memory
from secagg._internal.seal_backend import SealBackend, backend_for


def _random(shape: tuple[int, ...], moduli: np.ndarray) -> np.ndarray:
    words = np.frombuffer(np.random.default_rng(7).bytes(8 * int(np.prod(shape))), "<u8")
    return words.reshape(shape) % moduli


def _polys(params: secagg.Parameters, size: int) -> np.ndarray:
    moduli = np.asarray(params.data_primes, dtype=np.uint64).reshape(1, -1, 1)
    return _random((size, len(params.data_primes), params.poly_modulus_degree), moduli)


def test_direct_memory_is_enabled_on_the_pinned_build(params: secagg.Parameters) -> None:
    # If the self-test failed, the backend would silently fall back to files (slow but
    # correct); this test makes such a regression visible.
    assert seal_memory.supported()
    assert backend_for(params).direct_memory


@pytest.mark.parametrize("size", [2, 3])
@pytest.mark.parametrize("ntt", [False, True])
def test_ciphertext_view_matches_seal_serialization(
    params: secagg.Parameters, size: int, ntt: bool
) -> None:
    backend = backend_for(params)
    polys = _polys(params, size)
    ct = backend.to_ciphertext(polys, ntt=ntt)
    view = seal_memory.ciphertext_view(ct)
    assert view.shape == polys.shape
    np.testing.assert_array_equal(view, polys)
    np.testing.assert_array_equal(view, backend._saved_residues(ct))
    # After a SEAL operation changes the object, a fresh view sees the new residues.
    if ntt:
        backend.evaluator.transform_from_ntt_inplace(ct)
    else:
        backend.evaluator.transform_to_ntt_inplace(ct)
    np.testing.assert_array_equal(seal_memory.ciphertext_view(ct), backend._saved_residues(ct))


def test_key_level_ciphertext_view(params: secagg.Parameters) -> None:
    backend = backend_for(params)
    primes = len(params.data_primes) + 1
    polys = _random(
        (2, primes, params.poly_modulus_degree), np.uint64(min(params.coeff_modulus))
    )  # < every prime
    ct = seal.Ciphertext()
    blob = backend._ciphertext_blob(polys, backend.key_arith_parms_id, False)
    backend._load(ct, blob, backend.key_arith, secret=False)
    np.testing.assert_array_equal(seal_memory.ciphertext_view(ct), polys)


def test_encryption_of_a_directly_written_plaintext_decrypts_to_it(
    params: secagg.Parameters,
) -> None:
    backend = backend_for(params)
    n = params.poly_modulus_degree
    coeffs = _random((n,), np.uint64(params.plain_modulus))
    pt = backend.to_plaintext(coeffs)
    np.testing.assert_array_equal(backend._saved_coefficients(pt), coeffs)

    keygen = seal.KeyGenerator(backend.context)
    public_key = seal.PublicKey()
    keygen.create_public_key(public_key)
    ct = seal.Ciphertext()
    seal.Encryptor(backend.context, public_key).encrypt(pt, ct)
    out = seal.Plaintext()
    seal.Decryptor(backend.context, keygen.secret_key()).decrypt(ct, out)
    np.testing.assert_array_equal(backend.from_plaintext(out), coeffs)
    np.testing.assert_array_equal(backend._saved_coefficients(out), coeffs[: out.coeff_count()])


def test_empty_objects_are_refused_before_their_data_is_read() -> None:
    with pytest.raises(seal_memory.LayoutMismatch):
        seal_memory.ciphertext_view(seal.Ciphertext())
    with pytest.raises(seal_memory.LayoutMismatch):
        seal_memory.plaintext_view(seal.Plaintext())


def test_header_check_names_each_inconsistency() -> None:
    header = np.array([1, 2, 3, 4, 8192, 0, 0, 0, 16, 8, 0xDEAD], dtype=np.uint64)
    seal_memory.check_header(header, {0: 1, 4: 8192}, count_at=9, capacity_at=8)
    with pytest.raises(seal_memory.LayoutMismatch, match="word 4"):
        seal_memory.check_header(header, {4: 4096}, count_at=9, capacity_at=8)
    for word, value in ((9, 0), (9, 17), (10, 0)):
        bad = header.copy()
        bad[word] = value
        with pytest.raises(seal_memory.LayoutMismatch, match="inconsistent"):
            seal_memory.check_header(bad, {}, count_at=9, capacity_at=8)


def test_unverified_builds_use_files_and_still_encrypt(
    params: secagg.Parameters, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(seal_memory, "VERIFIED_TENSEAL_VERSIONS", frozenset())
    assert not seal_memory.supported()
    files = SealBackend(params)
    assert not files.direct_memory
    assert not SealBackend(params, allow_direct_memory=False).direct_memory

    direct = backend_for(params)
    polys = _polys(params, 2)
    ct = files.to_ciphertext(polys)
    np.testing.assert_array_equal(files.from_ciphertext(ct), direct.from_ciphertext(ct))
    coeffs = _random((params.poly_modulus_degree,), np.uint64(params.plain_modulus))
    np.testing.assert_array_equal(
        files.from_plaintext(files.to_plaintext(coeffs)),
        direct.from_plaintext(direct.to_plaintext(coeffs)),
    )


def test_a_view_keeps_its_object_alive(params: secagg.Parameters) -> None:
    polys = _polys(params, 2)
    view = seal_memory.ciphertext_view(backend_for(params).to_ciphertext(polys))
    gc.collect()  # the ciphertext has no other reference
    np.testing.assert_array_equal(view, polys)


@pytest.mark.parametrize("direct", [True, False])
def test_to_plaintext_refuses_what_seal_would_refuse(
    params: secagg.Parameters, direct: bool
) -> None:
    backend = backend_for(params) if direct else SealBackend(params, allow_direct_memory=False)
    n, t = params.poly_modulus_degree, params.plain_modulus
    for bad in (
        np.array([t], dtype=np.uint64),
        np.zeros(n + 1, dtype=np.uint64),
        np.zeros(0, dtype=np.uint64),
        np.zeros((2, 4), dtype=np.uint64),
    ):
        with pytest.raises(ValueError):
            backend.to_plaintext(bad)
    short = np.array([t - 1, 0, 5], dtype=np.uint64)
    np.testing.assert_array_equal(backend.from_plaintext(backend.to_plaintext(short))[:3], short)


@pytest.mark.parametrize(
    "offsets",
    [
        {"_PT_CAPACITY": seal_memory._PT_COUNT},  # size and capacity words confused
        {"_CT_CAPACITY": seal_memory._CT_COUNT},
        {"_CT_NTT": seal_memory._CT_SIZE},  # NTT flag read from the wrong word
        {"_CT_PRIMES": seal_memory._CT_DEGREE},
    ],
)
def test_self_test_falls_back_to_files_on_a_wrong_layout(
    params: secagg.Parameters, monkeypatch: pytest.MonkeyPatch, offsets: dict[str, int]
) -> None:
    for name, value in offsets.items():
        monkeypatch.setattr(seal_memory, name, value)
    backend = SealBackend(params)
    assert not backend.direct_memory
    coeffs = np.arange(1, 9, dtype=np.uint64)
    np.testing.assert_array_equal(backend.from_plaintext(backend.to_plaintext(coeffs))[:8], coeffs)
