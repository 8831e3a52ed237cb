"""RFC 6962 / RFC 9162 Merkle tree hashes, inclusion proofs and consistency proofs.

The tree over leaves ``d[0..n)`` is RFC 9162 section 2.1.1's: the empty tree hashes to
``SHA-256()``, a leaf to ``SHA-256(0x00 || d)``, an interior node to
``SHA-256(0x01 || left || right)``, and a tree of ``n > 1`` leaves splits at ``k``, the
largest power of two smaller than ``n``. :class:`MerkleTree` holds the leaf hashes and
produces roots of any prefix, inclusion proofs (section 2.1.3.1) and consistency proofs
(section 2.1.4.1); :func:`verify_inclusion` and :func:`verify_consistency` are the
verification algorithms of sections 2.1.3.2 and 2.1.4.2, step by step.

Security
--------
A verification raises :class:`~secagg.errors.MerkleProofInvalid`, never returns
``False``. A consistency proof from size ``m`` to ``n`` proves that the tree of size
``n`` extends the tree of size ``m`` *whose root the verifier already holds*: it proves
nothing about a root the verifier took from the prover.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from secagg.errors import MerkleProofInvalid

HASH_BYTES = 32
#: MTH({}): the hash of the empty tree.
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(entry: bytes) -> bytes:
    """``SHA-256(0x00 || entry)``."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """The leaf hashes of a log and the RFC 6962 hashes and proofs over any prefix of it.

    Hashes of complete, aligned subtrees are cached, so a root or a proof costs
    ``O(log^2 n)`` hashes once the tree was hashed once (leaves are never changed).
    """

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._leaves: list[bytes] = []
        self._complete: dict[tuple[int, int], bytes] = {}
        for leaf in leaf_hashes:
            self.append(leaf)

    @property
    def size(self) -> int:
        """Leaves in the tree."""
        return len(self._leaves)

    def append(self, leaf: bytes) -> None:
        """Add a leaf hash (see :func:`leaf_hash`)."""
        if len(leaf) != HASH_BYTES:
            raise ValueError("a leaf hash is 32 bytes")
        self._leaves.append(leaf)

    def _hash(self, start: int, end: int) -> bytes:
        """MTH(d[start:end]) (``start < end``)."""
        n = end - start
        if n == 1:
            return self._leaves[start]
        cacheable = n & (n - 1) == 0
        if cacheable and (start, n) in self._complete:
            return self._complete[(start, n)]
        k = split(n)
        digest = node_hash(self._hash(start, start + k), self._hash(start + k, end))
        if cacheable:
            self._complete[(start, n)] = digest
        return digest

    def _check(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise ValueError(f"tree size {size} outside 0..{self.size}")

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (default: all)."""
        size = self.size if size is None else size
        self._check(size)
        return self._hash(0, size) if size else EMPTY_ROOT

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """PATH(index, d[0:size]) (RFC 9162 section 2.1.3.1)."""
        self._check(size)
        if not 0 <= index < size:
            raise ValueError(f"leaf {index} is not in a tree of size {size}")
        return self._path(index, 0, size)

    def _path(self, m: int, start: int, end: int) -> list[bytes]:
        n = end - start
        if n == 1:
            return []
        k = split(n)
        if m < k:
            return [*self._path(m, start, start + k), self._hash(start + k, end)]
        return [*self._path(m - k, start + k, end), self._hash(start, start + k)]

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """PROOF(old_size, d[0:new_size]) (RFC 9162 section 2.1.4.1); empty if old is 0 or new."""
        self._check(new_size)
        if not 0 <= old_size <= new_size:
            raise ValueError(f"no consistency proof from size {old_size} to {new_size}")
        if old_size in (0, new_size):
            return []
        return self._subproof(old_size, 0, new_size, complete=True)

    def _subproof(self, m: int, start: int, end: int, *, complete: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if complete else [self._hash(start, end)]
        k = split(n)
        if m <= k:
            return [
                *self._subproof(m, start, start + k, complete=complete),
                self._hash(start + k, end),
            ]
        return [
            *self._subproof(m - k, start + k, end, complete=False),
            self._hash(start, start + k),
        ]


def _lsb(value: int) -> bool:
    return bool(value & 1)


def _hashes(proof: Sequence[bytes]) -> list[bytes]:
    if any(len(p) != HASH_BYTES for p in proof):
        raise MerkleProofInvalid("a proof hash is not 32 bytes")
    return list(proof)


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 section 2.1.3.2: ``leaf`` is leaf ``index`` of the tree of ``size`` with ``root``.

    Raises
    ------
    MerkleProofInvalid
        The proof does not verify.
    """
    path = _hashes(proof)
    if not 0 <= index < size:
        raise MerkleProofInvalid(f"leaf {index} is not in a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise MerkleProofInvalid("inclusion proof is too long")
        if _lsb(fn) or fn == sn:
            r = node_hash(p, r)
            while not _lsb(fn) and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0 or r != root:
        raise MerkleProofInvalid(f"leaf {index} is not in the tree of size {size} with this root")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 section 2.1.4.2: the tree (``new_size``, ``new_root``) extends (``old_size``,
    ``old_root``).

    A tree is consistent with itself (empty proof, equal roots) and every tree extends
    the empty one (empty proof).

    Raises
    ------
    MerkleProofInvalid
        The proof does not verify (or the sizes go backwards).
    """
    path = _hashes(proof)
    if not 0 <= old_size <= new_size:
        raise MerkleProofInvalid(f"tree size {new_size} does not extend size {old_size}")
    if old_size == new_size:
        if path or old_root != new_root:
            raise MerkleProofInvalid(f"two different roots for tree size {old_size}")
        return
    if old_size == 0:
        if path:
            raise MerkleProofInvalid("a proof from the empty tree must be empty")
        return
    if not path:
        raise MerkleProofInvalid("empty consistency proof")
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while _lsb(fn):
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise MerkleProofInvalid("consistency proof is too long")
        if _lsb(fn) or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not _lsb(fn) and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0 or fr != old_root or sr != new_root:
        raise MerkleProofInvalid(
            f"the tree of size {new_size} does not extend the tree of size {old_size}"
        )
