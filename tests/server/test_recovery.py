"""A crash between the last partial's commit and the release never wedges a round.

Nor does one between endorsements: the agreed model is proposed again on restart, the
stored endorsements still count, and the round is released once ``t`` are stored (at
once, if they already are).

The crash is the server's own test-only fault point (:mod:`server.faults`), armed with a
``crash`` that raises instead of SIGKILL: the last partial is committed (store and audit
log), then the manager is dropped without releasing and a new one is built on the same
store, blobs and audit log, as ``secagg serve`` does after a restart. On both stores.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest

from secagg.chunk_file import ChunkFileWriter
from secagg.chunked import PartialHead
from secagg.errors import ConfigError, InvalidPartialDecryption
from secagg.proto import service_pb2 as pb
from secagg.protocol.audit_log import read_entries
from secagg.protocol.audit_verify import Report
from secagg.protocol.audit_verify import _check_entry as check_entry
from secagg.protocol.audit_verify.context import Verification
from secagg.protocol.certificates import check_endorsements
from secagg.protocol.layout import DeploymentLayout
from secagg.protocol.model_blob import decode_model
from secagg.protocol.statements import ReleaseStatement
from secagg.threshold import PartialDecryption
from server.faults import FAULT_ENV, FaultPoint, Faults
from server.state import RoundState, TaskState
from server.store import Store
from server.store.base import PartialRecord

from ._keyholders import (
    ENDORSED_RELEASE,
    answer,
    endorse_round,
    endorsement,
    lock_round,
    partial,
    run,
)
from .conftest import LENGTH, Server, make_server
from .test_decryption import _fill, _weighted_mean

WEIGHTS = {"c1": 10, "c2": 25, "c3": 7, "c4": 58}
FAMILY = ((1, 2), (1, 3), (2, 3))  # the cross-checking quorums of three key holders, t = 2


class Crash(Exception):
    """Stands for the SIGKILL of a real server."""


def _crash() -> None:
    raise Crash


def _first_partial(server: Server) -> tuple[pb.DecryptionTask, dict[str, np.ndarray]]:
    """Round 1 closed with WEIGHTS' uploads and locked by all three key holders, which stay
    live (the cross-check: all three pairs are asked); task [1, 2], answered by 1 only."""
    vectors = _fill(server, WEIGHTS)
    lock_round(server, (1, 2, 3))
    task = server.manager.task_for(1)
    assert [t.quorum for t in server.ctx.store.tasks(state=TaskState.OPEN)] == list(FAMILY)
    assert tuple(task.quorum) == (1, 2)
    header, blob = partial(server, task, 1)
    assert server.manager.submit_partial(1, header, blob) == "accepted"
    return task, vectors


def _all_but_the_last_partial(server: Server) -> tuple[pb.DecryptionTask, dict[str, np.ndarray]]:
    """Every partial of round 1's three quorums but key holder 3's for [2, 3]; that task."""
    _, vectors = _first_partial(server)
    for k in (2, 1, 3, 2):  # 2 for [1, 2], 1 and 3 for [1, 3], 2 for [2, 3]
        assert answer(server, k) == pb.TASK_DECRYPT
    last = server.manager.task_for(3)
    assert tuple(last.quorum) == (2, 3)
    return last, vectors


def _crash_after_last_partial(server: Server) -> dict[str, np.ndarray]:
    """Round 1's three quorums answered; the server 'dies' after the last partial."""
    server.ctx.faults = Faults(FaultPoint.KILL_AFTER_LAST_PARTIAL, crash=_crash)
    task, vectors = _all_but_the_last_partial(server)  # not the last partial: no crash
    header, blob = partial(server, task, 3)
    with pytest.raises(Crash):
        server.manager.submit_partial(3, header, blob)
    # the window: every partial committed and logged, nothing released
    store = server.ctx.store
    assert {r.keyholder for r in store.answers(task.task_id, PartialRecord)} == {2, 3}
    assert server.audit_types().count("partial") == 6
    assert server.audit_types()[-2:] == ["partial", "partial"]
    rnd = store.round(1)
    assert rnd is not None and rnd.state is RoundState.DECRYPTING and rnd.release is None
    return vectors


def _audit_errors(server: Server, tmp_path: Path) -> list[str]:
    """The verifier's checks of every entry (in-process: no roster file, no ceremony)."""
    entries = list(read_entries(server.audit_path))
    report = Report()
    verification = Verification(DeploymentLayout(tmp_path), server.world.roster, entries, report)
    for entry in entries[1:]:  # entry 1 names a roster file the in-process world lacks
        check_entry(verification, entry)
    no_ceremony = "entry 2 (public_key): "  # the joint key was given, not endorsed
    return [e for e in report.errors if not e.startswith(no_ceremony)]


