"""Streaming encryption (:func:`secagg.ciphertext.encrypt_chunks`) gives what :func:`encrypt`
gives: the same chunk layout, a head whose digest is the reassembled vector's, and the
same values once decrypted; bad input is refused before or at the chunk that holds it."""

from __future__ import annotations

import numpy as np
import pytest
from _support import decrypt

import secagg
from secagg import constants as C
from secagg.chunked import VectorHead, checked_chunks, payload_chunks
from secagg.ciphertext import encrypt_chunks, encrypt_integers
from secagg.errors import EncodingError

N = 8192
LENGTH = C.CHUNK_CIPHERTEXTS * N + 1234  # two chunks, the second one short (one ciphertext)


def _streamed(
    keys: secagg.KeySet, values: np.ndarray, *, integers: bool = False
) -> tuple[VectorHead, list[bytes]]:
    payloads, digests = [], []
    for payload, digest in encrypt_chunks(keys.public_key, values, integers=integers):
        payloads.append(payload)
        digests.append(digest)
    head = VectorHead.build(keys.public_key.params, keys.public_key.id_bytes, len(values), digests)
    return head, payloads


def _reassembled(
    keys: secagg.KeySet, head: VectorHead, payloads: list[bytes]
) -> secagg.EncryptedVector:
    residues = np.concatenate([r for _, r in checked_chunks(head, payloads)])
    return secagg.EncryptedVector(
        keys.public_key.params, keys.public_key.id_bytes, head.length, residues
    )


@pytest.mark.parametrize("integers", [False, True], ids=["floats", "integers"])
def test_streamed_chunks_are_a_vector_that_decrypts_like_encrypt(
    keys32: secagg.KeySet, integers: bool
) -> None:
    assert keys32.public_key.params.poly_modulus_degree == N
    rng = np.random.default_rng(3)  # test data, not a secret
    if integers:
        values = rng.integers(-(2**30), 2**30, LENGTH)
        whole = encrypt_integers(keys32.public_key, values)
    else:
        values = rng.uniform(-1.0, 1.0, LENGTH)
        whole = secagg.encrypt(keys32.public_key, values)
    head, payloads = _streamed(keys32, values, integers=integers)

    assert head.chunk_count == 2 and head.ciphertexts == whole.ciphertext_count
    assert [len(p) for p in payloads] == [len(p) for p in payload_chunks(whole)]
    vector = _reassembled(keys32, head, payloads)
    assert VectorHead.of(vector) == head and vector.digest == head.digest
    assert VectorHead.from_bytes(head.to_bytes(), keys32.public_key.params).digest == head.digest
    ours = decrypt(keys32, secagg.aggregate([vector]))
    theirs = decrypt(keys32, secagg.aggregate([whole]))
    assert np.array_equal(ours, theirs)  # encryption is randomized; the plaintexts are equal
    expected = values * 2.0**-keys32.public_key.params.fractional_bits if integers else values
    assert np.abs(ours - expected).max() <= keys32.public_key.params.precision


def test_a_bad_vector_is_refused_at_the_call(keys32: secagg.KeySet) -> None:
    with pytest.raises(EncodingError, match="NaN"):
        encrypt_chunks(keys32.public_key, np.array([0.0, np.nan]))
    with pytest.raises(EncodingError, match="integer vector"):
        encrypt_chunks(keys32.public_key, np.zeros(4), integers=True)


def test_a_value_out_of_range_is_refused_at_its_chunk(keys32: secagg.KeySet) -> None:
    values = np.zeros(LENGTH)
    values[-1] = keys32.public_key.params.value_bound  # in the second chunk
    chunks = encrypt_chunks(keys32.public_key, values)
    next(chunks)  # the first chunk is fine
    with pytest.raises(EncodingError, match="out of range"):
        next(chunks)
