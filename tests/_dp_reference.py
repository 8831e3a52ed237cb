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
from typing import Any

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


# --- distributed DP: the Skellam ledger (clients.skellam_accounting) -----------------------


def skellam_reference_epsilon(history: Sequence[dict[str, Any]], *, delta: float) -> float:
    """Epsilon of a Skellam ledger, recomputed independently of the client's accountant.

    The Skellam RDP (Agarwal, Kairouz & Liu 2021, Theorem 3.5) and Zhu & Wang's general
    Poisson-subsampling bound (2019, Theorem 6) are evaluated here with mpmath at 50
    digits (exact binomials, no log-sum-exp); the RDP-to-DP conversion is
    ``dp-accounting``'s ``compute_epsilon``.
    """
    import mpmath  # type: ignore[import-untyped]
    from dp_accounting.rdp import rdp_privacy_accountant  # type: ignore[import-untyped]

    mpmath.mp.dps = 50
    orders = list(range(2, 257))
    total: list[Any] = [mpmath.mpf(0)] * len(orders)
    for entry in history:
        assert entry["mechanism"] == "skellam"
        mu, l2, l1 = (mpmath.mpf(entry[k]) for k in ("mu", "l2", "l1"))
        q = mpmath.mpf(entry["sample_rate"])
        base = {a: _skellam_rdp(a, mu, l2, l1) for a in orders}

        for i, a in enumerate(orders):
            if q == 1:
                rdp = base[a]
            else:
                s = (1 - q) ** (a - 1) * (a * q - q + 1)
                s += mpmath.binomial(a, 2) * q**2 * (1 - q) ** (a - 2) * mpmath.exp(base[2])
                for j in range(3, a + 1):
                    s += (
                        3
                        * mpmath.binomial(a, j)
                        * q**j
                        * (1 - q) ** (a - j)
                        * mpmath.exp((j - 1) * base[j])
                    )
                rdp = mpmath.log(s) / (a - 1)
            total[i] += rdp * int(entry["steps"])
    eps, _ = rdp_privacy_accountant.compute_epsilon(orders, [float(x) for x in total], delta)
    return float(eps)


def _skellam_rdp(a: int, mu: Any, l2: Any, l1: Any) -> Any:
    """Theorem 3.5 of Agarwal, Kairouz & Liu 2021 at order ``a`` (mpmath numbers)."""
    fix = min(((2 * a - 1) * l2**2 + 6 * l1) / (16 * mu**2), 3 * l1 / (4 * mu))
    return a * l2**2 / (4 * mu) + fix
