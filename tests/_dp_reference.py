"""An independent privacy accountant for the tests (not a test module).

Recomputes a client's epsilon from the ledger in its ``privacy.json`` with Google's
``dp-accounting`` privacy-loss-distribution (PLD) accountant, which shares no code with
Opacus' PRV/RDP accountants the clients use. A ledger entry ``(sigma, q, steps)`` is
``steps`` compositions of the Gaussian mechanism (noise multiplier ``sigma``, sensitivity
1) Poisson-subsampled at rate ``q``; ``q = 1`` is the Gaussian mechanism itself (the
noisy count). The neighbouring relation is add/remove one record, the clients' unit.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from dp_accounting import dp_event  # type: ignore[import-untyped]
from dp_accounting.pld import pld_privacy_accountant  # type: ignore[import-untyped]

#: Relative tolerance of the issue's acceptance (reported vs. independent epsilon).
TOLERANCE = 0.02


def pld_epsilon(history: Sequence[Sequence[float]], *, delta: float) -> float:
    """Epsilon at ``delta`` of the composition of every ledger entry, by PLD."""
    events: list[dp_event.DpEvent] = []
    for sigma, rate, steps in history:
        gaussian = dp_event.GaussianDpEvent(noise_multiplier=float(sigma))
        one = gaussian if rate >= 1.0 else dp_event.PoissonSampledDpEvent(float(rate), gaussian)
        events.append(dp_event.SelfComposedDpEvent(one, int(steps)))
    accountant = pld_privacy_accountant.PLDAccountant(
        pld_privacy_accountant.NeighborRel.ADD_OR_REMOVE_ONE,
        value_discretization_interval=1e-3,
    )
    accountant.compose(dp_event.ComposedDpEvent(events))
    return float(accountant.get_epsilon(delta))


def assert_ledger_matches(state: dict[str, object]) -> list[tuple[int, float, float]]:
    """Check every round's recorded epsilon against PLD over the ledger up to that round.

    ``state`` is a parsed ``privacy.json``: ``history[0]`` is the noisy count, entry ``k``
    the DP-SGD steps of the ``k``-th round trained. Returns (round, reported, PLD) rows.
    """
    history = state["history"]
    recorded = state["epsilon"]
    config = state["config"]
    assert isinstance(history, list) and isinstance(recorded, dict)
    assert isinstance(config, dict)
    assert history[0] == [config["count_noise"], 1.0, 1], "the noisy count is not accounted"
    rows = []
    for k, rnd in enumerate(sorted(recorded, key=int), start=1):
        independent = pld_epsilon(history[: 1 + k], delta=float(config["target_delta"]))
        reported = float(recorded[rnd])
        assert reported == pytest.approx(independent, rel=TOLERANCE), (rnd, reported, independent)
        rows.append((int(rnd), reported, independent))
    assert len(history) == 1 + len(recorded)
    return rows