def test_a_crash_before_the_release_is_finished_on_restart(
    server: Server, store: Store, tmp_path: Path
) -> None:
    world = server.world
    vectors = _crash_after_last_partial(server)
    del server  # the crash: nothing of the old process survives but its files
    again = make_server(world, store, tmp_path)  # same store, blobs and audit log
    assert again.manager.release(1) is None  # finished: the model waits for endorsements
    assert again.info().status == "decrypting done; 0 of 2 endorsements"
    endorse_round(again, (1, 2))
    rel = again.manager.release(1)
    assert rel is not None, "the restarted server did not finish the round"
    ReleaseStatement.from_proto("test-deployment", rel).verify(world.roster)
    _, model = decode_model(again.ctx.blobs.get(rel.model_hash), length=LENGTH)
    assert np.abs(model - _weighted_mean(vectors, WEIGHTS)).max() < 1e-6
    info = again.info()
    assert info.round == 2 and info.state == pb.COLLECTING
    assert info.global_model_hash == rel.model_hash
    assert again.audit_types()[-7:] == ["partial", "partial", *ENDORSED_RELEASE]
    assert store.tasks(state=TaskState.OPEN) == []
    assert _audit_errors(again, tmp_path) == []


def test_recovery_releases_once(server: Server, store: Store, tmp_path: Path) -> None:
    world = server.world
    _crash_after_last_partial(server)
    again = make_server(world, store, tmp_path)
    endorse_round(again, (1, 2))
    released = again.manager.release(1)
    assert released is not None
    log_before = again.audit_path.read_bytes()
    for _ in range(3):  # every tick runs the recovery; it finds the round released
        again.manager.tick()
        again.manager.releases.finish_answered()
    third = make_server(world, store, tmp_path)  # and so does a second restart
    assert third.manager.release(1) == released
    assert third.audit_path.read_bytes() == log_before
    assert third.audit_types().count("release") == 1
    assert third.info().round == 2


def _all_partials(server: Server) -> dict[str, np.ndarray]:
    """Round 1's three quorums all answered: the model awaits endorsements."""
    task, vectors = _all_but_the_last_partial(server)
    header, blob = partial(server, task, 3)
    assert server.manager.submit_partial(3, header, blob) == "accepted"
    assert server.manager.release(1) is None
    return vectors


def _released_once(server: Server, vectors: dict[str, np.ndarray]) -> pb.Release:
    """Round 1 released exactly once, with t valid endorsements of the right model."""
    rel = server.manager.release(1)
    assert rel is not None, "the restarted server did not release the endorsed model"
    roster = server.world.roster
    ReleaseStatement.from_proto("test-deployment", rel).verify(roster)
    endorsed = check_endorsements(roster, 1, rel.aggregate_digest, rel.model_hash, rel.endorsements)
    assert endorsed == {1, 2} and len(rel.endorsements) == 2
    _, model = decode_model(server.ctx.blobs.get(rel.model_hash), length=LENGTH)
    assert np.abs(model - _weighted_mean(vectors, WEIGHTS)).max() < 1e-6
    types = server.audit_types()
    assert types.count("endorsement") == 2 and types.count("release") == 1
    assert server.info().round == 2
    return rel


def test_a_restart_between_endorsements_releases_once_t_endorsed(
    server: Server, store: Store, tmp_path: Path
) -> None:
    """All partials and one of t = 2 endorsements stored, then a restart: the stored
    endorsement still counts, its key holder is not asked again, the next one releases."""
    vectors = _all_partials(server)
    endorse_round(server, (1,))
    assert server.manager.release(1) is None
    again = make_server(server.world, store, tmp_path, live=(1, 2))
    assert again.manager.release(1) is None
    assert again.info().status == "decrypting done; 1 of 2 endorsements"
    assert not again.manager.task_for(1).pending  # its endorsement is in the store
    endorse_round(again, (2,))
    _released_once(again, vectors)
    assert _audit_errors(again, tmp_path) == []


