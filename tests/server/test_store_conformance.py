"""The conformance suite every :class:`~server.store.base.Store` must pass (both run it)."""

from __future__ import annotations

import dataclasses
import os

import pytest

from secagg.proto import service_pb2 as pb
from secagg.protocol.statements import Signed, UploadStatement, WithdrawalStatement
from secagg.protocol.status import RoundStatus
from server.state import (
    RoundState,
    Task,
    TaskState,
    Upload,
    closed,
    open_round,
    with_status,
)
from server.store import Store
from server.store.base import (
    CertificateRecord,
    KeyEpoch,
    PartialRecord,
    RefusalRecord,
    StoreConflict,
)

from .conftest import DEPLOYMENT, World

H1, H2 = bytes([1]) * 32, bytes([2]) * 32


def _upload(
    client: str,
    rnd: int = 1,
    *,
    weight: int = 10,
    nonce: bytes | None = None,
    epsilon: float = 0.25,
    dp: bool = False,
) -> Upload:
    statement = UploadStatement(
        DEPLOYMENT, rnd, client, nonce or os.urandom(16), H1, os.urandom(32), weight, epsilon, dp
    )
    return Upload(Signed(statement, os.urandom(64)), 12.5)


def _task(rnd: int = 1, *, operator: bool = False) -> Task:
    contributions = (_upload("c1").signed, _upload("c2").signed)
    return Task(0, rnd, H1, H2, contributions, (1, 2), operator, TaskState.OPEN, 3.0)


def test_rounds_round_trip(store: Store, world: World) -> None:
    assert store.current_round() is None and store.round(1) is None
    first = open_round(1, H1, policy=world.roster.policy, now=100.0)
    store.put_round(first)
    assert store.round(1) == first and store.current_round() == first
    waiting = with_status(first, RoundStatus.waiting(1, 2))
    store.put_round(waiting)
    assert store.round(1) == waiting
    assert str(store.round(1).status) == "waiting: 1 of at least 2 contributors"  # type: ignore[union-attr]
    decrypting = closed(waiting, aggregate_hash=H1, aggregate_digest=H2, count=3)
    store.put_round(decrypting)
    second = open_round(2, H2, policy=world.roster.policy, now=200.0)
    store.put_round(second)
    assert store.current_round() == second
    assert store.round(1) == decrypting and store.round(1).state is RoundState.DECRYPTING  # type: ignore[union-attr]
    assert [r.number for r in store.rounds()] == [1, 2]


@pytest.mark.parametrize(
    "status",
    [
        RoundStatus.collecting(),
        RoundStatus.quorum_not_met(1, 3, 2),
        RoundStatus.refused(2, "too few"),
        RoundStatus.released(H1),
        RoundStatus.finished(),
        RoundStatus.decrypting_with((1, 3)),
    ],
)
def test_status_survives_the_store(store: Store, world: World, status: RoundStatus) -> None:
    rnd = with_status(open_round(1, H1, policy=world.roster.policy, now=1.0), status)
    store.put_round(rnd)
    assert store.round(1) == rnd


def test_uploads_and_nonces(store: Store) -> None:
    a, b = _upload("c2"), _upload("c1")
    store.add_upload(a)
    store.add_upload(b)
    store.add_upload(_upload("c1", rnd=2))
    assert [u.statement.client_id for u in store.uploads(1)] == ["c1", "c2"]
    assert store.uploads(1)[1] == a
    assert store.accepted_uploads(1) == [a, b]  # acceptance order (GetAcceptedUploads)
    assert store.upload_count(1) == 2 and store.upload_count(2) == 1 and store.upload_count(3) == 0
    assert store.has_upload(1, "c1") and not store.has_upload(1, "c3")
    assert store.nonce_seen("c2", a.statement.nonce) and not store.nonce_seen(
        "c1", a.statement.nonce
    )


