"""A client's privacy ledger: every mechanism it released, composed into one epsilon.

**Unit.** Record-level DP within one client's local dataset: two datasets are neighbours
when they differ by **adding or removing one record** (training data; the client keeps no
separate validation split). Epsilon is reported at ``delta = target_delta``.

Every quantity a DP client releases is either fixed by public settings or the output of a
mechanism in its ledger. A ledger entry has the format of Opacus' accountant history,
``(noise_multiplier, sample_rate, steps)``:

* the **noisy count** ``N~ = round(N + N(0, count_noise^2))`` (the upload weight), drawn
  once: entry ``(count_noise, 1.0, 1)``, the Gaussian mechanism of sensitivity 1;
* each **round of DP-SGD**: entry ``(sigma, q, T)``, ``T`` Poisson-subsampled Gaussian steps
  with ``q = batch_size / N~``. ``q``, ``T`` and the normaliser are post-processing of
  ``N~`` (:class:`clients.dp_noise.SamplingPlan`), never of ``N``.

Opacus' PRV and RDP accountants compose such heterogeneous entries; the ledger is stored
in ``privacy.json`` so that an auditor can recompute epsilon with any accountant (the
tests do, with Google's ``dp-accounting`` PLD).

Notes
-----
``q``, ``T`` and ``sigma`` are chosen after ``N~`` was drawn (adaptive composition: each
mechanism's parameters depend on earlier outputs only). The budget check before every
round is a privacy filter over that composition; for the RDP accountant such filters are
proven valid (Feldman & Zrnic 2021), for the PRV accountant this is the standard
practice, not a theorem we cite.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Protocol

from secagg.errors import ConfigError

#: Privacy accountants Opacus offers.
ACCOUNTANTS = ("rdp", "prv")
#: The neighbouring relation every epsilon here is stated under.
PRIVACY_UNIT = "add/remove one record of the client's local dataset"
#: Largest DP-SGD noise multiplier the planner tries before it gives up.
_MAX_NOISE_MULTIPLIER = 10_000.0


class DPSettings(Protocol):
    """The settings every DP configuration shares (:func:`setting_problems`)."""

    @property
    def target_epsilon(self) -> float: ...
    @property
    def target_delta(self) -> float: ...
    @property
    def lr_decay(self) -> float: ...


def setting_problems(
    config: DPSettings, *, finite: Sequence[str], counts: Sequence[str]
) -> list[str]:
    """What is wrong with a DP configuration's shared settings (empty if nothing).

    Checks ``target_epsilon`` (positive, finite), ``target_delta`` (in (0, 1)),
    ``lr_decay`` (in [0, 1)), every field of ``finite`` (positive, finite) and every field
    of ``counts`` (at least 1); the configurations raise once with every problem.
    """
    problems = []
    if not 0 < config.target_epsilon < math.inf:
        problems.append("target_epsilon must be positive and finite")
    if not 0 < config.target_delta < 1:
        problems.append("target_delta must lie in (0, 1)")
    for name in finite:
        if not 0 < getattr(config, name) < math.inf:
            problems.append(f"{name} must be positive and finite")
    if not 0 <= config.lr_decay < 1:
        problems.append("lr_decay must lie in [0, 1)")
    problems += [f"{name} must be positive" for name in counts if getattr(config, name) < 1]
    return problems


def count_release(count_noise: float) -> list[float]:
    """The ledger entry of the noisy count: a Gaussian mechanism, sensitivity 1."""
    return [count_noise, 1.0, 1]


def epsilon_of(history: Sequence[Sequence[float]], *, delta: float, accountant: str) -> float:
    """Epsilon at ``delta`` of the composition of every entry of ``history``.

    Entries of one mechanism (equal noise multiplier and rate) are merged first: the same
    composition, computed far faster.
    """
    if not history:
        return 0.0
    from opacus.accountants import PRVAccountant, RDPAccountant

    acc = PRVAccountant() if accountant == "prv" else RDPAccountant()
    merged: dict[tuple[float, float], int] = {}
    for sigma, rate, steps in history:
        merged[(sigma, rate)] = merged.get((sigma, rate), 0) + int(steps)
    acc.history = [(s, r, n) for (s, r), n in merged.items()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(acc.get_epsilon(delta=delta))


def plan_noise_multiplier(
    prior: Sequence[Sequence[float]],
    *,
    sample_rate: float,
    steps: int,
    target_epsilon: float,
    delta: float,
    accountant: str,
    tolerance: float = 0.01,
) -> float:
    """The smallest DP-SGD noise multiplier (to ``tolerance`` in epsilon) within budget.

    Bisection as in Opacus' ``get_noise_multiplier``, but over the composition of
    ``prior`` (the mechanisms already in the ledger, e.g. the noisy count) with ``steps``
    DP-SGD steps at ``sample_rate``; the result's total epsilon is at most
    ``target_epsilon`` and within ``tolerance`` of it.

    Raises
    ------
    ConfigError
        ``prior`` alone, or with any noise multiplier up to 10,000, exceeds the target.
    """

    def total(sigma: float) -> float:
        return epsilon_of([*prior, [sigma, sample_rate, steps]], delta=delta, accountant=accountant)

    low, high = 0.0, 10.0
    eps_high = total(high)
    while eps_high > target_epsilon:
        if high >= _MAX_NOISE_MULTIPLIER:
            raise ConfigError(
                f"target epsilon {target_epsilon:g} cannot be met: the released count alone "
                f"spends {epsilon_of(prior, delta=delta, accountant=accountant):.3f}"
            )
        low, high = high, 2 * high
        eps_high = total(high)
    while target_epsilon - eps_high > tolerance and not math.isclose(low, high):
        sigma = (low + high) / 2
        eps = total(sigma)
        if eps < target_epsilon:
            high, eps_high = sigma, eps
        else:
            low = sigma
    return high
