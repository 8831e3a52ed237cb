"""Locks and endorsements on the server side (issue 10: one aggregate per round, co-signed
releases), from the attacker's side first.

A server that is honest about locks and endorsements never hands out a decryption task
before ``ceil((n + t) / 2)`` key holders locked the round, puts the lock certificate in
every decryption task, releases only with ``t`` endorsements of the model its quorums
agreed on, and stores and logs no lock, endorsement or refusal it could not show to a
verifier: one for another round or aggregate, badly signed, or sent in another key
holder's name. Key holders are played by :mod:`tests.server._keyholders`; both stores.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from secagg.errors import PermissionDenied, PolicyViolation, SecAggError, SignatureInvalid
from secagg.proto import service_pb2 as pb
from secagg.protocol.certificates import check_endorsements, check_locks
from secagg.protocol.statements import EndorsementStatement, LockStatement, Signed
from server.state import TaskState
from server.store import Store

from ._keyholders import endorse_round, endorsement, flip, lock, lock_round, partial, refusal, run
from .conftest import CLIENTS, DEPLOYMENT, Server, World, make_server
from .test_decryption import _fill

OTHER = hashlib.sha256(b"another aggregate, or a trap model").digest()


def _closed(server: Server, *live: int) -> None:
    """Round 1 closed over every client's upload; ``live`` key holders polled."""
    _fill(server, {c: 10 for c in CLIENTS})
    for k in live:
        server.manager.seen(k)


def _state(server: Server) -> tuple[Any, ...]:
    """What a refused lock, endorsement or refusal must leave unchanged."""
    store = server.ctx.store
    return (
        store.certificates(1, "lock"),
        store.certificates(1, "endorsement"),
        [t.task_id for t in store.tasks()],
        server.ctx.audit.size,
        server.info().status,
    )


def _refused(
    server: Server, call: Callable[[], object], error: type[SecAggError], match: str | None = None
) -> None:
    before = _state(server)
    with pytest.raises(error, match=match):
        call()
    assert _state(server) == before


def _signed_lock(server: Server, keyholder: int, /, **changes: Any) -> pb.Lock:
    """A lock of round 1's aggregate signed by ``keyholder``, with ``changes`` signed too."""
    rnd = server.ctx.store.round(1)
    assert rnd is not None
    statement = LockStatement(DEPLOYMENT, 1, keyholder, rnd.aggregate_digest or OTHER)
    statement = dataclasses.replace(statement, **changes)
    key = server.world.keyholder_keys[keyholder]
    return statement.to_proto(Signed.create(statement, key).signature)


def _partials(server: Server, keyholders: tuple[int, ...]) -> None:
    """Every key holder in ``keyholders`` answers every decryption task it is given."""
    progress = True
    while progress:
        progress = False
        for k in keyholders:
            task = server.manager.task_for(k)
            if task.pending and task.kind == pb.TASK_DECRYPT:
                header, blob = partial(server, task, k)
                server.manager.submit_partial(k, header, blob)
                progress = True


def _endorse_task(server: Server, keyholder: int) -> pb.DecryptionTask:
    task = server.manager.task_for(keyholder)
    assert task.pending and task.kind == pb.TASK_ENDORSE, task
    return task


# ---------------------------------------------------------------------------- locks
def test_no_decryption_task_is_handed_out_before_the_round_is_locked(server: Server) -> None:
    _closed(server, 1, 2, 3)
    first = server.manager.task_for(1)
    assert first.pending and first.kind == pb.TASK_LOCK and first.task_id == 0
    assert len(first.contributions) == 4 and not first.quorum and not first.locks
    assert server.info().status == "decrypting after 0 of 3 key holders lock it"
    server.manager.submit_lock(1, lock(server, first, 1))
    assert not server.manager.task_for(1).pending  # locked; nothing to decrypt yet
    lock_round(server, (2,))
    # two locks are a decryption quorum (t = 2) but not a lock certificate (3 of 3)
    assert server.ctx.store.tasks() == []
    assert "decryption_request" not in server.audit_types()
    assert server.info().status == "decrypting after 2 of 3 key holders lock it"
    lock_round(server, (3,))
    assert len(server.ctx.store.tasks(state=TaskState.OPEN)) == 3
    roster = server.world.roster
    for k in (1, 2, 3):
        task = server.manager.task_for(k)
        assert task.kind == pb.TASK_DECRYPT and task.task_id != 0
        assert check_locks(roster, 1, task.aggregate_digest, task.locks) == {1, 2, 3}
    types = server.audit_types()
    assert types.count("lock") == 3
    assert types.index("decryption_request") > max(i for i, t in enumerate(types) if t == "lock")


