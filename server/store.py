"""Durable server state: SQLite (WAL, synchronous=FULL) plus a content-addressed blob store.

Blobs (ciphertexts, aggregates, partials, models) are files named by their SHA-256,
written to a temporary name, fsynced, renamed and the directory fsynced, so a blob is
on disk before any database row refers to it. A database row is the commitment: an
upload is accepted exactly when its row commits.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS ceremony(
    kind INTEGER NOT NULL, sender INTEGER NOT NULL, recipient INTEGER NOT NULL,
    body BLOB NOT NULL, signature BLOB NOT NULL, PRIMARY KEY(kind, sender, recipient));
CREATE TABLE IF NOT EXISTS rounds(
    round INTEGER PRIMARY KEY, state INTEGER NOT NULL, global_model_hash BLOB NOT NULL,
    opened_at REAL NOT NULL, deadline REAL NOT NULL, aggregate_hash BLOB,
    aggregate_digest BLOB, release BLOB, status TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS uploads(
    round INTEGER NOT NULL, client_id TEXT NOT NULL, nonce BLOB NOT NULL,
    global_model_hash BLOB NOT NULL, weight INTEGER NOT NULL, ciphertext_hash BLOB NOT NULL,
    signature BLOB NOT NULL, accepted_at REAL NOT NULL, epsilon REAL NOT NULL DEFAULT 0,
    PRIMARY KEY(round, client_id));
CREATE TABLE IF NOT EXISTS withdrawals(
    client_id TEXT PRIMARY KEY, round INTEGER NOT NULL, reason TEXT NOT NULL,
    signature BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS nonces(
    client_id TEXT NOT NULL, nonce BLOB NOT NULL, PRIMARY KEY(client_id, nonce));
CREATE TABLE IF NOT EXISTS tasks(
    task_id INTEGER PRIMARY KEY AUTOINCREMENT, round INTEGER NOT NULL, task BLOB NOT NULL,
    admin INTEGER NOT NULL, state TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS partials(
    task_id INTEGER NOT NULL, keyholder INTEGER NOT NULL, partial_hash BLOB NOT NULL,
    partial_digest BLOB NOT NULL, signature BLOB NOT NULL, PRIMARY KEY(task_id, keyholder));
CREATE TABLE IF NOT EXISTS refusals(
    task_id INTEGER NOT NULL, keyholder INTEGER NOT NULL, reason TEXT NOT NULL,
    signature BLOB NOT NULL, PRIMARY KEY(task_id, keyholder));
"""


class BlobStore:
    """Content-addressed files under ``root`` (``<sha256 hex>``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, digest: bytes) -> Path:
        """Where the blob with this SHA-256 lives."""
        return self.root / digest.hex()

    def put(self, data: bytes) -> bytes:
        """Store durably; returns the SHA-256."""
        digest = hashlib.sha256(data).digest()
        final = self.path(digest)
        if final.exists():
            return digest
        tmp = final.with_suffix(f".tmp{threading.get_ident()}")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        dir_fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return digest

    def get(self, digest: bytes) -> bytes:
        """Read a blob and check its hash; raises FileNotFoundError or ValueError."""
        data = self.path(digest).read_bytes()
        if hashlib.sha256(data).digest() != digest:
            raise ValueError(f"blob {digest.hex()} is corrupted on disk")
        return data

    def has(self, digest: bytes) -> bool:
        """Whether the blob is stored."""
        return self.path(digest).exists()


class Database:
    """The SQLite database; one connection guarded by a lock (the service is small)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.executescript(SCHEMA)
        self.lock = threading.RLock()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error)."""
        with self.lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def query(self, sql: str, args: tuple[object, ...] = ()) -> list[Any]:
        """Run a read query."""
        with self.lock:
            return list(self._conn.execute(sql, args).fetchall())

    def close(self) -> None:
        """Close the connection."""
        with self.lock:
            self._conn.close()
