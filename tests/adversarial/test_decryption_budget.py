"""A server that asks for partial after partial drives a key share past its budget (issue 10).

The flooding is sized for a lifetime budget of decrypted coefficients per key share
(:attr:`secagg.params.Parameters.decryption_budget`); past it the statistical bound no
longer holds, so the real key holder must refuse. The deployment here is the ``attack``
fixture's (:mod:`tests.adversarial.conftest`), built while :meth:`Parameters.default`
returns a set with a budget of ``2^14`` coefficients: two partial decryptions of one
N = 8192 ciphertext fit, a third does not. Every quorum counts (each is a partial with
its own flooding); a repeated task answered from the stored partial costs nothing.
"""

from __future__ import annotations

import pytest

from secagg.errors import DecryptionBudgetExhausted
from secagg.params import Parameters
from secagg.proto import service_pb2 as pb
from secagg.protocol.statements import RefusalStatement

from ._expect import partial, refused
from .conftest import Attack

#: 2^14 coefficients: two partials of a one-ciphertext aggregate (LENGTH <= N).
BUDGET_BITS = 14


@pytest.fixture(autouse=True)
def tiny_budget(monkeypatch: pytest.MonkeyPatch) -> Parameters:
    """Deployments of this module use a set with a budget of 2^14 coefficients.

    Rosters carry only the parameter set's id and :func:`~secagg.protocol.roster.load_roster`
    accepts only :meth:`Parameters.default`, so the default is replaced for the test
    (autouse: before the ``attack`` fixture runs ``init_deployment``; key holders run in
    threads of this process, so they load the same set).
    """
    params = Parameters.calculate(decryption_budget_bits=BUDGET_BITS)
    monkeypatch.setattr(Parameters, "default", classmethod(lambda cls: params))
    return params


def test_a_key_holder_refuses_a_partial_past_its_budget(
    attack: Attack, tiny_budget: Parameters
) -> None:
    assert attack.roster.params == tiny_budget
    n = tiny_budget.poly_modulus_degree
    assert tiny_budget.decryption_budget == 2 * n
    attack.start_keyholder(1)
    uploads = (attack.upload("c1", attack.encrypt(1)), attack.upload("c2", attack.encrypt(2)))

    first = partial(attack, attack.task(*uploads, quorum=(1, 2)))  # spends N
    again = partial(attack, attack.task(*uploads, quorum=(1, 2)))  # the stored answer: free
    assert again.blob == first.blob
    partial(attack, attack.task(*uploads, quorum=(1, 3)))  # spends N: the budget is spent

    third = attack.task(*uploads, quorum=(1, 2, 3))
    reason = refused(attack, third, DecryptionBudgetExhausted)
    assert f"lifetime budget of {2 * n}" in reason
    answer = attack.double.wait_answer(third.task_id)
    assert isinstance(answer, pb.Refusal)
    refusal = RefusalStatement.from_proto(attack.roster.deployment_id, answer).verify(attack.roster)
    assert refusal.keyholder == 1
    assert refusal.reason.startswith("DECRYPTION_BUDGET_EXHAUSTED: ")

    # The count is durable: after a restart the key holder still refuses a new partial,
    # and still resends what it answered before (which costs nothing).
    attack.stop_keyholders()
    attack.start_keyholder(1)
    refused(attack, attack.task(*uploads, quorum=(1, 2, 3)), DecryptionBudgetExhausted)
    assert partial(attack, attack.task(*uploads, quorum=(1, 2))).blob == first.blob
