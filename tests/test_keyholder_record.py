"""The key holder's durable record: decryptions, decrypted-over ciphertexts, stored answers.

What :class:`clients.keyholder.record.DecryptionRecord` keeps is what lets a key holder
refuse replays and answer a repeated task with the bytes it sent, across restarts.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from clients.keyholder.checks import check_not_replayed
from clients.keyholder.record import Decryption, DecryptionRecord, StoredAnswer
from secagg.chunk_file import ChunkFile
from secagg.chunked import PartialHead
from secagg.errors import ConfigError, ReplayedCiphertext
from secagg.params import Parameters

ROUND1 = Decryption(1, hashlib.sha256(b"aggregate of round 1").digest())
ROUND2 = Decryption(2, hashlib.sha256(b"aggregate of round 2").digest())
VICTIM = hashlib.sha256(b"victim's ciphertext").digest()
OTHER = hashlib.sha256(b"another ciphertext").digest()
PARAMS = Parameters.default()


def _kept(
    record: DecryptionRecord, decryption: Decryption, quorum: tuple[int, ...], signature: bytes
) -> tuple[StoredAnswer, list[bytes]]:
    """Keep a partial of two chunks (arbitrary bytes) as the agent does; the answer, chunks."""
    chunks = [bytes(range(256)) * 4 + b"\n\n", b"\x00\n" * 7]
    head = PartialHead(
        PARAMS,
        9,
        tuple(hashlib.sha256(c).digest() for c in chunks),
        bytes(32),
        decryption.aggregate_digest,
        quorum[0],
        2,
        quorum,
    )
    with record.answer_writer(decryption, quorum) as out:
        for chunk in chunks:
            out.append(chunk)
        return record.keep_answer(decryption, out, head, signature), chunks


def test_records_are_private_files(tmp_path: Path) -> None:
    record = DecryptionRecord(tmp_path)
    record.remember(ROUND1, [VICTIM])
    _kept(record, ROUND1, (1, 2), b"s" * 64)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"decrypted.json", "ciphertexts.json"}
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in files), files
    assert not list(tmp_path.rglob("*.tmp*"))


def test_a_ciphertext_is_remembered_where_it_was_first_decrypted(tmp_path: Path) -> None:
    record = DecryptionRecord(tmp_path)
    record.remember(ROUND1, [VICTIM])
    record.remember(ROUND1, [VICTIM, OTHER])  # a new quorum of the same aggregate
    assert DecryptionRecord(tmp_path).seen_ciphertexts() == {VICTIM: ROUND1, OTHER: ROUND1}
    assert DecryptionRecord(tmp_path).decrypted() == {1: ROUND1.aggregate_digest}


def test_replay_check(tmp_path: Path) -> None:
    record = DecryptionRecord(tmp_path)
    record.remember(ROUND1, [VICTIM])
    seen = record.seen_ciphertexts()
    check_not_replayed(seen, ROUND1, [VICTIM])  # the same decryption: a retry
    check_not_replayed(seen, ROUND2, [OTHER])  # nothing seen before
    with pytest.raises(ReplayedCiphertext, match="already decrypted in round 1"):
        check_not_replayed(seen, ROUND2, [OTHER, VICTIM])
    other_aggregate = Decryption(1, hashlib.sha256(b"another aggregate").digest())
    with pytest.raises(ReplayedCiphertext, match="earlier in this round"):
        check_not_replayed(seen, other_aggregate, [VICTIM])


def test_a_stored_answer_comes_back_byte_for_byte(tmp_path: Path) -> None:
    answer, chunks = _kept(DecryptionRecord(tmp_path), ROUND1, (1, 3), b"\x00\n" * 32)
    record = DecryptionRecord(tmp_path)
    assert record.answer(ROUND1, [3, 1]) == answer  # the quorum as partial_decrypt orders it
    with ChunkFile(answer.path) as file:
        head = PartialHead.from_bytes(file.head_bytes, PARAMS)
        assert head.digest == answer.partial_digest
        assert file.payload_bytes == sum(len(c) for c in chunks)
    assert answer.path.read_bytes().startswith(b"".join(chunks))
    assert record.answer(ROUND1, [1, 2]) is None  # another quorum
    assert record.answer(ROUND2, [1, 3]) is None  # another round


def test_an_answer_file_of_another_task_is_not_served(tmp_path: Path) -> None:
    record = DecryptionRecord(tmp_path)
    answer, _ = _kept(record, ROUND1, (1, 2), b"s")
    moved = record._answer_path(ROUND2, (1, 2))
    record._answer_path(ROUND1, (1, 2)).rename(moved)
    answer.path.rename(moved.with_suffix(".chunks"))
    with pytest.raises(ValueError, match="another task"):
        record.answer(ROUND2, (1, 2))


def test_an_answer_without_its_partial_file_is_not_served(tmp_path: Path) -> None:
    record = DecryptionRecord(tmp_path)
    answer, _ = _kept(record, ROUND1, (1, 2), b"s")
    answer.path.unlink()
    with pytest.raises(ValueError, match="missing"):
        record.answer(ROUND1, (1, 2))


def test_an_answer_kept_by_an_earlier_version_is_never_replaced_by_fresh_noise(
    tmp_path: Path,
) -> None:
    """A task answered before the upgrade (one-message partial) must not get a new partial."""
    record = DecryptionRecord(tmp_path)
    (tmp_path / "answers").mkdir()
    name = f"r1-{ROUND1.aggregate_digest.hex()}-q1-2.partial"
    (tmp_path / "answers" / name).write_bytes(b"an old answer")
    with pytest.raises(ConfigError, match="earlier version"):
        record.answer(ROUND1, (1, 2))
    assert record.answer(ROUND1, (1, 3)) is None  # another quorum: never answered