def test_a_crash_after_the_last_endorsement_is_released_on_restart(
    server: Server, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The t-th endorsement is committed, then the server dies before it releases: the
    restarted server releases on start, once, with the stored endorsements."""
    vectors = _all_partials(server)
    endorse_round(server, (1,))
    monkeypatch.setattr(server.manager.releases, "maybe_release", lambda _round: _crash())
    task = server.manager.task_for(2)
    with pytest.raises(Crash):
        server.manager.submit_endorsement(2, endorsement(server, task, 2))
    assert [c.keyholder for c in store.certificates(1, "endorsement")] == [1, 2]
    assert server.manager.release(1) is None
    again = make_server(server.world, store, tmp_path)  # nobody polls: recovery alone
    rel = _released_once(again, vectors)
    third = make_server(server.world, store, tmp_path)
    assert third.manager.release(1) == rel
    assert third.audit_types().count("release") == 1
    assert _audit_errors(third, tmp_path) == []


def test_a_partial_quorum_is_not_finished(server: Server, store: Store, tmp_path: Path) -> None:
    task, _ = _first_partial(server)
    again = make_server(server.world, store, tmp_path, live=(1, 2))
    assert again.manager.release(1) is None
    assert again.info().state == pb.DECRYPTING
    assert [t.task_id for t in store.tasks(state=TaskState.OPEN)] == [task.task_id]


def test_no_fault_point_is_armed_by_default(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="secagg.server"):
        assert Faults.from_environment({}).armed is None
        assert Faults.from_environment({FAULT_ENV: ""}).armed is None
    assert caplog.records == []
    Faults(crash=_crash).reach(FaultPoint.KILL_AFTER_LAST_PARTIAL)  # unarmed: nothing happens


def test_an_armed_fault_point_warns_and_a_typo_refuses(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="secagg.server"):
        faults = Faults.from_environment({FAULT_ENV: "kill-after-last-partial"})
    assert faults.armed is FaultPoint.KILL_AFTER_LAST_PARTIAL
    assert "TEST-ONLY FAULT POINT ARMED" in caplog.text
    with pytest.raises(ConfigError, match="names no fault point"):
        Faults.from_environment({FAULT_ENV: "kill-after-last-partials"})


def _one_row_too_many(part: PartialDecryption) -> PartialDecryption:
    residues = np.concatenate([part.residues, part.residues[:1]])
    return dataclasses.replace(part, residues=residues)


def test_a_wrong_shape_partial_is_refused_before_it_is_stored(server: Server) -> None:
    """Issue 10 item 4: a malformed partial never reaches the store, so it cannot wedge."""
    task, vectors = _first_partial(server)
    header, blob = partial(server, task, 2, mangle=_one_row_too_many)
    with pytest.raises(InvalidPartialDecryption, match="wrong shape"):
        server.manager.submit_partial(2, header, blob)
    stored = server.ctx.store.answers(task.task_id, PartialRecord)
    assert [r.keyholder for r in stored] == [1]
    assert server.audit_types().count("partial") == 1
    header, blob = partial(server, task, 2)  # the honest answer still completes the round
    assert server.manager.submit_partial(2, header, blob) == "accepted"
    assert run(server, (1, 2, 3)) == 4  # the other two quorums of the cross-check; endorse
    rel = server.manager.release(1)
    assert rel is not None
    _, model = decode_model(server.ctx.blobs.get(rel.model_hash), length=LENGTH)
    assert np.abs(model - _weighted_mean(vectors, WEIGHTS)).max() < 1e-6


def test_partials_that_cannot_be_combined_are_reported_once(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """Recovery does not crash-loop on a stored partial that ``combine`` refuses.

    The server now refuses such a partial before storing it (test above); one can still
    be in a store written by an earlier version, so it is put there directly here.
    """
    task, _ = _all_but_the_last_partial(server)
    header, chunks = partial(server, task, 3, mangle=_one_row_too_many)
    head = PartialHead.from_bytes(header.head, server.world.roster.params)
    with ChunkFileWriter(server.ctx.blobs.path(head.digest)) as out:
        for chunk in chunks:
            out.append(chunk)
        out.finish(header.head)
    with server.ctx.store.transaction():
        server.ctx.store.add_answer(
            PartialRecord(task.task_id, 3, head.digest, head.digest, header.signature)
        )
    family = ", ".join(str(t.task_id) for t in server.ctx.store.tasks(state=TaskState.OPEN))
    with caplog.at_level(logging.ERROR, logger="secagg.server"):
        for _ in range(3):
            server.manager.tick()  # neither raises nor retries
        assert not server.manager.task_for(3).pending
    assert [r.message for r in caplog.records].count(
        f"round 1: task {family} cannot be finished: partial from key holder 3 has the wrong shape"
    ) == 1
    info = server.info()
    assert info.state == pb.DECRYPTING and info.status_reason == "INVALID_PARTIAL_DECRYPTION"
    assert server.manager.release(1) is None
