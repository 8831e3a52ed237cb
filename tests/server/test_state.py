"""The pure state machine, stepped with an injected clock (no store, no crypto)."""

from __future__ import annotations

import os

import pytest

from secagg.errors import MixedGlobalModels, WrongRound
from secagg.protocol.statements import UploadStatement
from secagg.protocol.status import RoundStatus, StatusKind
from server.state import (
    Round,
    RoundState,
    Task,
    TaskState,
    active_clients,
    after_release,
    check_accepting,
    choose_quorum,
    closed,
    open_round,
    quorum_complete,
    quorum_lost,
    released,
    review_collecting,
)

from .conftest import CLIENTS, DEPLOYMENT, World

MODEL = bytes([7]) * 32


def _uploads(weights: dict[str, int]) -> list[UploadStatement]:
    return [
        UploadStatement(DEPLOYMENT, 1, c, os.urandom(16), MODEL, os.urandom(32), w, 0.1)
        for c, w in weights.items()
    ]


def test_open_round_sets_the_deadline_from_the_clock(world: World) -> None:
    rnd = open_round(1, MODEL, policy=world.roster.policy, now=50.0)
    assert rnd.state is RoundState.COLLECTING and str(rnd.status) == "collecting"
    assert rnd.deadline == 50.0 + world.roster.policy.round_timeout_seconds


def test_not_due_before_the_deadline(world: World) -> None:
    rnd = open_round(1, MODEL, policy=world.roster.policy, now=0.0)
    ups = _uploads({"c1": 10, "c2": 10})
    verdict = review_collecting(
        rnd,
        ups,
        active=CLIENTS,
        policy=world.roster.policy,
        params=world.roster.params,
        initial_model_hash=MODEL,
        now=1.0,
    )
    assert not verdict.close and verdict.status == rnd.status


def test_deadline_with_too_few_contributors_waits(world: World) -> None:
    policy = world.roster.policy
    rnd = open_round(1, MODEL, policy=policy, now=0.0)
    late = rnd.deadline + 0.01
    verdict = review_collecting(
        rnd,
        _uploads({"c1": 5}),
        active=CLIENTS,
        policy=policy,
        params=world.roster.params,
        initial_model_hash=MODEL,
        now=late,
    )
    assert not verdict.close
    assert str(verdict.status) == "waiting: 1 of at least 2 contributors"
    assert verdict.status.reason == "TOO_FEW_CONTRIBUTORS"


def test_deadline_with_min_contributors_closes(world: World) -> None:
    policy = world.roster.policy
    rnd = open_round(1, MODEL, policy=policy, now=0.0)
    ups = _uploads({"c1": 5, "c2": 7})
    early = review_collecting(
        rnd,
        ups,
        active=CLIENTS,
        policy=policy,
        params=world.roster.params,
        initial_model_hash=MODEL,
        now=rnd.deadline - 1,
    )
    due = review_collecting(
        rnd,
        ups,
        active=CLIENTS,
        policy=policy,
        params=world.roster.params,
        initial_model_hash=MODEL,
        now=rnd.deadline,
    )
    assert not early.close and due.close
    assert str(due.status) == "decrypting 2 uploads"


def test_everyone_uploaded_closes_before_the_deadline(world: World) -> None:
    policy = world.roster.policy
    rnd = open_round(1, MODEL, policy=policy, now=0.0)
    ups = _uploads({c: 10 for c in CLIENTS})
    verdict = review_collecting(
        rnd,
        ups,
        active=CLIENTS,
        policy=policy,
        params=world.roster.params,
        initial_model_hash=MODEL,
        now=1.0,
    )
    assert verdict.close


def test_withdrawn_clients_are_not_waited_for(world: World) -> None:
    policy = world.roster.policy
    rnd = open_round(1, MODEL, policy=policy, now=0.0)
    active = active_clients(CLIENTS, withdrawn=["c3", "c4", "c1"], uploaded=["c1", "c2"])
    assert active == {"c1", "c2"}  # c1 withdrew after uploading: still counted
    ups = _uploads({"c1": 10, "c2": 10})
    verdict = review_collecting(
        rnd,
        ups,
        active=active,
        policy=policy,
        params=world.roster.params,
        initial_model_hash=MODEL,
        now=1.0,
    )
    assert verdict.close


