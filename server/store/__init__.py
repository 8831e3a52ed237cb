"""Durable server state: the :class:`Store` interface, its implementations, the blob store.

:class:`SqliteStore` is what ``secagg serve`` runs; :class:`MemoryStore` is the same
contract in memory (tests, experiments). Both pass one conformance suite
(``tests/server/test_store_conformance.py``).
"""

from server.store.base import Store
from server.store.blobs import BlobStore
from server.store.memory import MemoryStore
from server.store.sqlite import SqliteStore

__all__ = ["BlobStore", "MemoryStore", "SqliteStore", "Store"]