@pytest.mark.parametrize(
    ("shape", "live", "status"),
    [
        ("world", (1, 2), "2 of 3 key holders reachable; 3 must lock the round, threshold 2"),
        ("world5", (1, 2, 3), "3 of 5 key holders reachable; 4 must lock the round, threshold 2"),
    ],
)
def test_too_few_live_to_lock_is_quorum_not_met_naming_the_lock_size(
    request: pytest.FixtureRequest,
    store: Store,
    tmp_path: Path,
    shape: str,
    live: tuple[int, ...],
    status: str,
) -> None:
    world: World = request.getfixturevalue(shape)
    server = make_server(world, store, tmp_path)
    _closed(server, *live)
    lock_round(server, live)  # enough to decrypt (t = 2), not to lock
    info = server.info()
    assert info.status == f"QuorumNotMet: {status}. Nothing released."
    assert info.status_reason == "QUORUM_NOT_MET"
    assert store.tasks() == [] and not any(server.manager.task_for(k).pending for k in live)
    late = len(live) + 1
    lock_round(server, (late,))  # one more key holder comes back and locks
    assert store.tasks(state=TaskState.OPEN)
    assert server.manager.task_for(late).kind == pb.TASK_DECRYPT


def test_a_lock_of_anything_but_the_callers_lock_of_this_round_is_refused(
    server: Server,
) -> None:
    collecting = _signed_lock(server, 1)  # round 1 still collects: no aggregate to lock
    _refused(server, lambda: server.manager.submit_lock(1, collecting), PolicyViolation)
    _closed(server, 1, 2, 3)
    submit = server.manager.submit_lock
    forged = _signed_lock(server, 2, keyholder=1)  # key holder 2's key, key holder 1's name
    tampered = _signed_lock(server, 1)
    tampered.signature = flip(tampered.signature)
    for bad, error in [
        (_signed_lock(server, 1, aggregate_digest=OTHER), PolicyViolation),
        (_signed_lock(server, 1, round=2), PolicyViolation),
        (_signed_lock(server, 1, deployment_id="another"), SignatureInvalid),
        (tampered, SignatureInvalid),
        (forged, SignatureInvalid),
    ]:
        _refused(server, functools.partial(submit, 1, bad), error)
    # a valid lock sent by someone else than its key holder
    _refused(server, lambda: submit(2, _signed_lock(server, 1)), PermissionDenied)
    assert "lock" not in server.audit_types()
    # the honest lock is still taken, once however often it is sent
    own = _signed_lock(server, 1)
    submit(1, own)
    submit(1, own)
    assert [c.keyholder for c in server.ctx.store.certificates(1, "lock")] == [1]
    assert server.audit_types().count("lock") == 1


# ---------------------------------------------------------------------------- endorsements
def test_nothing_is_released_before_t_endorsements(server: Server) -> None:
    _closed(server, 1, 2, 3)
    lock_round(server, (1, 2, 3))
    _partials(server, (1, 2, 3))
    assert server.manager.release(1) is None
    assert server.info().status == "decrypting done; 0 of 2 endorsements"
    task = _endorse_task(server, 1)
    roster = server.world.roster
    assert check_locks(roster, 1, task.aggregate_digest, task.locks) == {1, 2, 3}
    assert [tuple(q.quorum) for q in task.partials] == [(1, 2), (1, 3), (2, 3)]
    assert all(len(q.partial_hashes) == len(q.partial_signatures) == 2 for q in task.partials)
    mine = endorsement(server, task, 1)
    assert mine.model_hash == task.model_hash  # the key holder's own combination agrees
    # an endorsement sent in another key holder's name is refused
    _refused(server, lambda: server.manager.submit_endorsement(2, mine), PermissionDenied)
    for _ in range(2):  # one endorsement, however often it is sent, is one
        server.manager.submit_endorsement(1, mine)
    assert server.manager.release(1) is None
    assert server.info().status == "decrypting done; 1 of 2 endorsements"
    assert server.audit_types().count("endorsement") == 1
    assert not server.manager.task_for(1).pending  # asked once
    endorse_round(server, (2,))
    rel = server.manager.release(1)
    assert rel is not None and rel.model_hash == task.model_hash
    endorsed = check_endorsements(roster, 1, rel.aggregate_digest, rel.model_hash, rel.endorsements)
    assert endorsed == {1, 2}
    assert server.audit_types()[-3:] == ["release", "checkpoint", "round_open"]
    # too late: the round is released; a third endorsement changes nothing
    late = endorsement(server, task, 3)
    _refused(server, lambda: server.manager.submit_endorsement(3, late), PolicyViolation)


def _endorsed(server: Server, keyholder: int, /, **changes: Any) -> pb.Endorsement:
    """``keyholder``'s honest endorsement of the candidate, with ``changes`` signed too."""
    honest = endorsement(server, _endorse_task(server, keyholder), keyholder)
    statement = EndorsementStatement.from_proto(DEPLOYMENT, honest).statement
    statement = dataclasses.replace(statement, **changes)
    key = server.world.keyholder_keys[keyholder]
    return statement.to_proto(Signed.create(statement, key).signature)


