"""A malicious server against the real key-holder agent (issue 10, items 2, 3 and 6).

The server double (:mod:`tests.adversarial._server_double`) hands a real key holder
crafted decryption tasks built from real ciphertexts, with real client signatures
(colluding clients sign whatever the attack needs). Each test is an attack the key
holder must refuse, or a repeat it must answer with its stored partial:

* copy: a colluding client signs the victim's ciphertext as its own upload (the signed
  hash is the content digest, so a re-encoded copy has the same hash) so that an
  "aggregate of two" is the victim's update alone;
* replay: a ciphertext decrypted in round 1 comes back in round 2's aggregate;
* light weights: weight 0, or below the policy's ``min_weight``, to count as a
  contributor without weight;
* starvation: an upload heavier than the per-client cap (which would exhaust the
  round's weight budget and have every other upload refused);
* repeats: the same task twice (and after a restart) gets byte-identical partials;
  a second, different aggregate of a decrypted round is refused.

Under lock certificates (:mod:`secagg.protocol.certificates`) every DECRYPT task here
carries a complete certificate the test signs with every key holder's key: the
strongest position a server could be in, and still the key holder's own checks refuse.
The same contributor-set attacks are refused one step earlier, at LOCK time, so no
certificate for such a set can be gathered from honest key holders at all.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from secagg.chunked import VectorHead
from secagg.errors import (
    AlreadyDecrypted,
    DuplicateCiphertext,
    ReplayedCiphertext,
    SecAggError,
    WeightBudgetExceeded,
)
from secagg.proto import service_pb2 as pb

from ._expect import lock_refused, partial, refused
from .conftest import MIN_WEIGHT, Attack, Upload

__all__ = ["partial", "refused"]  # also used by test_decryption_budget


def reencoded(head: bytes) -> bytes:
    """The same ciphertext head with an unknown protobuf field appended: other bytes."""
    field_1000_varint = bytes([0xC0, 0x3E, 0x01])  # tag (1000 << 3 | 0), value 1
    return head + field_1000_varint


# ----------------------------------------------------------------------------- copies


def test_a_client_signing_the_victims_ciphertext_is_refused(attack: Attack) -> None:
    attack.start_keyholder(1)
    victim = attack.encrypt(1)
    task = attack.task(attack.upload("c1", victim), attack.upload("c2", victim))
    refused(attack, task, DuplicateCiphertext)


def test_a_reencoded_copy_is_refused(attack: Attack) -> None:
    """A re-encoded copy (other head bytes) has the same signed hash: the ciphertext hash is
    the content digest, a root over the chunks, whatever the encoding of the head."""
    attack.start_keyholder(1)
    victim = attack.encrypt(1)
    head = VectorHead.of(victim)
    assert VectorHead.from_bytes(reencoded(head.to_bytes()), victim.params).digest == head.digest
    task = attack.task(attack.upload("c1", victim), attack.upload("c2", victim))
    assert "listed twice" in refused(attack, task, DuplicateCiphertext)


# ----------------------------------------------------------------------------- replays


def test_a_ciphertext_from_an_earlier_round_is_refused(attack: Attack) -> None:
    attack.start_keyholder(1)
    victim = attack.encrypt(1)
    first = attack.task(attack.upload("c1", victim), attack.upload("c2", attack.encrypt(2)))
    partial(attack, first)
    attack.double.round_info = pb.RoundInfo(round=2, state=pb.DECRYPTING)
    replay = attack.task(
        attack.upload("c3", victim, round_number=2),  # a colluder resubmits it as its own
        attack.upload("c4", attack.encrypt(4), round_number=2),
        round_number=2,
    )
    assert "in round 1" in refused(attack, replay, ReplayedCiphertext)


def test_the_replay_record_survives_a_restart(attack: Attack) -> None:
    attack.start_keyholder(1)
    victim = attack.encrypt(1)
    partial(
        attack, attack.task(attack.upload("c1", victim), attack.upload("c2", attack.encrypt(2)))
    )
    attack.stop_keyholders()
    attack.start_keyholder(1)
    replay = attack.task(
        attack.upload("c1", victim, round_number=2),
        attack.upload("c3", attack.encrypt(3), round_number=2),
        round_number=2,
    )
    refused(attack, replay, ReplayedCiphertext)


# ----------------------------------------------------------------------------- weights


@pytest.mark.parametrize("weight", [0, MIN_WEIGHT - 1])
def test_a_weight_below_the_minimum_is_refused(attack: Attack, weight: int) -> None:
    attack.start_keyholder(1)
    task = attack.task(
        attack.upload("c1", attack.encrypt(1)),
        attack.upload("c2", attack.encrypt(2), weight=weight),
    )
    assert f"weight must lie in {MIN_WEIGHT}.." in refused(attack, task, WeightBudgetExceeded)


def test_a_weight_above_the_per_client_cap_is_refused(attack: Attack) -> None:
    """One upload of the whole budget would starve every other client of the round."""
    cap = attack.roster.policy.max_client_weight
    assert cap == attack.roster.params.max_total_weight // len(attack.roster.clients)
    attack.start_keyholder(1)
    task = attack.task(
        attack.upload("c1", attack.encrypt(1), weight=cap + 1),
        attack.upload("c2", attack.encrypt(2)),
    )
    assert "per-client cap" in refused(attack, task, WeightBudgetExceeded)


# ----------------------------------------------------------------------------- repeats


def test_the_same_task_twice_gets_the_same_partial_bytes(attack: Attack) -> None:
    attack.start_keyholder(1)
    uploads = (attack.upload("c1", attack.encrypt(1)), attack.upload("c2", attack.encrypt(2)))
    first = partial(attack, attack.task(*uploads))
    again = partial(attack, attack.task(*uploads))
    assert again.blob == first.blob
    assert again.header.signature == first.header.signature
    attack.stop_keyholders()  # and after a restart, from the stored answer
    attack.start_keyholder(1)
    after_restart = partial(attack, attack.task(*uploads))
    assert after_restart.blob == first.blob


def test_another_quorum_for_the_same_aggregate_is_a_new_partial(attack: Attack) -> None:
    """A new quorum (the server replacing a dead member) is not a replay."""
    attack.start_keyholder(1)
    uploads = (attack.upload("c1", attack.encrypt(1)), attack.upload("c2", attack.encrypt(2)))
    first = partial(attack, attack.task(*uploads, quorum=(1, 2)))
    other = partial(attack, attack.task(*uploads, quorum=(1, 3)))
    assert other.blob != first.blob


def test_a_second_aggregate_of_a_decrypted_round_is_refused(attack: Attack) -> None:
    attack.start_keyholder(1)
    c1, c2 = attack.upload("c1", attack.encrypt(1)), attack.upload("c2", attack.encrypt(2))
    partial(attack, attack.task(c1, c2, attack.upload("c3", attack.encrypt(3))))
    second = attack.task(c1, c2)  # the round without c3: the difference is c3's update
    assert "another aggregate" in refused(attack, second, AlreadyDecrypted)


# ----------------------------------------------------------------------------- at lock time


def _copied(attack: Attack) -> tuple[Upload, ...]:
    victim = attack.encrypt(1)
    return attack.upload("c1", victim), attack.upload("c2", victim)


def _light(attack: Attack) -> tuple[Upload, ...]:
    return attack.upload("c1", attack.encrypt(1)), attack.upload("c2", attack.encrypt(2), weight=0)


def _heavy(attack: Attack) -> tuple[Upload, ...]:
    cap = attack.roster.policy.max_client_weight
    heavy = attack.upload("c1", attack.encrypt(1), weight=cap + 1)
    return heavy, attack.upload("c2", attack.encrypt(2))


@pytest.mark.parametrize(
    ("crafted", "error"),
    [
        (_copied, DuplicateCiphertext),
        (_light, WeightBudgetExceeded),
        (_heavy, WeightBudgetExceeded),
    ],
)
def test_a_crafted_set_is_refused_a_lock(
    attack: Attack, crafted: Callable[[Attack], tuple[Upload, ...]], error: type[SecAggError]
) -> None:
    """No lock, hence no certificate: the server cannot even ask for the decryption."""
    attack.start_keyholder(1)
    lock_refused(attack, 1, attack.lock_task(*crafted(attack), to=1), error)
    assert not attack.double.answers.locks


def test_a_replayed_ciphertext_is_refused_a_lock(attack: Attack) -> None:
    attack.start_keyholder(1)
    victim = attack.encrypt(1)
    partial(
        attack, attack.task(attack.upload("c1", victim), attack.upload("c2", attack.encrypt(2)))
    )
    replay = attack.lock_task(
        attack.upload("c3", victim, round_number=2),
        attack.upload("c4", attack.encrypt(4), round_number=2),
        round_number=2,
        to=1,
    )
    assert "in round 1" in lock_refused(attack, 1, replay, ReplayedCiphertext)
