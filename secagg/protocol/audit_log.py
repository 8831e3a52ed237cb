"""The tamper-evident audit log: an append-only hash chain with signed checkpoints.

Each entry is one line of canonical JSON (sorted keys, no spaces) holding its sequence
number, type and data (bytes as hex). Hashing follows RFC 6962's domain separation:
``leaf = SHA-256(0x00 || entry)``, and the chain head after entry ``n`` is
``head_n = SHA-256(0x01 || head_{n-1} || leaf_n)`` with ``head_0`` = 32 zero bytes.
A checkpoint entry commits to the head before it (its ``size`` and ``head``), signed by
the server; key holders co-sign the head they were shown when they answer a decryption
request, so the server cannot later rewrite history that a key holder witnessed.

Entries hold hashes, signatures and public metadata only — never ciphertext payloads,
key material or model values.

:class:`AuditLog` appends durably (write, flush, fsync) and raises
:class:`~secagg.errors.AuditWriteFailed` if it cannot, so the caller refuses the
operation. :func:`read_entries` and :func:`chain_heads` are the verifier's primitives.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from secagg.errors import AuditChainBroken, AuditWriteFailed
from secagg.protocol.audit_entries import AuditEntry

ZERO_HEAD = bytes(32)


def canonical(entry: dict[str, Any]) -> bytes:
    """The canonical encoding of an entry (what is hashed and written)."""
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def leaf_hash(entry_bytes: bytes) -> bytes:
    """RFC 6962 leaf hash."""
    return hashlib.sha256(b"\x00" + entry_bytes).digest()


def next_head(head: bytes, leaf: bytes) -> bytes:
    """Chain step (RFC 6962's interior-node prefix 0x01)."""
    return hashlib.sha256(b"\x01" + head + leaf).digest()


@dataclass(frozen=True)
class Entry:
    """One parsed log entry."""

    seq: int
    type: str
    data: dict[str, Any]
    raw: bytes


class AuditLog:
    """Append-only writer; thread-safe; resumes the chain of an existing file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.size = 0
        self.head = ZERO_HEAD
        if self.path.exists():
            for entry in read_entries(self.path):
                self.size = entry.seq
                self.head = next_head(self.head, leaf_hash(entry.raw))

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
            self.size += 1
            self.head = next_head(self.head, leaf_hash(entry))
            return self.size, self.head

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
                    and canonical(obj) == raw
                )
            except (ValueError, UnicodeDecodeError):
                ok = False
            if not ok:
                raise AuditChainBroken(f"entry {number}: not a canonical audit entry")
            if obj["seq"] != number:
                raise AuditChainBroken(
                    f"entry {number} ({obj['type']}): sequence number {obj['seq']} out of order"
                )
            yield Entry(number, obj["type"], obj["data"], raw)


def chain_heads(entries: list[Entry]) -> list[bytes]:
    """``heads[i]`` = head after the first ``i`` entries (``heads[0]`` = zero)."""
    heads = [ZERO_HEAD]
    for e in entries:
        heads.append(next_head(heads[-1], leaf_hash(e.raw)))
    return heads
