"""Chunked envelopes: heads, chunk checks, chunk files, the file-backed accumulator and the
chunk-wise threshold decryption agree with the in-memory objects and refuse bad chunks."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

import secagg
from secagg import constants as C
from secagg._internal.modarith import scale_mod
from secagg.accumulator import ChunkedAggregator
from secagg.chunk_file import ChunkFile, ChunkFileWriter
from secagg.chunked import (
    AggregateHead,
    PartialHead,
    VectorHead,
    checked_chunks,
    pack_chunk,
    payload_chunks,
)
from secagg.chunked_threshold import check_partial_head, combine_chunk, partial_chunks
from secagg.errors import InvalidCiphertext, InvalidPartialDecryption

LENGTH = 3 * C.CHUNK_CIPHERTEXTS * 8192 + 1234  # four chunks, the last one short


@pytest.fixture(scope="module")
def world(keys32: secagg.KeySet) -> tuple[secagg.KeySet, list[secagg.EncryptedVector]]:
    rng = np.random.default_rng(7)  # test data, not a secret
    vectors = [secagg.encrypt(keys32.public_key, rng.uniform(-1, 1, LENGTH)) for _ in range(3)]
    return keys32, vectors


def test_heads_have_the_whole_envelopes_digests(world) -> None:
    keys, vectors = world
    vec = vectors[0]
    head = VectorHead.of(vec)
    assert head.chunk_count == 4
    assert head.digest == vec.digest
    back = VectorHead.from_bytes(head.to_bytes(), vec.params)
    assert back.digest == vec.digest
    agg = secagg.aggregate(vectors, [1, 2, 3])
    assert (
        AggregateHead.from_bytes(AggregateHead.of(agg).to_bytes(), vec.params).digest == agg.digest
    )
    part = secagg.partial_decrypt(keys.shares[0], agg, quorum=[1, 2])
    assert PartialHead.from_bytes(PartialHead.of(part).to_bytes(), vec.params).digest == part.digest


def test_every_chunk_checks_out_and_gives_the_residues(world) -> None:
    _, vectors = world
    vec = vectors[0]
    head = VectorHead.of(vec)
    got = np.concatenate([r for _, r in checked_chunks(head, payload_chunks(vec))])
    assert np.array_equal(got, vec.residues)


def _chunks(vec: secagg.EncryptedVector) -> list[bytes]:
    return [bytes(c) for c in payload_chunks(vec)]


@pytest.mark.parametrize(
    "defect",
    ["flipped", "reordered", "duplicated", "missing", "truncated", "extra", "other-vector"],
)
def test_bad_chunk_streams_are_refused(world, defect: str) -> None:
    _, vectors = world
    head = VectorHead.of(vectors[0])
    chunks = _chunks(vectors[0])
    if defect == "flipped":
        chunks[1] = chunks[1][:100] + bytes([chunks[1][100] ^ 1]) + chunks[1][101:]
    elif defect == "reordered":
        chunks[0], chunks[1] = chunks[1], chunks[0]
    elif defect == "duplicated":
        chunks[2] = chunks[1]
    elif defect == "missing":
        del chunks[3]
    elif defect == "truncated":
        chunks[3] = chunks[3][:-15]
    elif defect == "extra":
        chunks.append(chunks[0])
    else:
        chunks[2] = _chunks(vectors[1])[2]
    with pytest.raises(InvalidCiphertext):
        for _ in checked_chunks(head, chunks):
            pass


def test_a_head_that_lies_about_its_chunks_is_refused(world) -> None:
    _, vectors = world
    vec = vectors[0]
    msg = VectorHead.of(vec).to_message()
    msg.chunk_digests[1] = bytes(32)
    with pytest.raises(InvalidCiphertext, match="digest"):
        VectorHead.from_message(msg, vec.params)
    msg = VectorHead.of(vec).to_message()
    del msg.chunk_digests[-1]
    with pytest.raises(InvalidCiphertext, match="chunks"):
        VectorHead.from_message(msg, vec.params)
    msg = VectorHead.of(vec).to_message()
    msg.payload = b"\0" * 15
    with pytest.raises(InvalidCiphertext, match="payload"):
        VectorHead.from_message(msg, vec.params)


def _first_chunk_replaced(
    vec: secagg.EncryptedVector, residues: np.ndarray
) -> tuple[VectorHead, bytes]:
    """A head whose first chunk is ``residues`` (digest consistent), and that chunk."""
    payload, digest = pack_chunk(0, residues)
    rest = VectorHead.of(vec).chunk_digests[1:]
    head = VectorHead(
        vec.params, vec.ciphertext_count, (digest, *rest), vec.public_key_id, vec.length
    )
    return head, payload


def test_unreduced_and_transparent_chunks_are_refused(world) -> None:
    _, vectors = world
    vec = vectors[0]
    bad = vec.residues[: C.CHUNK_CIPHERTEXTS].copy()
    bad[0, 0, 0, 0] = vec.params.data_primes[0]
    head, payload = _first_chunk_replaced(vec, bad)
    with pytest.raises(InvalidCiphertext, match="reduced"):
        head.residues(0, payload)
    with pytest.raises(InvalidCiphertext, match="reduced"):  # even from one's own file
        head.stored_residues(0, payload)
    clear = vec.residues[: C.CHUNK_CIPHERTEXTS].copy()
    clear[3, 1] = 0
    head, payload = _first_chunk_replaced(vec, clear)
    with pytest.raises(InvalidCiphertext, match="transparent"):
        head.residues(0, payload)


def test_chunk_file_round_trip_and_abort(world, tmp_path: Path) -> None:
    _, vectors = world
    vec = vectors[0]
    head = VectorHead.of(vec)
    with ChunkFileWriter(tmp_path / "v") as out:
        for c in payload_chunks(vec):
            out.append(c)
        out.finish(head.to_bytes())
    with ChunkFile(tmp_path / "v") as f:
        back = VectorHead.from_bytes(f.head_bytes, vec.params)
        f.check(back)
        got = [back.residues(i, f.chunk(back, i)) for i in range(back.chunk_count)]
    assert np.array_equal(np.concatenate(got), vec.residues)
    with pytest.raises(RuntimeError), ChunkFileWriter(tmp_path / "w") as out:
        out.append(b"x")
        raise RuntimeError
    assert list(tmp_path.iterdir()) == [tmp_path / "v"]


def test_file_accumulator_equals_the_in_memory_aggregate(world, tmp_path: Path) -> None:
    keys, vectors = world
    weights = [3, 250, 65536 - 253]  # the whole weight budget
    expected = secagg.aggregate(vectors, weights)
    acc = ChunkedAggregator(
        vectors[0].params,
        public_key_id=keys.public_key.id_bytes,
        length=LENGTH,
        path=tmp_path / "a",
    )
    for vec, w in zip(vectors, weights, strict=True):
        acc.add(checked_chunks(VectorHead.of(vec), payload_chunks(vec)), w)
    head = acc.write(tmp_path / "agg")
    assert head.digest == expected.digest
    with pytest.raises(secagg.WeightBudgetExceeded):
        acc.add(checked_chunks(VectorHead.of(vectors[0]), payload_chunks(vectors[0])), 1)
    acc.close()
    assert not (tmp_path / "a").exists()


def test_a_fold_that_fails_half_way_breaks_the_accumulator(world, tmp_path: Path) -> None:
    keys, vectors = world
    acc = ChunkedAggregator(
        vectors[0].params,
        public_key_id=keys.public_key.id_bytes,
        length=LENGTH,
        path=tmp_path / "a",
    )
    chunks = _chunks(vectors[0])
    with pytest.raises(InvalidCiphertext, match="truncated"):
        acc.add(checked_chunks(VectorHead.of(vectors[0]), chunks[:2]), 5)
    assert acc.broken and acc.total_weight == 0
    with pytest.raises(InvalidCiphertext, match="broken"):
        acc.chunk(0)


def test_chunked_partials_combine_like_the_in_memory_ones(world, tmp_path: Path) -> None:
    keys, vectors = world
    expected_agg = secagg.aggregate(vectors, [1, 2, 3])
    expected = secagg.combine(
        expected_agg,
        [secagg.partial_decrypt(keys.shares[i - 1], expected_agg, quorum=[1, 3]) for i in (1, 3)],
    )
    acc = ChunkedAggregator(
        vectors[0].params,
        public_key_id=keys.public_key.id_bytes,
        length=LENGTH,
        path=tmp_path / "a",
    )
    for vec, w in zip(vectors, [1, 2, 3], strict=True):
        acc.add(checked_chunks(VectorHead.of(vec), payload_chunks(vec)), w)
    head = acc.write(tmp_path / "agg")
    files = []
    for i in (1, 3):
        with ChunkFileWriter(tmp_path / f"p{i}") as out:
            c1 = (acc.chunk(k)[:, 1] for k in range(acc.chunks))
            ph = partial_chunks(keys.shares[i - 1], head, [1, 3], c1, out)
            out.finish(ph.to_bytes())
        f = ChunkFile(tmp_path / f"p{i}")
        parsed = PartialHead.from_bytes(f.head_bytes, head.vector.params)
        check_partial_head(head, parsed)
        files.append((f, parsed))
    values = [
        combine_chunk(head, k, acc.chunk(k)[:, 0], [h.residues(k, f.chunk(h, k)) for f, h in files])
        for k in range(acc.chunks)
    ]
    got = np.concatenate(values)
    assert got.shape == (LENGTH,)
    assert np.abs(got - expected).max() < 1e-6  # both carry fresh flooding noise: not bit-equal
    other = secagg.aggregate(vectors[:2], [1, 1])
    with pytest.raises(InvalidPartialDecryption, match="another aggregate"):
        check_partial_head(AggregateHead.of(other), files[0][1])


def test_scale_mod_against_python_integers() -> None:
    rng = random.Random(3)  # test data, not a secret
    for q in (9007199254364161, 4503599627124737, (1 << 60) - 93):
        a = np.array([rng.randrange(q) for _ in range(500)] + [0, q - 1], dtype=np.uint64)
        for w in (0, 1, 2047, 2048, 65536, rng.randrange(1 << 20), q - 1):
            got = scale_mod(a, w, q)
            assert [int(x) for x in got] == [int(x) * w % q for x in a]


def test_an_oversized_head_is_refused_before_it_is_parsed(params: secagg.Parameters) -> None:
    with pytest.raises(InvalidCiphertext, match="exceeds the cap"):
        VectorHead.from_bytes(b"\x00" * (C.MAX_HEAD_BYTES + 1), params)
    with pytest.raises(InvalidPartialDecryption, match="exceeds the cap"):
        PartialHead.from_bytes(b"\x00" * (C.MAX_HEAD_BYTES + 1), params)
    with pytest.raises(InvalidCiphertext, match="exceeds the cap"):
        AggregateHead.from_bytes(b"\x00" * (C.MAX_HEAD_BYTES + 1), params)
