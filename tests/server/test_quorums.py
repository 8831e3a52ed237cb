"""The cross-checking quorum family and the deviator, against brute force (n <= 8)."""

from __future__ import annotations

from itertools import combinations

import pytest

from secagg.errors import QuorumNotMet
from secagg.protocol.quorums import (
    agree,
    coverage,
    deviator,
    flatten,
    quorum_family,
    unflatten,
)


def _brute_force_covers(quorums: tuple[tuple[int, ...], ...], live: list[int], size: int) -> bool:
    for coalition in combinations(live, size):
        if not any(set(q).isdisjoint(coalition) for q in quorums):
            return False
    return True


@pytest.mark.parametrize("all_up_to", [0, 20])
def test_the_family_leaves_every_coalition_out_of_some_quorum(all_up_to: int) -> None:
    for n in range(1, 9):
        for t in range(1, n + 1):
            live = list(range(1, n + 1))
            family = quorum_family(live, t, all_up_to=all_up_to)
            assert family.quorums and all(
                len(q) == t and len(set(q)) == t and set(q) <= set(live) for q in family.quorums
            )
            assert family.full == (n >= 2 * t - 1)
            assert family.catches == min(t - 1, n - t)
            assert _brute_force_covers(family.quorums, live, family.catches)
            assert coverage(family.quorums, live, family.catches)
            # no family of t-subsets catches more: all t-subsets fail one size up
            if family.catches < t - 1:
                every = tuple(combinations(live, t))
                assert not _brute_force_covers(every, live, family.catches + 1)


def test_small_families_are_all_subsets_and_large_ones_are_greedy() -> None:
    assert quorum_family([1, 2, 3], 2).quorums == ((1, 2), (1, 3), (2, 3))
    assert quorum_family([3, 1], 2).quorums == ((1, 3),)
    greedy = quorum_family(range(1, 9), 3)  # C(8,3) = 56 subsets: greedy
    assert greedy.full and len(greedy.quorums) < 56
    with pytest.raises(QuorumNotMet):
        quorum_family([1], 2)


def test_the_deviator_is_named_only_when_unique() -> None:
    right, wrong = b"model", b"shifted"
    four = {q: (wrong if 1 in q else right) for q in combinations([1, 2, 3, 4], 2)}
    assert not agree(four) and deviator(four) == 1
    assert agree({q: right for q in four}) and deviator({q: right for q in four}) is None
    # too few live to cross-check (t = 3 of 4): every key holder is a candidate
    thin = {q: (wrong if 1 in q else right) for q in combinations([1, 2, 3, 4], 3)}
    assert not agree(thin) and deviator(thin) is None
    # the majority of quorums can be wrong: 1 deviates, most quorums contain it
    majority = {q: (wrong if 1 in q else right) for q in combinations([1, 2, 3, 4, 5], 2)}
    assert deviator(majority) == 1


def test_flattened_quorums_round_trip() -> None:
    quorums = ((1, 2), (1, 3), (2, 3))
    assert unflatten(flatten(quorums), 2) == quorums
    with pytest.raises(ValueError):
        unflatten((1, 2, 3), 2)
