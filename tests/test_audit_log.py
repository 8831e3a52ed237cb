"""The audit log's writer and reader (``secagg.protocol.audit_log``), without any process.

Checks the on-disk format (one canonical JSON line per entry, no floats), the RFC 6962
Merkle tree hash (recomputed by hand with hashlib), resuming an existing log, the
reader's refusals (each naming the entry), durable appends that refuse rather than
half-append, and the checkpoint digest's bindings, and that a typed entry
(``AuditLog.record``) reads back as itself.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from unittest import mock

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from secagg.errors import AuditChainBroken, AuditWriteFailed
from secagg.protocol.audit_entries import (
    AggregateEntry,
    AggregateInput,
    RoundOpenEntry,
    UploadEntry,
    parse_entry,
)
from secagg.protocol.audit_log import (
    AuditLog,
    canonical,
    leaf_hash,
    merkle_tree,
    read_entries,
)
from secagg.protocol.merkle import EMPTY_ROOT, node_hash
from secagg.protocol.roster import Party
from secagg.protocol.statements import CheckpointStatement, Signed, UploadStatement

ENTRIES: list[tuple[str, dict[str, object]]] = [
    ("roster", {"deployment_id": "d1", "policy": {"threshold": 2, "rounds": 3}}),
    ("upload", {"round": 1, "client": "c1", "weight": 10, "epsilon": "0x1.0p-1", "nonce": "00"}),
    ("aggregate", {"round": 1, "inputs": [{"client": "c1", "weight": 10}], "note": "é ok"}),
    ("checkpoint", {"size": 3, "head": "ab" * 32}),
]


def _by_hand(lines: list[bytes]) -> bytes:
    """RFC 6962's MTH over ``lines`` computed with hashlib only (section 2.1)."""
    if not lines:
        return hashlib.sha256(b"").digest()
    if len(lines) == 1:
        return hashlib.sha256(b"\x00" + lines[0]).digest()
    k = 1
    while k * 2 < len(lines):
        k *= 2
    return hashlib.sha256(b"\x01" + _by_hand(lines[:k]) + _by_hand(lines[k:])).digest()


def _filled(path: Path, n: int = len(ENTRIES)) -> AuditLog:
    log = AuditLog(path)
    for type_, data in ENTRIES[:n]:
        log.append(type_, data)
    return log


def _write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def _entry(seq: int, type_: str = "x", **data: object) -> bytes:
    return canonical({"seq": seq, "type": type_, "data": data})


# ----------------------------------------------------------------- format and chain


def test_append_and_read_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "audit.log"  # the parent directory is created
    log = AuditLog(path)
    assert (log.size, log.head) == (0, EMPTY_ROOT)
    returned = [log.append(t, d) for t, d in ENTRIES]
    assert [seq for seq, _ in returned] == [1, 2, 3, 4]
    assert returned[-1][1] == log.head and log.size == 4

    text = path.read_bytes()
    lines = text.split(b"\n")
    assert lines[-1] == b"" and len(lines) == 5, "one newline-terminated line per entry"
    entries = list(read_entries(path))
    assert [(e.seq, e.type, e.data) for e in entries] == [
        (i, t, d) for i, (t, d) in enumerate(ENTRIES, start=1)
    ]
    for e, line in zip(entries, lines, strict=False):
        assert e.raw == line
        # canonical: sorted keys, no whitespace, ASCII only (non-ASCII escaped)
        assert (
            line
            == json.dumps(
                {"seq": e.seq, "type": e.type, "data": e.data},
                sort_keys=True,
                separators=(",", ":"),
                ensure_ascii=True,
            ).encode()
        )
    assert b'"note":"\\u00e9 ok"' in lines[2]
    assert lines[0].startswith(b'{"data":{"deployment_id":"d1","policy":{"rounds":3,')