def test_max_epsilon_and_the_dp_marker(store: Store) -> None:
    """The largest ε a client reported over every round; the signed DP marker round-trips."""
    assert store.max_epsilon("c1") is None
    store.add_upload(_upload("c1", epsilon=0.5, dp=True))
    store.add_upload(_upload("c1", rnd=2, epsilon=1.25, dp=True))
    store.add_upload(_upload("c1", rnd=3, epsilon=0.75))
    store.add_upload(_upload("c2", epsilon=2.0))
    assert store.max_epsilon("c1") == 1.25 and store.max_epsilon("c2") == 2.0
    assert [
        u.statement.dp for r in (1, 2, 3) for u in store.uploads(r) if u.statement.client_id == "c1"
    ] == [True, True, False]


def test_duplicate_upload_or_nonce_conflicts_and_changes_nothing(store: Store) -> None:
    first = _upload("c1")
    store.add_upload(first)
    with pytest.raises(StoreConflict):
        store.add_upload(_upload("c1"))  # same round and client
    with pytest.raises(StoreConflict):
        store.add_upload(_upload("c1", rnd=2, nonce=first.statement.nonce))  # replayed nonce
    assert store.uploads(1) == [first] and store.upload_count(2) == 0


def test_transaction_is_all_or_nothing(store: Store, world: World) -> None:
    rnd = open_round(1, H1, policy=world.roster.policy, now=1.0)
    with pytest.raises(RuntimeError), store.transaction():
        store.put_round(rnd)
        store.add_upload(_upload("c1"))
        with store.transaction():  # nested: joins the outer one
            store.add_upload(_upload("c2"))
        raise RuntimeError("audit write failed")
    assert store.current_round() is None and store.upload_count(1) == 0
    with store.transaction():
        store.put_round(rnd)
        store.add_upload(_upload("c1"))
    assert store.current_round() == rnd and store.upload_count(1) == 1


def test_withdrawals_are_recorded_once(store: Store) -> None:
    signed = Signed(WithdrawalStatement(DEPLOYMENT, "c3", 2, "budget"), os.urandom(64))
    assert store.withdrawal("c3") is None
    assert store.add_withdrawal(signed) is True
    assert (
        store.add_withdrawal(Signed(WithdrawalStatement(DEPLOYMENT, "c3", 1, "x"), b"s")) is False
    )
    assert store.withdrawal("c3") == signed and store.withdrawals() == [signed]


def test_tasks(store: Store) -> None:
    first = store.add_task(_task())
    second = store.add_task(_task(operator=True))
    assert first.task_id >= 1 and second.task_id > first.task_id
    assert store.task(first.task_id) == first
    assert [t.task_id for t in store.tasks(state=TaskState.OPEN, round_number=1)] == [
        first.task_id,
        second.task_id,
    ]
    logged = dataclasses.replace(first, log_size=7, log_head=H2)
    store.put_task(logged)
    assert store.task(first.task_id) == logged
    store.set_task_state(first.task_id, TaskState.SUPERSEDED)
    assert [t.task_id for t in store.tasks(state=TaskState.OPEN)] == [second.task_id]
    assert store.tasks(round_number=2) == []
    assert store.task(999) is None


def test_task_round_trips_its_contributions(store: Store) -> None:
    draft = _task()
    stored = store.add_task(draft)
    assert stored.contributions == draft.contributions
    assert stored.to_proto().contributions[0].client_id == "c1"


def test_partials_and_refusals(store: Store) -> None:
    task = store.add_task(_task())
    p2 = PartialRecord(task.task_id, 2, H1, H2, b"sig2")
    assert store.add_answer(p2) is True
    assert store.add_answer(PartialRecord(task.task_id, 2, H2, H1, b"other")) is False
    assert store.add_answer(PartialRecord(task.task_id, 1, H2, H1, b"sig1")) is True
    assert [p.keyholder for p in store.answers(task.task_id, PartialRecord)] == [1, 2]
    assert store.answers(task.task_id, PartialRecord)[1] == p2
    refusal = RefusalRecord(task.task_id, 3, "cap 0.5", b"sig3")
    assert store.add_answer(refusal) is True and store.add_answer(refusal) is False
    assert store.answers(task.task_id, RefusalRecord) == [refusal]
    assert store.answered(task.task_id) == {1, 2, 3}
    assert store.answers(task.task_id + 1, PartialRecord) == []
    assert store.answers(task.task_id + 1, RefusalRecord) == []


