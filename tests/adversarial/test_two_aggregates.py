"""Two aggregates of one round: the lock certificate stops them (issue 10, item 1).

The attack: a malicious server has the round decrypted twice, once over every upload
(A) and once over every upload but the victim's (B); A - B is the victim's update. Before
lock certificates it needed only two quorums that had not met: with ``n >= 2t`` two
disjoint honest quorums, or, in the default 3-of-2 deployment, one corrupt key holder in
both quorums. Each honest key holder decrypted one aggregate, so its own record saw
nothing wrong, and the server's round-state answers said whatever the server liked.

Now a DECRYPT task must carry ``ceil((n + t) / 2)`` key holders' locks on its aggregate,
and an honest key holder locks one aggregate per round: two certificates would share an
honest key holder that locked both. Honest key holders are real agents; a corrupt one is
played by the test, which holds its signing key.
"""

from __future__ import annotations

from secagg.errors import AlreadyDecrypted, LockMissing
from secagg.protocol.certificates import check_locks, lock_size

from ._expect import lock_refused, locked, partial, refused
from .conftest import Attack, Upload


def _round(attack: Attack) -> tuple[list[Upload], list[Upload]]:
    """A (every upload) and B (every upload but the victim c4's) of round 1."""
    everyone = [attack.upload(f"c{i}", attack.encrypt(i)) for i in range(1, 5)]
    return everyone, everyone[:3]


def test_disjoint_quorums_cannot_decrypt_two_aggregates(attack4: Attack) -> None:
    """n = 4, t = 2: {1, 2, 3} lock A; B never gets more than 2 of the 3 locks it needs."""
    assert lock_size(4, 2) == 3
    for k in (1, 2, 3, 4):
        attack4.start_keyholder(k)
    a, b = _round(attack4)
    locks_a = attack4.locked_by(1, 2, 3, uploads=a)
    digest_a = attack4.aggregate(*a).digest
    assert check_locks(attack4.roster, 1, digest_a, locks_a) == {1, 2, 3}
    for k in (1, 2):  # the honest decryption of A goes ahead
        partial(attack4, attack4.task(*a, quorum=(1, 2), locks=locks_a, to=k))

    # B: the key holders that locked A refuse to lock it; key holder 4 has no reason to.
    for k in (1, 2, 3):
        lock_b = attack4.lock_task(*b, to=k)
        assert "locked to another aggregate" in lock_refused(attack4, k, lock_b, AlreadyDecrypted)
    lock_b = attack4.lock_task(*b, to=4)
    honest_b = locked(attack4, 4, lock_b)

    # quorum {3, 4} for B: key holder 4 holds 1 valid lock on B (the A locks do not count),
    # 2 if one of {1, 2, 3} is corrupt and signs B too; 3 are needed.
    corrupt_b = attack4.lock(3, lock_b.aggregate_digest)
    for locks, valid in (([honest_b], 1), ([honest_b, corrupt_b], 2)):
        task = attack4.task(*b, quorum=(3, 4), locks=[*locks, *locks_a], to=4)
        assert f"{valid} valid locks on this aggregate, 3 needed" in refused(
            attack4, task, LockMissing
        )
    task = attack4.task(*b, quorum=(3, 4), locks=[honest_b, corrupt_b, *locks_a], to=3)
    refused(attack4, task, AlreadyDecrypted)


def test_one_corrupt_keyholder_cannot_certify_two_aggregates(attack: Attack) -> None:
    """n = 3, t = 2: a certificate needs all 3; the honest ones locked A, the corrupt kh3 both."""
    attack.start_keyholder(1)
    attack.start_keyholder(2)
    a, b = _round(attack)
    locks_a = [*attack.locked_by(1, 2, uploads=a), attack.lock(3, attack.aggregate(*a).digest)]
    partial(attack, attack.task(*a, quorum=(1, 3), locks=locks_a, to=1))

    corrupt_b = attack.lock(3, attack.aggregate(*b).digest)
    for k in (1, 2):  # no honest lock on B can be had ...
        assert "another aggregate" in lock_refused(
            attack, k, attack.lock_task(*b, to=k), AlreadyDecrypted
        )
    # ... so quorum {2, 3} for B has the corrupt lock only, and key holder 2 locked A anyway
    task = attack.task(*b, quorum=(2, 3), locks=[corrupt_b, *locks_a], to=2)
    refused(attack, task, AlreadyDecrypted)
    # even a complete certificate for B (two honest locks forged: beyond the threat model)
    # does not move a key holder locked to A
    full_b = [corrupt_b, attack.lock(1, corrupt_b.aggregate_digest)]
    full_b.append(attack.lock(2, corrupt_b.aggregate_digest))
    refused(attack, attack.task(*b, quorum=(2, 3), locks=full_b, to=2), AlreadyDecrypted)


def test_honest_keyholders_split_between_two_aggregates_certify_neither(attack: Attack) -> None:
    """The server splits the honest key holders (kh1 locks A, kh2 locks B); kh3 is corrupt.

    Each aggregate has 2 valid locks (an honest one and the corrupt one): neither is
    decrypted. The round is lost (liveness), not the victim's update (privacy).
    """
    attack.start_keyholder(1)
    attack.start_keyholder(2)
    a, b = _round(attack)
    lock_a = locked(attack, 1, attack.lock_task(*a, to=1))
    lock_b = locked(attack, 2, attack.lock_task(*b, to=2))
    corrupt = [attack.lock(3, lock_a.aggregate_digest), attack.lock(3, lock_b.aggregate_digest)]
    locks = [lock_a, lock_b, *corrupt]
    for k, uploads in ((1, a), (2, b)):
        task = attack.task(*uploads, quorum=tuple(sorted((k, 3))), locks=locks, to=k)
        assert "2 valid locks on this aggregate, 3 needed" in refused(attack, task, LockMissing)
    for k, other in ((1, b), (2, a)):
        lock_refused(attack, k, attack.lock_task(*other, to=k), AlreadyDecrypted)
    assert not attack.double.answers.partials
