"""Cross-checking quorums: which t-subsets of the live key holders decrypt one aggregate.

Threshold decryption is exact modulo the plaintext modulus, so every honest quorum of
``t`` key holders decodes an aggregate to the same model, byte for byte. A key holder
that adds ``Δ·δ`` to its partial shifts the model of every quorum it is in and of no
other. :func:`quorum_family` picks a family of quorums such that every set of ``t - 1``
live key holders (the most the threat model lets collude) is left out of at least one
member: that member is all honest, so a deviation by the others shows as a disagreement
between quorums. This needs at least ``2t - 1`` live key holders; with fewer, the family
covers every coalition of ``|L| - t`` (what is possible) and says so
(:attr:`QuorumFamily.full` is False). :func:`deviator` names the one key holder whose
absence makes every quorum agree, when exactly one does.

Nothing here does I/O; the server (:mod:`server.tasks`, :mod:`server.release`) acts on
what these functions decide and ``secagg audit verify`` re-checks the released family.

Security
--------
Every extra quorum is one more partial decryption of the aggregate by each of its
members, i.e. more flooding noise samples released about the same key share. The
decryption budget (future work, issue 10) must count every quorum of the family, not one
per round. A disagreement only *detects* deviation; naming a deviator is possible when
the live key holders allow it (e.g. 4 of 5 live with ``t = 2``) and never relies on the
majority of quorums being right.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from math import comb

from secagg.errors import CrossCheckIncomplete, QuorumNotMet

#: Use every t-subset of the live key holders while there are at most this many.
ALL_SUBSETS_UP_TO = 20

Quorum = tuple[int, ...]


@dataclass(frozen=True)
class QuorumFamily:
    """A family of quorums and how far it cross-checks.

    ``catches``: every set of this many live key holders is disjoint from some quorum,
    so a coalition of up to ``catches`` deviators is detected. ``full``: ``catches`` is
    ``t - 1``, the threat model's bound.
    """

    quorums: tuple[Quorum, ...]
    catches: int
    full: bool


def coverage(quorums: Collection[Quorum], live: Collection[int], size: int) -> bool:
    """Whether every ``size``-subset of ``live`` is disjoint from some quorum."""
    sets = [set(q) for q in quorums]
    return all(any(not s & set(c) for s in sets) for c in combinations(sorted(set(live)), size))


def quorum_family(
    live: Collection[int], threshold: int, *, all_up_to: int = ALL_SUBSETS_UP_TO
) -> QuorumFamily:
    """The cross-checking family over the ``live`` key holders (see the module docstring).

    All t-subsets when there are at most ``all_up_to`` of them; otherwise a greedy cover:
    while some coalition is not left out of any quorum, add a quorum of the ``t`` least
    used key holders outside it.

    Raises
    ------
    QuorumNotMet
        Fewer than ``threshold`` key holders are live.
    """
    members = sorted(set(live))
    if threshold < 1 or len(members) < threshold:
        raise QuorumNotMet(f"{len(members)} live key holders; threshold {threshold}")
    catches = min(threshold - 1, len(members) - threshold)
    full = catches == threshold - 1
    if comb(len(members), threshold) <= all_up_to:
        return QuorumFamily(tuple(combinations(members, threshold)), catches, full)
    uncovered = [frozenset(c) for c in combinations(members, catches)]
    used = dict.fromkeys(members, 0)
    chosen: list[Quorum] = []
    while uncovered:
        coalition = uncovered[0]
        outside = sorted((i for i in members if i not in coalition), key=lambda i: (used[i], i))
        quorum = tuple(sorted(outside[:threshold]))
        chosen.append(quorum)
        for i in quorum:
            used[i] += 1
        uncovered = [c for c in uncovered if c & set(quorum)]
    return QuorumFamily(tuple(chosen), catches, full)


def agree(models: Mapping[Quorum, bytes]) -> bool:
    """Whether every quorum decrypted the same bytes."""
    return len(set(models.values())) <= 1


def deviator(models: Mapping[Quorum, bytes]) -> int | None:
    """The one key holder whose absence explains a disagreement, or None.

    A candidate ``k``: every quorum without ``k`` decrypted the same bytes, and some
    quorum with ``k`` decrypted other bytes. Named only if exactly one key holder is a
    candidate (with ``2t - 1`` or more live key holders and one deviator, it is).
    """
    members = sorted({i for q in models for i in q})
    candidates = []
    for k in members:
        without = {m for q, m in models.items() if k not in q}
        within = {m for q, m in models.items() if k in q}
        if len(without) == 1 and within - without:
            candidates.append(k)
    return candidates[0] if len(candidates) == 1 else None


def flatten(quorums: Sequence[Quorum]) -> tuple[int, ...]:
    """Quorums as one tuple of indices (each quorum is ``t`` entries; see :func:`unflatten`)."""
    return tuple(i for q in quorums for i in q)


def unflatten(indices: Sequence[int], threshold: int) -> tuple[Quorum, ...]:
    """The quorums of :func:`flatten`; raises ValueError if the length does not fit."""
    if threshold < 1 or len(indices) % threshold:
        raise ValueError(f"{len(indices)} indices do not form quorums of {threshold}")
    return tuple(tuple(indices[i : i + threshold]) for i in range(0, len(indices), threshold))


def check_cross_checked(quorums: Sequence[Quorum], threshold: int) -> None:
    """The quorums leave every ``t - 1`` of their members out of one (else raise).

    Raises
    ------
    CrossCheckIncomplete
        Fewer than ``2t - 1`` members, or a set of ``t - 1`` in every quorum.
    """
    members = {i for q in quorums for i in q}
    catches = threshold - 1
    if len(members) < 2 * catches + 1 or not coverage(quorums, members, catches):
        raise CrossCheckIncomplete(
            f"quorums {[list(q) for q in quorums]} do not leave every {catches} of their "
            f"members out of one; {2 * catches + 1} key holders must cross-check"
        )
