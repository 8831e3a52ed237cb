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
from secagg.errors import ReplayedCiphertext

ROUND1 = Decryption(1, hashlib.sha256(b"aggregate of round 1").digest())
ROUND2 = Decryption(2, hashlib.sha256(b"aggregate of round 2").digest())
VICTIM = hashlib.sha256(b"victim's ciphertext").digest()
OTHER = hashlib.sha256(b"another ciphertext").digest()


def test_records_are_private_files(tmp_path: Path) -> None:
    record = DecryptionRecord(tmp_path)
    record.remember(ROUND1, [VICTIM])
    record.keep_answer(StoredAnswer(ROUND1, (1, 2), b"partial bytes", b"s" * 64))
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"decrypted.json", "ciphertexts.json"}
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in files), files
    assert not list(tmp_path.rglob("*.tmp"))


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
    partial = bytes(range(256)) * 40 + b"\n\n"  # binary, newlines included
    answer = StoredAnswer(ROUND1, (1, 3), partial, b"\x00\n" * 32)
    DecryptionRecord(tmp_path).keep_answer(answer)
    record = DecryptionRecord(tmp_path)
    assert record.answer(ROUND1, [3, 1]) == answer  # the quorum as partial_decrypt orders it
    assert record.answer(ROUND1, [1, 2]) is None  # another quorum
    assert record.answer(ROUND2, [1, 3]) is None  # another round


def test_an_answer_file_of_another_task_is_not_served(tmp_path: Path) -> None:
    record = DecryptionRecord(tmp_path)
    record.keep_answer(StoredAnswer(ROUND1, (1, 2), b"p", b"s"))
    [path] = (tmp_path / "answers").iterdir()
    moved = record._answer_path(ROUND2, (1, 2))
    path.rename(moved)
    with pytest.raises(ValueError, match="another task"):
        record.answer(ROUND2, (1, 2))
