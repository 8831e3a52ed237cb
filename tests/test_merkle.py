"""RFC 6962 Merkle tree hashes and proofs against an independent implementation's vectors.

The vectors are copied (not the code) from transparency-dev/merkle,
``proof/verify_test.go`` at commit 02194e9afb6c1d95b5381350007963aa70fff472 (the
``leaves``, ``roots``, ``inclusionProofs`` and ``consistencyProofs`` tables, which go back
to Certificate Transparency's C++ ``merkle_tree_test``), plus the empty-tree hash
``e3b0c442...`` (SHA-256 of the empty string) and that file's corruption probes.
Generation is checked against the vectors; verification against the vectors and against
every corruption the Go tests try; hypothesis round-trips cover other sizes.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.errors import MerkleProofInvalid
from secagg.protocol.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)

LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243")] + [
    bytes.fromhex("5051525354555657"),
    bytes.fromhex("606162636465666768696a6b6c6d6e6f"),
]
ROOTS = [
    bytes.fromhex(h)
    for h in (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]
EMPTY_TREE_HASH = bytes.fromhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def _h(*hexes: str) -> list[bytes]:
    return [bytes.fromhex(h) for h in hexes]


# leaf 1 in the tree of 8, and the tree of 1 in the tree of 8, have the same proof
PROOF_1_8 = _h(
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
)
# (leaf, size, proof): leaf numbers are 1-based as in the Go table
INCLUSION = [
    (1, 1, []),
    (
        1,
        8,
        PROOF_1_8,
    ),
    (
        6,
        8,
        _h(
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (3, 3, _h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")),
    (
        2,
        5,
        _h(
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
]
# (size1, size2, proof)
CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        PROOF_1_8,
    ),
    (
        6,
        8,
        _h(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (
        2,
        5,
        _h(
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
    (
        6,
        7,
        _h(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
]


def _tree() -> MerkleTree:
    return MerkleTree(leaf_hash(d) for d in LEAVES)


def _wrong_sizes(first: int, second: int) -> list[tuple[int, int]]:
    """The Go probes' wrong (index or old size, tree size) pairs."""
    return [
        (first - 1, second),
        (first + 1, second),
        (first ^ 2, second),
        (first, second * 2),
        (first, second // 2),
    ]


def _flip(proof: list[bytes], i: int, bit: int) -> list[bytes]:
    changed = list(proof)
    changed[i] = bytes([changed[i][0] ^ bit]) + changed[i][1:]
    return changed


def test_empty_tree_hash() -> None:
    assert EMPTY_ROOT == EMPTY_TREE_HASH == MerkleTree().root()


def test_roots_of_every_prefix() -> None:
    tree = _tree()
    assert [tree.root(n) for n in range(1, 9)] == ROOTS


@pytest.mark.parametrize(("leaf", "size", "proof"), INCLUSION)
def test_inclusion_vectors(leaf: int, size: int, proof: list[bytes]) -> None:
    tree = _tree()
    assert tree.inclusion_proof(leaf - 1, size) == proof
    verify_inclusion(leaf - 1, size, leaf_hash(LEAVES[leaf - 1]), proof, ROOTS[size - 1])


@pytest.mark.parametrize(("leaf", "size", "proof"), INCLUSION[1:])
def test_corrupted_inclusion_proofs_fail(leaf: int, size: int, proof: list[bytes]) -> None:
    """The Go file's ``corruptInclusionProof`` probes."""
    index, root, lh = leaf - 1, ROOTS[size - 1], leaf_hash(LEAVES[leaf - 1])
    probes = [
        *((i, s, root, lh, proof) for i, s in _wrong_sizes(index, size)),
        (index, size, root, b"WrongLeaf", proof),
        (index, size, EMPTY_TREE_HASH, lh, proof),
        (index, size, SOME_HASH, lh, proof),
        (index, size, root, lh, [*proof, root]),
        (index, size, root, lh, [root, *proof]),
        (index, size, root, lh, proof[:-1]),
        (index, size, root, lh, [proof[0], SOME_HASH, *proof[1:]]),
        *((index, size, root, lh, _flip(proof, i, 8)) for i in range(len(proof))),
    ]
    for i, s, r, lh_, p in probes:
        with pytest.raises(MerkleProofInvalid):
            verify_inclusion(i, s, lh_, p, r)


@pytest.mark.parametrize(("size1", "size2", "proof"), CONSISTENCY)
def test_consistency_vectors(size1: int, size2: int, proof: list[bytes]) -> None:
    tree = _tree()
    assert tree.consistency_proof(size1, size2) == proof
    verify_consistency(size1, size2, ROOTS[size1 - 1], ROOTS[size2 - 1], proof)


@pytest.mark.parametrize(("size1", "size2", "proof"), CONSISTENCY[1:])
def test_corrupted_consistency_proofs_fail(size1: int, size2: int, proof: list[bytes]) -> None:
    """The Go file's ``corruptConsistencyProof`` probes."""
    r1, r2 = ROOTS[size1 - 1], ROOTS[size2 - 1]
    probes = [
        *((a, b, r1, r2, proof) for a, b in _wrong_sizes(size1, size2)),
        (size1, size2, b"WrongRoot", r2, proof),
        (size1, size2, r1, b"WrongRoot", proof),
        (size1, size2, r2, r1, proof),
        (size1, size2, r1, r2, []),
        (size1, size2, r1, r2, [*proof, r1]),
        (size1, size2, r1, r2, [*proof, r2]),
        (size1, size2, r1, r2, [r1, *proof]),
        (size1, size2, r1, r2, [r2, *proof]),
        (size1, size2, r1, r2, [proof[0], *proof]),
        (size1, size2, r1, r2, proof[:-1]),
        *((size1, size2, r1, r2, _flip(proof, i, 16)) for i in range(len(proof))),
    ]
    for probe in probes:
        with pytest.raises(MerkleProofInvalid):
            verify_consistency(*probe)


def test_consistency_edge_cases() -> None:
    """The Go file's ``TestVerifyConsistency`` table of trivial sizes."""
    a, b = b"don't care 1", b"don't care 2"
    verify_consistency(0, 0, a, a, [])
    verify_consistency(0, 1, a, b, [])
    verify_consistency(1, 1, b, b, [])
    failing = [
        (0, 0, a, b, []),
        (1, 1, a, b, []),
        (1, 0, a, b, []),
        (2, 1, a, b, []),
        (1, 2, a, b, []),
        (0, 0, EMPTY_TREE_HASH, b, []),
        (1, 1, EMPTY_TREE_HASH, b, []),
        (0, 0, EMPTY_TREE_HASH, EMPTY_TREE_HASH, [EMPTY_TREE_HASH]),
        (0, 1, EMPTY_TREE_HASH, EMPTY_TREE_HASH, [EMPTY_TREE_HASH]),
        (1, 1, EMPTY_TREE_HASH, EMPTY_TREE_HASH, [EMPTY_TREE_HASH]),
    ]
    for probe in failing:
        with pytest.raises(MerkleProofInvalid):
            verify_consistency(*probe)


@given(st.integers(1, 70), st.data())
def test_generated_proofs_verify(n: int, data: st.DataObject) -> None:
    tree = MerkleTree(leaf_hash(i.to_bytes(2, "big")) for i in range(n))
    new = data.draw(st.integers(1, n))
    old = data.draw(st.integers(1, new))
    index = data.draw(st.integers(0, new - 1))
    root_new = tree.root(new)
    verify_consistency(old, new, tree.root(old), root_new, tree.consistency_proof(old, new))
    verify_inclusion(index, new, tree._leaves[index], tree.inclusion_proof(index, new), root_new)
    if old < new:  # a fork at any leaf below ``old`` is caught
        forked = MerkleTree(tree._leaves[:new])
        forked._leaves[index if index < old else 0] = leaf_hash(b"forged")
        with pytest.raises(MerkleProofInvalid):
            verify_consistency(
                old, new, tree.root(old), forked.root(new), forked.consistency_proof(old, new)
            )
