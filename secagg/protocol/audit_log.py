"""The tamper-evident audit log: an RFC 6962 Merkle tree over entries, with signed checkpoints.

Each entry is one line of canonical JSON (sorted keys, no spaces, ASCII) holding its
sequence number, type and data (bytes as hex); entries hold no floats (a float is
written as its exact ``float.hex()`` text by :mod:`secagg.protocol.audit_entries`), so
the bytes are the same in any language that sorts keys and writes integers and strings.
The log's head after ``n`` entries is the RFC 6962 Merkle tree hash of those ``n``
entries (:mod:`secagg.protocol.merkle`: ``leaf = SHA-256(0x00 || entry)``, nodes
``SHA-256(0x01 || left || right)``). A checkpoint entry commits to the head before it
(its ``size`` and ``head``), signed by the server; key holders co-sign the head a
decryption task shows only if it extends the last head they co-signed (a consistency
proof, :mod:`clients.keyholder.witness`), and keep it: ``secagg audit verify`` holds
the log to every witness's head.

Entries hold hashes, signatures and public metadata only — never ciphertext payloads,
key material or model values.

:class:`AuditLog` appends durably (write, flush, fsync) and raises
:class:`~secagg.errors.AuditWriteFailed` if it cannot, so the caller refuses the
operation. :func:`read_entries` and :func:`merkle_tree` are the verifier's primitives.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from secagg.errors import AuditChainBroken, AuditWriteFailed
from secagg.protocol.audit_entries import AuditEntry
from secagg.protocol.merkle import MerkleTree, leaf_hash

__all__ = ["AuditLog", "Entry", "canonical", "leaf_hash", "merkle_tree", "read_entries"]


def _no_floats(value: Any) -> bool:
    if isinstance(value, float):
        return False
    if isinstance(value, dict):
        return all(_no_floats(v) for v in value.values())
    if isinstance(value, list):
        return all(_no_floats(v) for v in value)
    return True


def canonical(entry: dict[str, Any]) -> bytes:
    """The canonical encoding of an entry (what is hashed and written).

    Raises
    ------
    TypeError
        If the entry holds a float (its text would depend on the JSON writer).
    """
    if not _no_floats(entry):
        raise TypeError("audit entries hold no floats (write float.hex() text)")
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


@dataclass(frozen=True)
class Entry:
    """One parsed log entry."""

    seq: int
    type: str
    data: dict[str, Any]
    raw: bytes


class AuditLog:
    """Append-only writer; thread-safe; resumes the tree of an existing file.

    ``tree`` holds every entry's leaf hash, so the server can prove any head it showed
    consistent with a later one (:meth:`~secagg.protocol.merkle.MerkleTree.consistency_proof`).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.tree = MerkleTree()
        if self.path.exists():
            for entry in read_entries(self.path):
                self.tree.append(leaf_hash(entry.raw))

    @property
    def size(self) -> int:
        """Entries in the log."""
        return self.tree.size

    @property
    def head(self) -> bytes:
        """The Merkle tree hash of every entry."""
        return self.tree.root()

    def append(self, type_: str, data: dict[str, Any]) -> tuple[int, bytes]:
        """Append durably; returns (sequence number, new head).

        Raises
        ------
        AuditWriteFailed
            If the entry cannot be written and synced; nothing is appended then.
        """
        with self._lock:
            entry = canonical({"seq": self.size + 1, "type": type_, "data": data})
            try:
                with open(self.path, "ab") as fh:
                    start = fh.tell()
                    try:
                        fh.write(entry + b"\n")
                        fh.flush()
                        os.fsync(fh.fileno())
                    except OSError:
                        fh.truncate(start)  # never leave a refused entry behind
                        raise
            except OSError as exc:
                raise AuditWriteFailed(f"cannot write the audit log: {exc}") from exc
            self.tree.append(leaf_hash(entry))
            return self.size, self.tree.root()

    def record(self, entry: AuditEntry) -> tuple[int, bytes]:
        """Append a typed entry (see :mod:`secagg.protocol.audit_entries`)."""
        return self.append(entry.TYPE, entry.to_data())


def read_entries(path: Path) -> Iterator[Entry]:
    """Parse entries in order; raises :class:`AuditChainBroken` naming a malformed entry."""
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            raw = line.rstrip(b"\n")
            try:
                obj = json.loads(raw)
                ok = (
                    isinstance(obj, dict)
                    and set(obj) == {"seq", "type", "data"}
                    and isinstance(obj["data"], dict)
                    and isinstance(obj["type"], str)
                    and _no_floats(obj)
                    and canonical(obj) == raw
                )
            except (ValueError, UnicodeDecodeError, RecursionError):
                ok = False
            if not ok:
                raise AuditChainBroken(f"entry {number}: not a canonical audit entry")
            if obj["seq"] != number:
                raise AuditChainBroken(
                    f"entry {number} ({obj['type']}): sequence number {obj['seq']} out of order"
                )
            yield Entry(number, obj["type"], obj["data"], raw)


def merkle_tree(entries: list[Entry]) -> MerkleTree:
    """The Merkle tree over ``entries`` (its ``root(i)`` is the head after entry ``i``)."""
    return MerkleTree(leaf_hash(e.raw) for e in entries)
