"""A client's epsilon never decreases, in the key holder's own record too.

The server and ``audit verify`` check it (``secagg.protocol.policy.check_epsilon_progress``),
but a malicious server can forward any set of signed uploads. Here the test plays that
server and a client whose state directory was reset (it signs a smaller epsilon in round
2 than in round 1): the REAL key-holder agent refuses the round, from its own durable
record of the epsilons it decrypted over, across a restart.
"""

from __future__ import annotations

from secagg.errors import EpsilonDecreased
from secagg.proto import service_pb2 as pb

from ._expect import partial, refused
from .conftest import Attack


def _round(attack: Attack, round_number: int, eps_c1: float) -> pb.DecryptionTask:
    return attack.task(
        attack.upload(
            "c1", attack.encrypt(10 * round_number + 1), round_number=round_number, epsilon=eps_c1
        ),
        attack.upload(
            "c2", attack.encrypt(10 * round_number + 2), round_number=round_number, epsilon=1.0
        ),
        round_number=round_number,
    )


def test_an_epsilon_below_one_decrypted_in_an_earlier_round_is_refused(attack: Attack) -> None:
    attack.start_keyholder(1)
    partial(attack, _round(attack, 1, eps_c1=2.0))
    attack.stop_keyholders()
    attack.start_keyholder(1)  # the record is durable
    attack.double.round_info = pb.RoundInfo(round=2, state=pb.DECRYPTING)
    assert "c1" in refused(attack, _round(attack, 2, eps_c1=0.5), EpsilonDecreased)


def test_an_equal_or_larger_epsilon_is_decrypted(attack: Attack) -> None:
    attack.start_keyholder(1)
    partial(attack, _round(attack, 1, eps_c1=2.0))
    attack.double.round_info = pb.RoundInfo(round=2, state=pb.DECRYPTING)
    partial(attack, _round(attack, 2, eps_c1=2.0))