def test_head_is_the_merkle_root_by_hand(tmp_path: Path) -> None:
    log = _filled(tmp_path / "audit.log")
    for type_, data in ENTRIES:  # 8 entries: a full tree of depth 3
        log.append(type_, data)
    lines = (tmp_path / "audit.log").read_bytes().splitlines()
    assert log.head == _by_hand(lines)
    # every intermediate head, as the tree over the read entries recomputes it
    tree = merkle_tree(list(read_entries(tmp_path / "audit.log")))
    heads = [tree.root(i) for i in range(len(lines) + 1)]
    assert heads == [_by_hand(lines[:i]) for i in range(len(lines) + 1)]
    assert heads[0] == hashlib.sha256(b"").digest()
    # the primitives themselves
    line = lines[0]
    assert leaf_hash(line) == hashlib.sha256(b"\x00" + line).digest()
    assert leaf_hash(line) != hashlib.sha256(line).digest(), "the leaf prefix is not optional"
    h, leaf = os.urandom(32), os.urandom(32)
    assert node_hash(h, leaf) == hashlib.sha256(b"\x01" + h + leaf).digest()
    assert node_hash(h, leaf) != node_hash(leaf, h)


def test_floats_are_neither_written_nor_read(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    with pytest.raises(TypeError, match="no floats"):
        log.append("upload", {"epsilon": 0.5})
    with pytest.raises(TypeError, match="no floats"):
        log.append("roster", {"policy": {"share": [1, 0.5]}})
    assert log.size == 0 and not (tmp_path / "audit.log").exists()
    _write_lines(tmp_path / "audit.log", [b'{"data":{"epsilon":0.5},"seq":1,"type":"upload"}'])
    with pytest.raises(AuditChainBroken, match=r"^entry 1: not a canonical audit entry$"):
        list(read_entries(tmp_path / "audit.log"))


def test_append_returns_the_head_after_each_entry(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    seen = []
    for type_, data in ENTRIES:
        seq, head = log.append(type_, data)
        seen.append(head)
        lines = (tmp_path / "audit.log").read_bytes().splitlines()
        assert seq == len(lines) and head == _by_hand(lines)
    assert len(set(seen)) == len(seen)


def test_reopening_resumes_size_and_head(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    first = _filled(path, 3)
    again = AuditLog(path)
    assert (again.size, again.head) == (first.size, first.head) == (3, first.head)
    assert again.head != EMPTY_ROOT
    # appending after the restart continues the same chain
    seq, head = again.append(*ENTRIES[3])
    assert seq == 4
    lines = path.read_bytes().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3, 4]
    assert head == _by_hand(lines) == merkle_tree(list(read_entries(path))).root()
    # and an uninterrupted writer would have produced the same bytes
    _filled(tmp_path / "fresh.log")
    assert (tmp_path / "fresh.log").read_bytes() == path.read_bytes()


def test_reopening_a_broken_log_refuses(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    _filled(path)
    lines = path.read_bytes().splitlines()
    _write_lines(path, [lines[0], lines[2], lines[3]])
    with pytest.raises(AuditChainBroken, match=r"entry 2 \(aggregate\)"):
        AuditLog(path)


# ----------------------------------------------------------------- the reader refuses


GOOD = [_entry(1, "a", v=1), _entry(2, "b", v=2), _entry(3, "c", v=3)]


@pytest.mark.parametrize(
    ("line2", "message"),
    [
        (b'{"data":{"v":2}, "seq":2,"type":"b"}', r"^entry 2: not a canonical audit entry$"),
        (b'{"seq":2,"type":"b","data":{"v":2}}', r"^entry 2: not a canonical audit entry$"),
        (_entry(2, "b", v=2) + b" ", r"^entry 2: not a canonical audit entry$"),
        (_entry(2, "b", v=2) + b"\r", r"^entry 2: not a canonical audit entry$"),
        (b'{"data":{"v":"\\u0041"},"seq":2,"type":"b"}', r"^entry 2: not a canonical"),
        (b'{"data":{"v":2.0},"seq":2,"type":"b"}' + b"}", r"^entry 2: not a canonical"),
        (_entry(2, "b", v=2)[:-5], r"^entry 2: not a canonical audit entry$"),
        (b"\xff" + _entry(2, "b", v=2)[1:], r"^entry 2: not a canonical audit entry$"),
        (b"", r"^entry 2: not a canonical audit entry$"),
        (b"[1,2]", r"^entry 2: not a canonical audit entry$"),
        (
            canonical({"seq": 2, "type": "b", "data": {"v": 2}, "extra": 1}),
            r"^entry 2: not a canonical audit entry$",
        ),
        (canonical({"seq": 2, "type": "b"}), r"^entry 2: not a canonical audit entry$"),
        (canonical({"seq": 2, "type": "b", "data": [2]}), r"^entry 2: not a canonical"),
        (canonical({"seq": 2, "type": 7, "data": {}}), r"^entry 2: not a canonical"),
        (_entry(3, "b", v=2), r"^entry 2 \(b\): sequence number 3 out of order$"),
        (_entry(1, "b", v=2), r"^entry 2 \(b\): sequence number 1 out of order$"),
        (_entry(22, "b", v=2), r"^entry 2 \(b\): sequence number 22 out of order$"),
    ],
    ids=[
        "space",
        "key-order",
        "trailing-space",
        "carriage-return",
        "escaped-ascii",
        "trailing-brace",
        "truncated",
        "not-utf8",
        "empty-line",
        "not-an-object",
        "extra-key",
        "missing-key",
        "data-not-object",
        "type-not-string",
        "seq-ahead",
        "seq-behind",
        "seq-far",
    ],
)
def test_read_entries_rejects_and_names_the_entry(
    tmp_path: Path, line2: bytes, message: str
) -> None:
    path = tmp_path / "audit.log"
    _write_lines(path, GOOD)
    assert [e.seq for e in read_entries(path)] == [1, 2, 3]  # the baseline reads
    _write_lines(path, [GOOD[0], line2, GOOD[2]])
    reader = read_entries(path)
    assert next(reader).seq == 1  # entries before the bad one are yielded
    with pytest.raises(AuditChainBroken, match=message):
        next(reader)


def test_read_entries_rejects_a_bad_later_entry(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    _write_lines(path, [*GOOD, _entry(5, "d")])
    with pytest.raises(AuditChainBroken, match=r"^entry 4 \(d\): sequence number 5 out of order"):
        list(read_entries(path))
    _write_lines(path, [*GOOD, b'{"data":{},"seq":4,"type":"d",}'])
    with pytest.raises(AuditChainBroken, match=r"^entry 4: not a canonical audit entry$"):
        list(read_entries(path))


# ----------------------------------------------------------------- durable appends


def test_append_raises_when_the_log_cannot_be_written(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = _filled(path, 2)
    before = (log.size, log.head)
    content = path.read_bytes()
    path.rename(tmp_path / "moved.log")
    path.mkdir()  # the log's path is now a directory: open(..., "ab") fails
    with pytest.raises(AuditWriteFailed, match="cannot write the audit log"):
        log.append(*ENTRIES[2])
    assert (log.size, log.head) == before, "a failed append must not advance the chain"
    with pytest.raises(AuditWriteFailed):
        log.append(*ENTRIES[2])
    assert (log.size, log.head) == before
    # once the file is back, the chain continues where it stopped
    path.rmdir()
    (tmp_path / "moved.log").rename(path)
    assert path.read_bytes() == content
    seq, head = log.append(*ENTRIES[2])
    assert seq == 3
    lines = path.read_bytes().splitlines()
    assert head == _by_hand(lines)
    assert [e.seq for e in read_entries(path)] == [1, 2, 3]


def test_append_raises_when_the_write_fails(tmp_path: Path) -> None:
    log = _filled(tmp_path / "audit.log", 1)
    before = (log.size, log.head)
    with (
        mock.patch(
            "secagg.protocol.audit_log.open",
            create=True,
            side_effect=PermissionError(13, "Permission denied"),
        ),
        pytest.raises(AuditWriteFailed, match="Permission denied"),
    ):
        log.append(*ENTRIES[1])
    assert (log.size, log.head) == before


def test_append_raises_when_fsync_fails(tmp_path: Path) -> None:
    log = _filled(tmp_path / "audit.log", 1)
    before = (log.size, log.head)
    with (
        mock.patch(
            "secagg.protocol.audit_log.os.fsync", side_effect=OSError(5, "Input/output error")
        ),
        pytest.raises(AuditWriteFailed, match="Input/output error"),
    ):
        log.append(*ENTRIES[1])
    assert (log.size, log.head) == before


def test_a_failed_fsync_leaves_a_readable_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = _filled(path, 1)
    with (
        mock.patch(
            "secagg.protocol.audit_log.os.fsync", side_effect=OSError(5, "Input/output error")
        ),
        pytest.raises(AuditWriteFailed),
    ):
        log.append("refused", {"op": "never happened"})
    log.append(*ENTRIES[1])
    entries = list(read_entries(path))  # raises AuditChainBroken today
    assert [e.type for e in entries] == ["roster", "upload"]
    assert merkle_tree(entries).root() == log.head
    assert AuditLog(path).size == 2


# ----------------------------------------------------------------- checkpoints


def test_checkpoint_digest_binds_deployment_size_and_head() -> None:
    head = hashlib.sha256(b"head").digest()
    base = CheckpointStatement(deployment_id="dep-a", size=30, head=head).digest()
    assert len(base) == 32
    assert base == CheckpointStatement(deployment_id="dep-a", size=30, head=head).digest()
    variants = {
        "size": CheckpointStatement(deployment_id="dep-a", size=31, head=head).digest(),
        "size0": CheckpointStatement(deployment_id="dep-a", size=0, head=head).digest(),
        "head": CheckpointStatement(deployment_id="dep-a", size=30, head=EMPTY_ROOT).digest(),
        "head-bit": CheckpointStatement(
            deployment_id="dep-a", size=30, head=bytes([head[0] ^ 1]) + head[1:]
        ).digest(),
        "deployment": CheckpointStatement(deployment_id="dep-b", size=30, head=head).digest(),
        "deployment-prefix": CheckpointStatement(deployment_id="dep-", size=30, head=head).digest(),
    }
    assert base not in variants.values()
    assert len(set(variants.values())) == len(variants)
    # not just a hash of the head: it is domain-separated from the tree's own hashes
    assert base not in (head, hashlib.sha256(head).digest(), node_hash(EMPTY_ROOT, head))
    assert CheckpointStatement.DOMAIN == b"secagg/audit-checkpoint/v2"  # v1 signed a chain


# ----------------------------------------------------------------- typed entries


def test_record_writes_a_typed_entry_that_parses_back(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    key = Ed25519PrivateKey.generate()
    upload = UploadStatement("dep-a", 1, "c1", bytes(16), bytes(32), b"\x01" * 32, 10, 0.5)
    recorded = [
        RoundOpenEntry(1, bytes(32)),
        UploadEntry.of(Signed.create(upload, key)),
        AggregateEntry(
            1, b"\x02" * 32, b"\x03" * 32, 10, (AggregateInput("c1", b"\x01" * 32, 10),)
        ),
    ]
    for entry in recorded:
        log.record(entry)
    entries = list(read_entries(path))
    assert [e.type for e in entries] == ["round_open", "upload", "aggregate"]
    assert [parse_entry(e.type, e.data) for e in entries] == recorded
    # the same bytes as an untyped append of the same data
    again = AuditLog(tmp_path / "again.log")
    for entry in recorded:
        again.append(entry.TYPE, entry.to_data())
    assert (tmp_path / "again.log").read_bytes() == path.read_bytes()
    # and the statement rebuilt from the log is the one that was signed
    parsed = parse_entry("upload", entries[1].data)
    assert isinstance(parsed, UploadEntry)
    assert parsed.signed("dep-a").statement == upload
    assert (
        Signed(upload, parsed.signature).verify_by(
            Party("c1", "client", key.public_key().public_bytes_raw())
        )
        == upload
    )