def test_a_partial_and_a_refusal_are_kept_apart(store: Store) -> None:
    task = store.add_task(_task())
    refusal = RefusalRecord(task.task_id, 2, "cap 0.5", b"sig2")
    assert store.add_answer(PartialRecord(task.task_id, 2, H1, H2, b"sig2")) is True
    assert store.add_answer(refusal) is True
    assert store.answers(task.task_id, RefusalRecord) == [refusal]
    assert store.answered(task.task_id) == {2}


def test_certificates_are_kept_once_per_round_kind_and_keyholder(store: Store) -> None:
    lock3 = CertificateRecord(1, "lock", 3, b"lock-3")
    assert store.add_certificate(lock3) is True
    assert store.add_certificate(CertificateRecord(1, "lock", 3, b"another")) is False
    assert store.add_certificate(CertificateRecord(1, "lock", 1, b"lock-1")) is True
    assert store.add_certificate(CertificateRecord(1, "endorsement", 3, b"end-3")) is True
    assert store.add_certificate(CertificateRecord(2, "lock", 3, b"r2")) is True
    assert [c.message for c in store.certificates(1, "lock")] == [b"lock-1", b"lock-3"]
    assert store.certificates(1, "endorsement") == [
        CertificateRecord(1, "endorsement", 3, b"end-3")
    ]
    assert store.certificates(3, "lock") == []


def test_a_failed_transaction_keeps_no_certificate(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        store.add_certificate(CertificateRecord(1, "lock", 2, b"lock-2"))
        raise RuntimeError("crash before commit")
    assert store.certificates(1, "lock") == []


def test_ceremony_messages(store: Store) -> None:
    for sender in (2, 1):
        store.add_ceremony_message(
            pb.CeremonyMessage(
                kind=pb.SEED_COMMIT, sender=sender, body=bytes([sender]) * 32, epoch=1
            )
        )
    share = pb.CeremonyMessage(
        kind=pb.ENCRYPTED_SHARE, sender=1, recipient=3, body=b"sealed", epoch=1
    )
    store.add_ceremony_message(share)
    assert [m.sender for m in store.ceremony_messages(pb.SEED_COMMIT)] == [1, 2]
    assert store.ceremony_messages(pb.ENCRYPTED_SHARE, 3) == [share]
    assert store.ceremony_messages(pb.ENCRYPTED_SHARE, 2) == []
    with pytest.raises(StoreConflict):
        store.add_ceremony_message(share)


def test_ceremony_messages_are_kept_by_epoch(store: Store) -> None:
    later = pb.CeremonyMessage(kind=pb.SEED_COMMIT, sender=1, body=b"e2" * 16, epoch=2)
    store.add_ceremony_message(pb.CeremonyMessage(kind=pb.SEED_COMMIT, sender=1, epoch=1))
    store.add_ceremony_message(later)  # same kind and route, another epoch: no conflict
    assert store.ceremony_messages(pb.SEED_COMMIT, epoch=2) == [later]
    assert [m.epoch for m in store.ceremony_messages(pb.SEED_COMMIT)] == [1]
    assert store.ceremony_messages(pb.SEED_COMMIT, epoch=3) == []


def test_key_epochs(store: Store) -> None:
    assert store.key_epochs() == []
    store.put_key_epoch(KeyEpoch(3))
    store.put_key_epoch(KeyEpoch(2, first_round=4))
    store.put_key_epoch(KeyEpoch(2, first_round=4, announced=True))
    assert store.key_epochs() == [KeyEpoch(2, 4, True), KeyEpoch(3, None, False)]
    with pytest.raises(RuntimeError), store.transaction():
        store.put_key_epoch(KeyEpoch(4))
        raise RuntimeError("crash before commit")
    assert [e.epoch for e in store.key_epochs()] == [2, 3]
