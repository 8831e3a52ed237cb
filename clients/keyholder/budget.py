"""A key share's lifetime decryption budget: a durable counter of decrypted coefficients.

The flooding noise of a partial decryption is sized so that a key share that decrypts
at most :attr:`~secagg.params.Parameters.decryption_budget` coefficients in its lifetime
leaks at most ``2^-lambda`` (statistical distance, union bound over the coefficients; see
:mod:`secagg.params`). Past the budget nothing bounds the leak, so the key holder counts
and refuses (:class:`~secagg.errors.DecryptionBudgetExhausted`).

What is counted: every partial decryption this key holder computes, as its number of
ciphertexts times ``poly_modulus_degree`` coefficients. Every quorum of a
cross-checking family is a partial of its own and counts; a second quorum for the same
aggregate counts again. A stored answer resent to a retry costs nothing: no new partial
is computed, so nothing new is revealed.

The counter lives in ``decryption_budget.json`` in the key holder's state directory,
next to its share and its :class:`~clients.keyholder.record.DecryptionRecord`; a share of
a later key epoch has its own counter (``decryption_budget-e<E>.json``): a new key, a
new budget. The server rotates the key before the budget runs out
(:mod:`server.epochs`), but the key holder's count is the one that is enforced.

Security
--------
Crash ordering: :meth:`DecryptionBudget.spend` writes the new total durably
(:func:`~clients.keyholder.storage.write_atomically`: tmp, fsync, rename, fsync dir)
*before* it returns, and the caller spends before it computes or sends the partial. A
crash in between wastes budget; it never under-counts. A refused spend writes nothing.

The counter is only as good as the state directory: a key holder whose state is lost,
restored from a backup or rolled back forgets what it spent. It must keep the state
directory with the share (a share restored without its counter should be treated as
exhausted and replaced by a new ceremony).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from clients.keyholder.storage import write_atomically
from secagg.errors import ConfigError, DecryptionBudgetExhausted
from secagg.params import Parameters

BUDGET_FILE = "decryption_budget.json"


class DecryptionBudget:
    """The decrypted-coefficient counter of one key share (see the module docstring).

    Parameters
    ----------
    state_dir
        The key holder's state directory (holds :data:`BUDGET_FILE`).
    params
        The deployment's parameters; :attr:`~secagg.params.Parameters.decryption_budget`
        is the limit.
    epoch
        The key epoch of the share (each has its own counter).
    """

    def __init__(self, state_dir: Path, params: Parameters, *, epoch: int = 1) -> None:
        name = BUDGET_FILE if epoch == 1 else f"decryption_budget-e{epoch}.json"
        self.path = Path(state_dir) / name
        self.limit = params.decryption_budget
        self._lock = threading.Lock()

    def spent(self) -> int:
        """Coefficients decrypted so far (0 before the first decryption).

        Raises
        ------
        ConfigError
            The counter file is damaged: the key holder refuses rather than start over.
        """
        if not self.path.exists():
            return 0
        try:
            record = json.loads(self.path.read_bytes())
            spent = record["spent"]
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"{self.path} is damaged: {exc}") from None
        if isinstance(spent, bool) or not isinstance(spent, int) or spent < 0:
            raise ConfigError(f"{self.path} is damaged: spent must be a non-negative integer")
        return spent

    def remaining(self) -> int:
        """Coefficients this key share may still decrypt (0 once exhausted)."""
        return max(self.limit - self.spent(), 0)

    def spend(self, coefficients: int) -> None:
        """Charge ``coefficients`` to the budget, durably, before the partial is computed.

        Raises
        ------
        DecryptionBudgetExhausted
            ``spent + coefficients`` would exceed the budget; nothing is recorded.
        ValueError
            ``coefficients`` is negative.
        ConfigError
            The counter file is damaged.

        Security
        --------
        The new total is on disk (fsync'd) when this returns: call it before computing
        or sending the partial, so that a crash can only waste budget.
        """
        if coefficients < 0:
            raise ValueError("cannot spend a negative number of coefficients")
        with self._lock:
            spent = self.spent()
            if spent + coefficients > self.limit:
                raise DecryptionBudgetExhausted(
                    f"decrypting {coefficients} more coefficients would exceed this key "
                    f"share's lifetime budget of {self.limit} ({spent} spent); the key must "
                    f"be replaced by a new ceremony"
                )
            total = spent + coefficients
            record = {"spent": total, "budget": self.limit}
            write_atomically(self.path, json.dumps(record).encode())