def test_an_endorsement_of_another_model_or_aggregate_is_refused(server: Server) -> None:
    _closed(server, 1, 2, 3)
    lock_round(server, (1, 2, 3))
    # before the quorums agreed there is no model to endorse
    assert server.manager.task_for(1).kind == pb.TASK_DECRYPT
    rnd = server.ctx.store.round(1)
    assert rnd is not None and rnd.aggregate_digest is not None
    early = EndorsementStatement(DEPLOYMENT, 1, 1, rnd.aggregate_digest, OTHER, (1, 2))
    early_msg = early.to_proto(Signed.create(early, server.world.keyholder_keys[1]).signature)
    submit = server.manager.submit_endorsement
    _refused(server, lambda: submit(1, early_msg), PolicyViolation, "another model")
    _partials(server, (1, 2, 3))
    tampered = _endorsed(server, 1)
    tampered.signature = flip(tampered.signature)
    forged = _endorsed(server, 2, keyholder=1)
    cases: list[tuple[pb.Endorsement, type[SecAggError], str | None]] = [
        (_endorsed(server, 1, model_hash=OTHER), PolicyViolation, "another model"),
        (_endorsed(server, 1, aggregate_digest=OTHER), PolicyViolation, "does not answer"),
        (_endorsed(server, 1, round=2), PolicyViolation, "does not answer"),
        (tampered, SignatureInvalid, None),
        (forged, SignatureInvalid, None),
    ]
    for bad, error, match in cases:
        _refused(server, functools.partial(submit, 1, bad), error, match)
    assert "endorsement" not in server.audit_types()
    endorse_round(server, (1, 2))  # the honest ones still count
    assert server.manager.release(1) is not None


# ---------------------------------------------------------------------------- refusals
def _refusal_entries(server: Server) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in server.audit_path.read_text().splitlines()]
    return [e["data"] for e in lines if e["type"] == "refusal"]


def _refuse_lock(server: Server) -> str:
    """Key holder 1 refuses to lock round 1 (after forged refusals were turned away);
    the status it sets."""
    _closed(server, 1, 2, 3)
    task = server.manager.task_for(1)
    assert task.kind == pb.TASK_LOCK
    reason = "TOO_FEW_CONTRIBUTORS: 1 distinct contributors, at least 2 required"
    no = refusal(server, 1, 1, reason, 0)
    refuse = server.manager.refuse
    tampered = refusal(server, 1, 1, reason, 0)
    tampered.signature = flip(tampered.signature)
    _refused(server, lambda: refuse(2, no), PermissionDenied)
    _refused(server, lambda: refuse(1, tampered), SignatureInvalid)
    _refused(server, lambda: refuse(1, refusal(server, 2, 1, reason, 0)), PolicyViolation)
    refuse(1, no)
    (entry,) = _refusal_entries(server)
    assert (entry["task_id"], entry["keyholder"], entry["reason"]) == (0, 1, reason)
    return f"PolicyViolation: key holder 1 refused: {reason}"


def test_a_lock_refusal_is_logged_and_becomes_the_status(server: Server) -> None:
    status = _refuse_lock(server)
    info = server.info()
    assert info.status == status and info.status_reason == "KEYHOLDER_REFUSED"
    assert not server.manager.task_for(1).pending  # not asked to lock again
    lock_round(server, (2, 3))  # the others lock; without 1 the round is never locked
    assert server.ctx.store.tasks() == []
    assert server.manager.release(1) is None


def test_a_lock_refusal_stays_the_status_while_the_round_waits_for_locks(
    server: Server,
) -> None:
    """Like a refused decryption task's, the refusal explains why the round is stuck."""
    status = _refuse_lock(server)
    lock_round(server, (2, 3))
    server.manager.tick()
    assert server.info().status == status


def test_an_endorsement_refusal_is_logged_and_the_others_still_release(
    server: Server,
) -> None:
    _closed(server, 1, 2, 3)
    lock_round(server, (1, 2, 3))
    _partials(server, (1, 2, 3))
    _endorse_task(server, 1)
    reason = "PARTIALS_DISAGREE: 3 quorums decrypt the aggregate to 2 different models"
    server.manager.refuse(1, refusal(server, 1, 1, reason, 0))
    info = server.info()
    assert info.status == f"PolicyViolation: key holder 1 refused: {reason}"
    assert info.status_reason == "KEYHOLDER_REFUSED"
    (entry,) = _refusal_entries(server)
    assert (entry["task_id"], entry["keyholder"]) == (0, 1)
    assert not server.manager.task_for(1).pending  # not asked to endorse again
    assert server.manager.release(1) is None
    endorse_round(server, (2, 3))
    rel = server.manager.release(1)
    assert rel is not None
    roster = server.world.roster
    endorsed = check_endorsements(roster, 1, rel.aggregate_digest, rel.model_hash, rel.endorsements)
    assert endorsed == {2, 3}


def test_every_round_is_locked_again(server: Server) -> None:
    """Round 2 needs its own locks: round 1's certificate does not carry over."""
    _closed(server)
    assert run(server, (1, 2, 3)) == 6
    assert server.info().round == 2
    _fill(server, {c: 10 for c in CLIENTS})
    task = server.manager.task_for(1)
    assert task.kind == pb.TASK_LOCK and task.round == 2
    assert server.ctx.store.tasks(state=TaskState.OPEN) == []
