"""Wrong partials are caught before anything is released (issue 10, item 4).

A 5-key-holder world (threshold 2), in-process on both stores, key holders played by the
test (:mod:`tests.server._keyholders`) with the real threshold decryption; four of them
lock each round first (``ceil((5 + 2) / 2)``) and two endorse the agreed model. The
attacker is a key holder that adds ``Δ = floor(q / t)`` to one coefficient of its partial
in every data prime's residue row and signs the result: a validly signed, well-shaped,
wrong partial that shifts one model coordinate. Every quorum of the cross-checking
family must answer and agree before the server proposes the model for endorsement; a
disagreement stops the release, is logged with the signed partials, and names the
deviator when the live key holders allow it. With fewer than ``2t - 1`` live key holders
nothing is decrypted: key holders endorse only a fully cross-checked model (also with
threshold 3, and in the 3-key-holder world).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

import secagg
from secagg.proto import service_pb2 as pb
from secagg.protocol.audit_log import read_entries
from secagg.protocol.audit_verify import Report
from secagg.protocol.audit_verify import _check_entry as check_entry
from secagg.protocol.audit_verify.context import Verification
from secagg.protocol.certificates import check_endorsements
from secagg.protocol.layout import DeploymentLayout
from secagg.protocol.model_blob import decode_model
from secagg.protocol.statements import ReleaseStatement, Signed
from secagg.threshold import PartialDecryption
from server.faults import FaultPoint, Faults
from server.state import TaskState
from server.store import Store

from ._keyholders import Mangle, fall_silent, lock_round, run
from .conftest import DEPLOYMENT, LENGTH, Server, World, make_server
from .test_decryption import _fill, _weighted_mean
from .test_recovery import Crash, _audit_errors, _crash

WEIGHTS = {"c1": 10, "c2": 25, "c3": 7, "c4": 58}


def shifted(params: secagg.Parameters) -> Mangle:
    """The attack: ``+Δ`` on coefficient 0 of the first ciphertext, in every data prime."""
    primes = params.coeff_modulus[: -1 or None]
    q = int(np.prod([int(p) for p in primes], dtype=object))
    delta = q // (1 << params.plain_modulus_bits)

    def mangle(part: PartialDecryption) -> PartialDecryption:
        residues = part.residues.copy()
        for j in range(residues.shape[1]):
            p = int(primes[j])
            residues[0, j, 0] = (int(residues[0, j, 0]) + delta % p) % p
        return dataclasses.replace(part, residues=residues)

    return mangle


def _entries(server: Server, kind: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in server.audit_path.read_text().splitlines()]
    return [e["data"] for e in lines if e["type"] == kind]


def test_honest_key_holders_release_after_every_quorum_agrees(
    world5: World, store: Store, tmp_path: Path
) -> None:
    server = make_server(world5, store, tmp_path)
    vectors = _fill(server, WEIGHTS)
    assert run(server, (1, 2, 3, 4, 5), {}) == 20  # all 10 pairs, two partials each
    rel = server.manager.release(1)
    assert rel is not None
    statement = ReleaseStatement.from_proto(DEPLOYMENT, rel).verify(world5.roster)
    pairs = [(a, b) for a in range(1, 6) for b in range(a + 1, 6)]
    assert statement.checked_quorums == tuple(i for q in pairs for i in q)
    _, model = decode_model(server.ctx.blobs.get(rel.model_hash), length=LENGTH)
    assert np.abs(model - _weighted_mean(vectors, WEIGHTS)).max() < 1e-6
    assert server.info().round == 2
    assert _entries(server, "release")[0]["checked_quorums"] == list(statement.checked_quorums)
    # four key holders locked the round; the first two to poll afterwards endorsed it,
    # each after combining all ten quorums itself
    assert [e["keyholder"] for e in _entries(server, "lock")] == [1, 2, 3, 4]
    endorsed = check_endorsements(
        world5.roster, 1, rel.aggregate_digest, rel.model_hash, rel.endorsements
    )
    assert len(endorsed) == 2
    assert all(tuple(e.checked_quorums) == statement.checked_quorums for e in rel.endorsements)
    assert _audit_errors(server, tmp_path) == []


@pytest.mark.parametrize("live", [(1, 2, 3, 4), (1, 2, 3, 4, 5)])
def test_a_shifted_partial_stops_the_release_and_names_its_sender(
    world5: World, store: Store, tmp_path: Path, live: tuple[int, ...]
) -> None:
    server = make_server(world5, store, tmp_path)
    _fill(server, WEIGHTS)
    run(server, live, {3: shifted(world5.roster.params)})
    assert server.manager.release(1) is None
    info = server.info()
    assert info.round == 1 and info.status_reason == "PARTIALS_DISAGREE", info
    assert "key holder 3" in info.status, info
    (entry,) = _entries(server, "disagreement")
    assert entry["keyholder"] == 3
    quorums = [tuple(q) for q in np.reshape(entry["quorums"], (-1, 2)).tolist()]
    assert quorums == [(a, b) for a in live for b in live if a < b]
    assert len(entry["task_ids"]) == len(entry["model_hashes"]) == len(quorums)
    assert len(set(entry["model_hashes"])) == 2  # the honest model and the shifted one
    # every disagreeing partial is in the log, signed; the verifier accepts the evidence
    partials = _entries(server, "partial")
    assert len(partials) == 2 * len(quorums)
    assert sorted(entry["partial_digests"]) == sorted(p["partial_digest"] for p in partials)
    assert _audit_errors(server, tmp_path) == []
    # nothing more happens: no new tasks, no second entry, however often it ticks
    for _ in range(3):
        server.manager.tick()
    assert not any(server.manager.task_for(k).pending for k in live)
    assert len(_entries(server, "disagreement")) == 1
    assert store.tasks(state=TaskState.OPEN) == []


def test_too_few_live_key_holders_to_cross_check_wait(
    world5: World, store: Store, tmp_path: Path
) -> None:
    """2 live key holders could decrypt (t = 2) but not cross-check (2t - 1 = 3): the round
    waits and says why; a third one coming back releases a fully cross-checked model."""
    server = make_server(world5, store, tmp_path)
    vectors = _fill(server, WEIGHTS)
    # 1 and 3 lock the round with them, then go away: 2 < 2t - 1 = 3 live
    assert run(server, (2, 4), {}, locked_by=(1, 3)) == 0
    assert server.manager.release(1) is None
    info = server.info()
    assert info.status_reason == "QUORUM_NOT_MET", info
    assert "3 must cross-check the decryption, threshold 2" in info.status, info
    assert run(server, (2, 4, 5), {}) == 6  # the three pairs of {2, 4, 5}
    rel = server.manager.release(1)
    assert rel is not None
    statement = ReleaseStatement.from_proto(DEPLOYMENT, rel).verify(world5.roster)
    assert statement.checked_quorums == (2, 4, 2, 5, 4, 5)
    assert all(tuple(e.checked_quorums) == (2, 4, 2, 5, 4, 5) for e in rel.endorsements)
    _, model = decode_model(server.ctx.blobs.get(rel.model_hash), length=LENGTH)
    assert np.abs(model - _weighted_mean(vectors, WEIGHTS)).max() < 1e-6
    assert _audit_errors(server, tmp_path) == []


def test_exactly_2t_minus_2_live_key_holders_lock_but_get_no_decryption(
    world5t3: World, store: Store, tmp_path: Path
) -> None:
    """t = 3 of 5: four key holders lock the round (``ceil((5 + 3) / 2)``) and stay live,
    but a full cross-check needs 2t - 1 = 5: no DECRYPT task is handed out, the status
    names the cross-check; the fifth key holder polling plans the ten triples."""
    server = make_server(world5t3, store, tmp_path)
    _fill(server, WEIGHTS)
    lock_round(server, (1, 2, 3, 4))
    assert not any(server.manager.task_for(k).pending for k in (1, 2, 3, 4))
    assert store.tasks() == [] and "decryption_request" not in server.audit_types()
    info = server.info()
    assert info.state == pb.DECRYPTING and info.status_reason == "QUORUM_NOT_MET", info
    assert info.status.startswith(
        "QuorumNotMet: 4 of 5 key holders reachable; 5 must cross-check the decryption, threshold 3"
    ), info
    task = server.manager.task_for(5)
    assert task.kind == pb.TASK_DECRYPT and tuple(task.quorum) == (1, 2, 5)
    assert len(task.locks) == 4
    assert len(store.tasks(state=TaskState.OPEN)) == 10  # every triple of five


def test_a_kept_quorum_alone_is_not_proposed(server: Server) -> None:
    """Three key holders lock and are asked the three pairs, then 3 falls silent: 2 < 2t - 1
    live. [1, 2] is kept and may be answered, but its model alone is not cross-checked:
    it is not proposed for endorsement. Once 3 is back the pairs with 3 are asked again."""
    _fill(server, WEIGHTS)
    lock_round(server, (1, 2, 3))
    fall_silent(server, live=(1, 2))
    assert run(server, (1, 2)) == 2  # [1, 2] answered; no ENDORSE task follows
    info = server.info()
    assert info.status_reason == "QUORUM_NOT_MET", info
    assert "3 must cross-check the decryption, threshold 2" in info.status, info
    assert run(server, (1, 2, 3)) == 4  # [1, 3] and [2, 3], planned again
    rel = server.manager.release(1)
    assert rel is not None and list(rel.checked_quorums) == [1, 2, 1, 3, 2, 3]


def _verify(server: Server, tmp_path: Path, replace: dict[str, dict[str, object]]) -> list[str]:
    """The verifier's errors over the log, with the first entry of each type in ``replace``
    swapped for a forged body (chain heads then break too; those errors are ignored)."""
    entries = []
    for entry in read_entries(server.audit_path):
        forged = replace.pop(entry.type, None)
        entries.append(entry if forged is None else dataclasses.replace(entry, data=forged))
    report = Report()
    verification = Verification(DeploymentLayout(tmp_path), server.world.roster, entries, report)
    for entry in entries[1:]:
        check_entry(verification, entry)
    return [e for e in report.errors if "head" not in e and "entry 2 (public_key)" not in e]


def test_the_verifier_checks_the_quorums_a_release_claims(
    world5: World, store: Store, tmp_path: Path
) -> None:
    server = make_server(world5, store, tmp_path)
    _fill(server, WEIGHTS)
    run(server, (1, 2, 3), {}, locked_by=(4,))
    (logged,) = _entries(server, "release")
    rel = server.manager.release(1)
    assert rel is not None and list(rel.checked_quorums) == [1, 2, 1, 3, 2, 3]
    # the server claims a quorum that never answered (4, 5) instead of (2, 3), and signs it
    statement = dataclasses.replace(
        ReleaseStatement.from_proto(DEPLOYMENT, rel).statement, checked_quorums=(1, 2, 1, 3, 4, 5)
    )
    forged = dict(logged, checked_quorums=[1, 2, 1, 3, 4, 5])
    forged["server_signature"] = Signed.create(statement, world5.server_key).signature.hex()
    errors = _verify(server, tmp_path, {"release": forged})
    assert errors and all("checked quorum [4, 5] has no logged partials" in e for e in errors)


def test_the_verifier_checks_the_named_deviator(
    world5: World, store: Store, tmp_path: Path
) -> None:
    server = make_server(world5, store, tmp_path)
    _fill(server, WEIGHTS)
    run(server, (1, 2, 3, 4), {3: shifted(world5.roster.params)})
    (logged,) = _entries(server, "disagreement")
    errors = _verify(server, tmp_path, {"disagreement": dict(logged, keyholder=1)})
    assert errors and all("names key holder 1, not 3" in e for e in errors)
    agreeing = dict(logged, model_hashes=[logged["model_hashes"][0]] * 6)  # type: ignore[index]
    errors = _verify(server, tmp_path, {"disagreement": agreeing})
    assert any("lists models that agree" in e for e in errors)


def test_a_crash_before_the_cross_check_is_finished_on_restart(
    world5: World, store: Store, tmp_path: Path
) -> None:
    """The last partial of the family is committed, then the server dies: on restart the
    disagreement is found and recorded once, and nothing is released."""
    server = make_server(world5, store, tmp_path)
    server.ctx.faults = Faults(FaultPoint.KILL_AFTER_LAST_PARTIAL, crash=_crash)
    _fill(server, WEIGHTS)
    with pytest.raises(Crash):
        run(server, (1, 2, 3, 4), {2: shifted(world5.roster.params)})
    assert _entries(server, "disagreement") == []
    again = make_server(world5, store, tmp_path)
    third = make_server(world5, store, tmp_path)
    assert third.manager.release(1) is None
    (entry,) = _entries(third, "disagreement")
    assert entry["keyholder"] == 2 and third.info().status_reason == "PARTIALS_DISAGREE"
    assert again.info().round == 1
