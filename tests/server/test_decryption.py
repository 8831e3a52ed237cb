"""Closing, decryption tasks, partials, refusals and the release, in-process.

Key holders are played by the test (:mod:`tests.server._keyholders`: they lock the round,
decrypt with the real threshold decryption, endorse the model); liveness is an injected
clock. The server's policy check of the closing set is tested here too: a set that
breaks the weight-share cap keeps the round collecting and creates no task.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from secagg.errors import PermissionDenied, PolicyViolation, SignatureInvalid
from secagg.proto import service_pb2 as pb
from secagg.protocol.certificates import check_endorsements
from secagg.protocol.model_blob import decode_model
from secagg.protocol.statements import ReleaseStatement
from server.state import TaskState
from server.store import Store
from server.store.base import PartialRecord

from ._keyholders import (
    ENDORSED_RELEASE,
    endorse_round,
    fall_silent,
    lock_round,
    partial,
    refusal,
    run,
)
from .conftest import CLIENTS, LENGTH, Server, World, make_server
from .test_uploads import send, snapshot


def _fill(server: Server, weights: dict[str, int]) -> dict[str, np.ndarray]:
    vectors = {}
    for client, weight in weights.items():
        header, blob, vector = server.world.upload(client, server.info(), weight=weight)
        send(server, client, header, blob)
        vectors[client] = vector
    return vectors


def _weighted_mean(vectors: dict[str, np.ndarray], weights: dict[str, int]) -> np.ndarray:
    return np.average(
        np.stack([vectors[c] for c in weights]), axis=0, weights=list(weights.values())
    )


def test_full_round_releases_the_weighted_mean(server: Server) -> None:
    weights = {"c1": 10, "c2": 25, "c3": 7, "c4": 58}
    vectors = _fill(server, weights)
    info = server.info()  # everyone uploaded: closed, but no key holder is live yet
    assert info.state == pb.DECRYPTING
    assert info.status.startswith(
        "QuorumNotMet: 0 of 3 key holders reachable; 3 must lock the round, threshold 2"
    )
    assert info.status_reason == "QUORUM_NOT_MET"
    for k in (1, 2, 3):
        server.manager.seen(k)
    lock_round(server, (1, 2, 3))  # ceil((3 + 2) / 2) = 3 locks before any decryption
    task = server.manager.task_for(1)
    assert task.pending and list(task.quorum) == [1, 2] and len(task.contributions) == 4
    assert task.kind == pb.TASK_DECRYPT and [lock.keyholder for lock in task.locks] == [1, 2, 3]
    # three live key holders, threshold 2: every pair is asked (the cross-check)
    assert server.info().status == (
        "decrypting with key holders [1, 2], [1, 3], [2, 3] (cross-checked)"
    )
    assert list(server.manager.task_for(3).quorum) == [1, 3]
    for k in (1, 2):
        header, blob = partial(server, task, k)
        assert server.manager.submit_partial(k, header, blob) == "accepted"
    assert server.manager.release(1) is None  # not before every quorum agreed
    for quorum in ((1, 3), (2, 3)):
        for k in quorum:
            other = server.manager.task_for(k)
            assert tuple(other.quorum) == quorum
            header, blob = partial(server, other, k)
            assert server.manager.submit_partial(k, header, blob) == "accepted"
    assert server.manager.release(1) is None  # nor before t key holders endorsed the model
    assert server.info().status == "decrypting done; 0 of 2 endorsements"
    endorse_round(server, (1, 2))
    rel = server.manager.release(1)
    assert rel is not None and list(rel.quorum) == [1, 2]
    assert list(rel.checked_quorums) == [1, 2, 1, 3, 2, 3]
    ReleaseStatement.from_proto("test-deployment", rel).verify(server.world.roster)
    endorsed = check_endorsements(
        server.world.roster, 1, rel.aggregate_digest, rel.model_hash, rel.endorsements
    )
    assert endorsed == {1, 2}
    _, model = decode_model(server.ctx.blobs.get(rel.model_hash), length=LENGTH)
    assert np.abs(model - _weighted_mean(vectors, weights)).max() < 1e-6
    info = server.info()
    assert (
        info.round == 2 and info.state == pb.COLLECTING and info.global_model_hash == rel.model_hash
    )
    assert server.audit_types()[-6:] == ["partial", *ENDORSED_RELEASE]


def test_a_new_quorum_replaces_a_silent_key_holder(
    world5: World, store: Store, tmp_path: Path
) -> None:
    """Five key holders, t = 2: four lock, 4 goes away, 1, 2, 3 are asked the three pairs;
    when 1 falls silent before it answered, 5 is live and quorums with 5 replace 1's."""
    server = make_server(world5, store, tmp_path)
    _fill(server, {c: 10 for c in CLIENTS})
    lock_round(server, (1, 2, 3, 4))
    fall_silent(server, live=(1, 2, 3))  # 2t - 1 = 3 live: enough to cross-check
    first = server.manager.task_for(2)
    assert list(first.quorum) == [1, 2]
    header, blob = partial(server, first, 2)
    server.manager.submit_partial(2, header, blob)
    fall_silent(server, live=(2, 3, 5))  # key holder 1 no longer polls; 5 does
    second = server.manager.task_for(5)
    assert list(second.quorum) == [2, 5] and second.task_id != first.task_id
    assert store.task(first.task_id).state is TaskState.SUPERSEDED  # type: ignore[union-attr]
    assert server.info().status == (
        "decrypting with key holders [2, 3], [2, 5], [3, 5] (cross-checked)"
    )
    assert run(server, (2, 3, 5)) == 6  # [2, 3] kept; [2, 5] and [3, 5] replace [1, 2], [1, 3]
    rel = server.manager.release(1)
    assert rel is not None and list(rel.checked_quorums) == [2, 3, 2, 5, 3, 5]