def test_weight_share_violation_keeps_collecting_with_the_reason(world: World) -> None:
    capped = world.with_policy(max_weight_share=0.5).roster
    rnd = open_round(1, MODEL, policy=capped.policy, now=0.0)
    ups = _uploads({"c1": 100, "c2": 10, "c3": 10, "c4": 10})
    verdict = review_collecting(
        rnd,
        ups,
        active=CLIENTS,
        policy=capped.policy,
        params=capped.params,
        initial_model_hash=MODEL,
        now=1.0,
    )
    assert not verdict.close
    assert verdict.status.kind is StatusKind.POLICY_VIOLATION
    assert verdict.status.reason == "WEIGHT_SHARE_EXCEEDED"
    assert str(verdict.status) == (
        "PolicyViolation: WEIGHT_SHARE_EXCEEDED: a client holds 100/130 of the weight; cap 0.5"
    )


def test_close_release_and_finish(world: World) -> None:
    policy = world.roster.policy  # 2 rounds
    rnd = open_round(1, MODEL, policy=policy, now=0.0)
    dec = closed(rnd, aggregate_hash=MODEL, aggregate_digest=MODEL, count=2)
    assert dec.state is RoundState.DECRYPTING and str(dec.status) == "decrypting 2 uploads"
    with pytest.raises(WrongRound):
        closed(dec, aggregate_hash=MODEL, aggregate_digest=MODEL, count=2)
    rel = released(dec, release=b"r", model_hash=bytes(32))
    assert rel.state is RoundState.RELEASED and str(rel.status) == "released model " + "00" * 8
    second = after_release(rel, b"m" * 32, policy=policy, now=10.0)
    assert second.number == 2 and second.state is RoundState.COLLECTING
    assert second.global_model_hash == b"m" * 32 and second.deadline > 10.0
    done = after_release(_released(second), b"n" * 32, policy=policy, now=20.0)
    assert done.number == 3 and done.state is RoundState.FINISHED
    assert str(done.status) == "all rounds done" and done.global_model_hash == b"n" * 32


def _released(rnd: Round) -> Round:
    dec = closed(rnd, aggregate_hash=MODEL, aggregate_digest=MODEL, count=1)
    return released(dec, release=b"r", model_hash=MODEL)


def test_check_accepting(world: World) -> None:
    rnd = open_round(1, MODEL, policy=world.roster.policy, now=0.0)
    check_accepting(rnd, round_number=1, global_model_hash=MODEL)
    with pytest.raises(WrongRound, match="round 2 is not collecting"):
        check_accepting(rnd, round_number=2, global_model_hash=MODEL)
    with pytest.raises(WrongRound):
        check_accepting(None, round_number=1, global_model_hash=MODEL)
    with pytest.raises(MixedGlobalModels, match="another global model"):
        check_accepting(rnd, round_number=1, global_model_hash=bytes(32))


def test_quorum_choice_and_loss() -> None:
    assert choose_quorum([3, 1, 2], 2) == (1, 2)
    assert choose_quorum([3], 2) is None
    task = Task(1, 1, MODEL, MODEL, (), (1, 2), False, TaskState.OPEN, 0.0)
    assert not quorum_lost(task, answered=[], live=[1, 2])
    assert quorum_lost(task, answered=[], live=[2, 3])
    assert not quorum_lost(task, answered=[1], live=[2, 3])  # 1 already answered
    assert quorum_complete(task, [1, 2]) and not quorum_complete(task, [2])


def test_status_strings() -> None:
    assert str(RoundStatus.ceremony()) == "key ceremony in progress"
    assert str(RoundStatus.quorum_not_met(1, 3, 2)) == (
        "QuorumNotMet: 1 of 3 key holders reachable; threshold 2. Nothing released."
    )
    assert str(RoundStatus.refused(2, "why")) == "PolicyViolation: key holder 2 refused: why"
    assert str(RoundStatus.decrypting_with((2, 3))) == "decrypting with key holders [2, 3]"
    assert str(RoundStatus.quorum_not_met(2, 3, 2, lock=3)) == (
        "QuorumNotMet: 2 of 3 key holders reachable; 3 must lock the round, threshold 2."
        " Nothing released."
    )
    assert str(RoundStatus.locking(1, 4)) == "decrypting after 1 of 4 key holders lock it"
    assert str(RoundStatus.endorsing(1, 2)) == "decrypting done; 1 of 2 endorsements"
