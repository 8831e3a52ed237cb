"""Test decryption of a fresh joint key (secagg.keycheck), all parties in this process.

Honest key holders pass; a perturbed share, a lying partial decryptor and a contribution
no shares match are each found and blamed on the key holder that deviated.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from secagg._internal.modarith import U64
from secagg.dkg import DkgParticipant, combine_public_key, common_seed
from secagg.errors import KeyCheckFailed
from secagg.keycheck import (
    KeyProbe,
    check_probes,
    make_probe,
    probe_partials,
    probe_quorums,
    quorums_per_keyholder,
)
from secagg.params import Parameters

N, T = 3, 2
Received = dict[int, dict[int, U64]]


@dataclass
class Run:
    """Every key holder's probe, secret values and partials."""

    probes: dict[int, KeyProbe]
    values: dict[int, U64]
    partials: dict[int, U64]

    def check(self, index: int) -> None:
        check_probes(index, self.probes, self.values[index], self.partials, threshold=T)


def _run(
    params: Parameters,
    *,
    tamper_shares: Callable[[Received], None] = lambda _: None,
    tamper_contributions: Callable[[dict[int, U64]], None] = lambda _: None,
) -> Run:
    parties = [DkgParticipant(params, index=i, keyholders=N, threshold=T) for i in range(1, N + 1)]
    seed = common_seed(
        {p.index: p.commitment() for p in parties}, {p.index: p.reveal() for p in parties}
    )
    contributions = {p.index: p.public_key_contribution(seed) for p in parties}
    tamper_contributions(contributions)
    pk = combine_public_key(params, seed, contributions, keyholders=N, threshold=T)
    outgoing = {p.index: p.outgoing_shares() for p in parties}
    received = {j: {i: outgoing[i][j].copy() for i in outgoing} for j in outgoing}
    tamper_shares(received)
    joint = {p.index: p.finalize(received[p.index], pk) for p in parties}
    made = {j: make_probe(pk, contributions) for j in joint}
    probes = {j: probe for j, (probe, _) in made.items()}
    partials = {j: probe_partials(probes, joint[j], received[j]) for j in joint}
    return Run(probes, {j: values for j, (_, values) in made.items()}, partials)


@pytest.fixture(scope="module")
def params() -> Parameters:
    return Parameters.default()


def test_honest_key_holders_pass(params: Parameters) -> None:
    run = _run(params)
    for index in range(1, N + 1):
        run.check(index)


def test_perturbed_share_is_blamed_on_its_sender(params: Parameters) -> None:
    def bump(received: Received) -> None:  # key holder 3's share for key holder 1
        received[1][3][0, 0] = (received[1][3][0, 0] + np.uint64(1)) % np.uint64(
            params.data_primes[0]
        )

    run = _run(params, tamper_shares=bump)
    with pytest.raises(KeyCheckFailed) as one:
        run.check(1)
    assert one.value.culprits == (3,)  # it knows its share matched 3's commitment
    with pytest.raises(KeyCheckFailed) as two:
        run.check(2)
    assert two.value.culprits == (1, 3)  # 3 sent 1 a bad share, or 1 lies about it
    with pytest.raises(KeyCheckFailed) as three:
        run.check(3)
    assert three.value.culprits == (1,)  # key holder 3 itself blames the receiver


def test_lying_partial_decryptor_is_named(params: Parameters) -> None:
    run = _run(params)
    run.partials[2] = run.partials[2] ^ np.uint64(1)
    for index in (1, 3):
        with pytest.raises(KeyCheckFailed) as failed:
            run.check(index)
        assert failed.value.culprits == (2,)


def test_contribution_without_matching_shares_is_blamed(params: Parameters) -> None:
    def replace(contributions: dict[int, U64]) -> None:  # b_3 of a secret nobody shares
        other = DkgParticipant(params, index=3, keyholders=N, threshold=T)
        contributions[3] = other.public_key_contribution(b"\x01" * 32)

    run = _run(params, tamper_contributions=replace)
    for index in (1, 2):
        with pytest.raises(KeyCheckFailed) as failed:
            run.check(index)
        assert failed.value.culprits == (3,)
        assert "key holder 3" in str(failed.value)


@pytest.mark.parametrize("n,t", [(3, 2), (4, 2), (5, 3), (8, 4), (8, 2), (7, 7)])
def test_probe_quorums(n: int, t: int) -> None:
    quorums = probe_quorums(n, t)
    assert all(len(q) == t and list(q) == sorted(set(q)) for q in quorums)
    assert {j for q in quorums for j in q} == set(range(1, n + 1))
    per = quorums_per_keyholder(n, t)
    assert all(sum(1 for q in quorums if j in q) == per for j in range(1, n + 1))
    if len(quorums) < len(list(itertools.combinations(range(n), t))):  # cyclic windows:
        for a, b in zip(quorums, quorums[1:] + quorums[:1], strict=True):  # one swap apart
            assert len(set(a) ^ set(b)) == 2