def test_the_release_survives_a_restart_between_partials(
    server: Server, store: Store, tmp_path: Path
) -> None:
    _fill(server, {c: 10 for c in CLIENTS})
    lock_round(server, (1, 2, 3))
    task = server.manager.task_for(1)
    header, blob = partial(server, task, 1)
    server.manager.submit_partial(1, header, blob)
    again = make_server(server.world, store, tmp_path, live=(1, 2, 3))  # all re-read from disk
    header, blob = partial(again, task, 2)
    again.manager.submit_partial(2, header, blob)
    assert run(again, (1, 2, 3)) == 4  # [1, 3] and [2, 3]: [1, 2] is not asked again
    assert again.manager.release(1) is not None and again.info().round == 2


def test_partial_guards(server: Server) -> None:
    _fill(server, {c: 10 for c in CLIENTS})
    lock_round(server, (1, 2, 3))
    task = server.manager.task_for(1)
    header, blob = partial(server, task, 1)
    with pytest.raises(PermissionDenied):
        server.manager.submit_partial(2, header, blob)  # another key holder's partial
    header, blob = partial(server, task, 1, tamper=True)
    with pytest.raises(SignatureInvalid):
        server.manager.submit_partial(1, header, blob)
    outsider = pb.DecryptionTask()
    outsider.CopyFrom(task)
    outsider.quorum[:] = [1, 3]
    header, blob = partial(server, outsider, 3)
    with pytest.raises(PermissionDenied, match="not in the task's quorum"):
        server.manager.submit_partial(3, header, blob)
    assert server.ctx.store.answers(task.task_id, PartialRecord) == []


def test_a_refusal_is_the_round_status(server: Server) -> None:
    _fill(server, {c: 10 for c in CLIENTS})
    lock_round(server, (1, 2, 3))
    fall_silent(server, live=(1, 2))  # key holder 3 locked, then went away
    task = server.manager.task_for(1)
    server.manager.refuse(1, refusal(server, task.round, 1, "it looks wrong", task.task_id))
    info = server.info()
    assert info.status == "PolicyViolation: key holder 1 refused: it looks wrong"
    assert info.status_reason == "KEYHOLDER_REFUSED"
    assert server.manager.task_for(1).pending is False
    assert server.manager.release(1) is None


def test_weight_share_violation_keeps_the_round_collecting(
    world: World, store: Store, tmp_path: Path
) -> None:
    server = make_server(world.with_policy(max_weight_share=0.5), store, tmp_path)
    for k in (1, 2, 3):
        server.manager.seen(k)
    _fill(server, {"c1": 100, "c2": 10, "c3": 10, "c4": 10})
    info = server.info()
    assert info.state == pb.COLLECTING and info.accepted_uploads == 4
    assert info.status == (
        "PolicyViolation: WEIGHT_SHARE_EXCEEDED: a client holds 100/130 of the weight; cap 0.5"
    )
    assert info.status_reason == "WEIGHT_SHARE_EXCEEDED"
    before = snapshot(server)
    server.manager.tick()
    assert snapshot(server) == before  # nothing else happens, however often it ticks
    assert store.tasks() == [] and not server.manager.task_for(1).pending
    assert "aggregate" not in server.audit_types()
    # the operator may still ask: the server passes it on unchecked, key holders decide
    task_id = server.manager.admin_task(1, list(CLIENTS))
    operator_task = server.manager.task_for(1)
    assert operator_task.task_id == task_id and len(operator_task.contributions) == 4
    assert server.info().state == pb.COLLECTING


def test_operator_requests(server: Server) -> None:
    _fill(server, {"c1": 10, "c2": 10})
    with pytest.raises(PolicyViolation, match="QuorumNotMet"):
        server.manager.admin_task(1, ["c1"])
    with pytest.raises(PolicyViolation, match="no uploads"):
        server.manager.admin_task(1, ["c9"])
